"""Where the credential lives: find exactly one in the request and say which kind it is.

What validates it is the business of the per-kind authenticators; this module only reads the
`Authorization` header (and the Connect `jwt` query parameter) and refuses ambiguity.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest

JWT_PARAMETER = "jwt"  # the Connect token's query parameter
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class CredentialKind(enum.StrEnum):
    OAUTH_JWT = "oauth"  # Bearer <JWT>
    CONTAINER = "container"  # Bearer <opaque>
    CONNECT = "connect"  # JWT <token> or ?jwt=
    BASIC = "basic"  # Basic base64(email:token)


@dataclass(frozen=True)
class Credential:
    kind: CredentialKind
    value: str  # the token (or the base64 part of Basic); never logged
    from_query: bool = False

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Credential(kind={self.kind.value}, from_query={self.from_query})"


_SCHEMES = frozenset({"bearer", "jwt", "basic"})


def _literal_jwt_names(raw_query: str) -> int:
    """How many query parameters are named `jwt` exactly as sent (no escapes, no "+")."""
    return sum(1 for part in raw_query.split("&") if part.partition("=")[0] == JWT_PARAMETER)


def without_jwt_parameter(raw_path: str, raw_query: str) -> str:
    """The request target with the `jwt` parameter(s) cut out and everything else as sent.

    Only literal `jwt` names exist by then: extract_credential refuses escaped ones.
    """
    kept = [p for p in raw_query.split("&") if p.partition("=")[0] != JWT_PARAMETER]
    query = "&".join(kept)
    return f"{raw_path}?{query}" if query else raw_path


def extract_credential(request: HttpRequest) -> Credential:
    """Return the request's single credential or raise Deny.

    Duplicates are `bad_request`: Envoy joins repeated headers with ",", which never occurs in
    a valid credential, and a Connect token may come in the header or the query, not both.
    """
    header = request.header("authorization")
    jwt_params = request.query_values(JWT_PARAMETER)
    if header is not None and "," in header:
        raise Deny(Reason.BAD_REQUEST, "duplicate Authorization headers")
    if len(jwt_params) > 1:
        raise Deny(Reason.BAD_REQUEST, "duplicate jwt query parameters")
    if jwt_params and _literal_jwt_names(request.raw_query) != len(jwt_params):
        # Envoy removes query parameters by their name as sent: a token under an escaped name
        # (`%6Awt=`) would be accepted here and still reach the upstream.
        raise Deny(Reason.BAD_REQUEST, "jwt query parameter name is percent-encoded")
    if header is not None and jwt_params:
        raise Deny(Reason.BAD_REQUEST, "credential both in Authorization and in the jwt parameter")
    if jwt_params:
        token = jwt_params[0]
        if not JWT_SHAPE.match(token):
            raise Deny(Reason.MALFORMED_CREDENTIAL, "jwt parameter is not a JWT")
        return Credential(CredentialKind.CONNECT, token, from_query=True)
    if header is None or not header.strip():
        raise Deny(Reason.MISSING_CREDENTIAL, "no Authorization header")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if not value or " " in value:
        # Name the scheme only when it is one we know: without a space after it, the "scheme"
        # is the credential itself, and details are logged.
        known = scheme if scheme in _SCHEMES else "unknown-scheme"
        raise Deny(Reason.MALFORMED_CREDENTIAL, f"unreadable {known} credential")
    if scheme == "bearer":
        if JWT_SHAPE.match(value):
            return Credential(CredentialKind.OAUTH_JWT, value)
        return Credential(CredentialKind.CONTAINER, value)
    if scheme == "jwt":
        if not JWT_SHAPE.match(value):
            raise Deny(Reason.MALFORMED_CREDENTIAL, "JWT scheme without a JWT")
        return Credential(CredentialKind.CONNECT, value)
    if scheme == "basic":
        return Credential(CredentialKind.BASIC, value)
    raise Deny(Reason.MALFORMED_CREDENTIAL, "unknown authorization scheme")
