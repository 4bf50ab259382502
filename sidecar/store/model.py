"""The in-memory snapshot of the store that every decision reads (immutable values only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ROLE_LEVELS: tuple[str, ...] = ("viewer", "user", "developer", "manager", "admin")
RANK: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(ROLE_LEVELS)})
SCHEMA_LEVELS: tuple[str, ...] = ("manager", "developer", "user", "viewer")
TYPE_LEVELS: tuple[str, ...] = ("manager", "developer", "user")


@dataclass(frozen=True)
class Holders:
    """Who holds one role: identities are account ids, `connect:<app_key>`, `oauth:<client>`.

    Groups are expanded to their members when the snapshot is built, so a membership test is one
    set intersection.
    """

    identities: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.identities)

    def includes(self, identities: frozenset[str]) -> bool:
        return not self.identities.isdisjoint(identities)


@dataclass(frozen=True)
class Schema:
    id: str
    workspace: str
    key: str
    roles: Mapping[str, Holders]  # level -> holders (manager/developer/user/viewer)


@dataclass(frozen=True)
class ObjectType:
    id: str
    schema_id: str
    name: str
    roles: Mapping[str, Holders]  # level -> holders (manager/developer/user)


@dataclass(frozen=True)
class ImportSource:
    id: str
    schema_id: str


@dataclass(frozen=True)
class Installation:
    """A Connect app installation. The secret is read from env/file by `serve`, never stored."""

    client_key: str
    app_key: str
    scopes: frozenset[str]
    account_id: str
    shared_secret_env: str | None = None
    shared_secret_file: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """A minted API or container token: only the keyed hash of its secret is held."""

    id: str
    kind: str  # "api" | "container"
    secret_hash: bytes
    created_at: float
    expires_at: float | None
    revoked: bool
    label: str = ""
    account_id: str | None = None  # api
    scopes: frozenset[str] | None = None  # api; None = unscoped
    import_source: str | None = None  # container
    superseded: bool = False  # container: a newer token exists for the source


@dataclass(frozen=True)
class Snapshot:
    """Everything a decision needs from the store, as of one generation."""

    generation: int = 0
    workspaces: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()  # identities with the global admin role
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)  # account id -> email (lowercase)
    schemas: Mapping[str, Schema] = field(default_factory=dict)
    object_types: Mapping[str, ObjectType] = field(default_factory=dict)
    objects: Mapping[str, str] = field(default_factory=dict)  # object id -> type id
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute id -> type id
    import_sources: Mapping[str, ImportSource] = field(default_factory=dict)
    installations: Mapping[str, Installation] = field(default_factory=dict)  # by client key
    tokens: Mapping[str, TokenRecord] = field(default_factory=dict)  # by token id
    # The store's HMAC key for minted-token hashes (sidecar.store.tokens); never printed.
    token_key: bytes = field(default=b"", repr=False)
