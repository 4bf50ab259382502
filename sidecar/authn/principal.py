"""The authenticated caller, as layer 1 hands it to layers 2 and 3."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Identities layer 3 reserves for apps (role holders `oauth:<client_id>`, `connect:<app_key>`);
# a user's account id, from whatever credential, may never claim one.
APP_IDENTITY_PREFIXES = ("oauth:", "connect:")


class AuthType(enum.StrEnum):
    OAUTH = "oauth"
    CONNECT = "connect"
    API_TOKEN = "api-token"
    CONTAINER_TOKEN = "container-token"


class PrincipalKind(enum.StrEnum):
    USER = "user"
    APP = "app"
    CONTAINER = "container"


@dataclass(frozen=True)
class Principal:
    """Who is calling and what their credential grants.

    `identities` is what layer 3 matches against role holders: the acting account id and, for
    apps, `connect:<app_key>` / `oauth:<client_id>`.
    """

    auth_type: AuthType
    kind: PrincipalKind
    account_id: str | None
    identities: frozenset[str]
    app_key: str | None = None  # Connect app key or OAuth client id whenever an app is involved
    impersonated: bool = False
    scopes: frozenset[str] | None = None  # OAuth / scoped API token; None = unscoped
    connect_scopes: frozenset[str] | None = None  # Connect installation scopes
    import_source_id: str | None = None  # container tokens
    token_id: str | None = None  # minted tokens (for logs; never the secret)
    via_query_jwt: bool = False  # Connect token came in the `jwt` query parameter
