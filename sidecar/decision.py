"""The closed vocabulary of reasons and the Decision value every layer produces."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Layer(enum.StrEnum):
    """Where in the pipeline a decision was made (also the `layer` log and explain field)."""

    REQUEST = "request"  # canonicalisation, duplicate credentials
    ROUTE = "route"  # managed or not
    AUTHENTICATION = "authentication"  # layer 1
    OPERATION = "operation"  # operation lookup
    PERMISSION = "permission"  # layer 2
    TARGET = "target"  # target resolution
    ROLE = "role"  # layer 3
    INTERNAL = "internal"


@dataclass(frozen=True)
class _ReasonInfo:
    http: int
    grpc: int  # google.rpc.Code value
    message: str


class Reason(enum.StrEnum):
    """Every deny carries exactly one of these (product.md section 6)."""

    BAD_REQUEST = "bad_request"
    UNMANAGED_PATH = "unmanaged_path"
    MISSING_CREDENTIAL = "missing_credential"
    MALFORMED_CREDENTIAL = "malformed_credential"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    INVALID_CLAIMS = "invalid_claims"
    TOKEN_EXPIRED = "token_expired"
    QSH_MISMATCH = "qsh_mismatch"
    UNKNOWN_INSTALLATION = "unknown_installation"
    UNKNOWN_TOKEN = "unknown_token"
    REVOKED_TOKEN = "revoked_token"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    CONNECT_SCOPE_MISSING = "connect_scope_missing"
    TOKEN_NOT_ALLOWED = "token_not_allowed"
    UNKNOWN_OPERATION = "unknown_operation"
    UNKNOWN_TARGET = "unknown_target"
    ROLE_MISSING = "role_missing"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    INTERNAL_ERROR = "internal_error"

    @property
    def http_status(self) -> int:
        return _INFO[self].http

    @property
    def grpc_code(self) -> int:
        return _INFO[self].grpc

    @property
    def message(self) -> str:
        """The human message sent to the client: no secret, no internal detail."""
        return _INFO[self].message


# google.rpc.Code numbers
_INVALID_ARGUMENT, _NOT_FOUND, _PERMISSION_DENIED, _UNAUTHENTICATED = 3, 5, 7, 16
_UNAVAILABLE, _INTERNAL = 14, 13

_INFO: dict[Reason, _ReasonInfo] = {
    Reason.BAD_REQUEST: _ReasonInfo(400, _INVALID_ARGUMENT, "The request is malformed."),
    Reason.UNMANAGED_PATH: _ReasonInfo(
        403, _PERMISSION_DENIED, "This path is not served through this gateway."
    ),
    Reason.MISSING_CREDENTIAL: _ReasonInfo(
        401, _UNAUTHENTICATED, "Authentication is required to access this resource."
    ),
    Reason.MALFORMED_CREDENTIAL: _ReasonInfo(
        401, _UNAUTHENTICATED, "The credential could not be read."
    ),
    Reason.UNSUPPORTED_ALGORITHM: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token is signed with an algorithm that is not accepted."
    ),
    Reason.UNKNOWN_ISSUER: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token was issued by an issuer that is not trusted."
    ),
    Reason.UNKNOWN_KEY: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token is signed with an unknown key."
    ),
    Reason.BAD_SIGNATURE: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token signature is invalid."
    ),
    Reason.INVALID_CLAIMS: _ReasonInfo(401, _UNAUTHENTICATED, "The token claims are invalid."),
    Reason.TOKEN_EXPIRED: _ReasonInfo(401, _UNAUTHENTICATED, "The token has expired."),
    Reason.QSH_MISMATCH: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token is not valid for this request."
    ),
    Reason.UNKNOWN_INSTALLATION: _ReasonInfo(
        401, _UNAUTHENTICATED, "The app installation is not known."
    ),
    Reason.UNKNOWN_TOKEN: _ReasonInfo(
        401, _UNAUTHENTICATED, "The credentials are not valid."
    ),
    Reason.REVOKED_TOKEN: _ReasonInfo(
        401, _UNAUTHENTICATED, "The token has been revoked or has expired."
    ),
    Reason.INSUFFICIENT_SCOPE: _ReasonInfo(
        403, _PERMISSION_DENIED, "The token does not grant the scope this operation needs."
    ),
    Reason.CONNECT_SCOPE_MISSING: _ReasonInfo(
        403, _PERMISSION_DENIED, "The app is not permitted to perform this operation."
    ),
    Reason.TOKEN_NOT_ALLOWED: _ReasonInfo(
        403, _PERMISSION_DENIED, "This credential cannot be used for this operation."
    ),
    Reason.UNKNOWN_OPERATION: _ReasonInfo(
        404, _NOT_FOUND, "No such operation."
    ),
    Reason.UNKNOWN_TARGET: _ReasonInfo(404, _NOT_FOUND, "The requested resource does not exist."),
    Reason.ROLE_MISSING: _ReasonInfo(
        403, _PERMISSION_DENIED, "You do not have permission to perform this operation."
    ),
    Reason.DEPENDENCY_UNAVAILABLE: _ReasonInfo(
        503, _UNAVAILABLE, "The authorization service is temporarily unavailable."
    ),
    Reason.INTERNAL_ERROR: _ReasonInfo(500, _INTERNAL, "Internal authorization error."),
}



class Deny(Exception):
    """Raised anywhere in the pipeline to stop with a reason.

    `detail` is for logs and explain only (never sent to the client, never a secret).
    """

    def __init__(self, reason: Reason, detail: str = "", *, scope: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.scope = scope  # the scope needed, for insufficient_scope challenges


@dataclass(frozen=True)
class TraceStep:
    """One entry of the layer-by-layer trace (explain, decision logs)."""

    layer: Layer
    outcome: str  # "pass" | "deny" | "skip"
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"layer": self.layer.value, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class Decision:
    """The outcome of one Check: allow with identity facts, or deny with a reason."""

    allowed: bool
    decision_id: str
    reason: Reason | None = None
    layer: Layer | None = None
    detail: str = ""
    # allow side
    identity: dict[str, str] = field(default_factory=dict)  # header suffix -> value
    upstream_path: str | None = None  # the request target to send upstream, when rewritten
    passthrough: bool = False  # unmanaged path with outside_base_paths: allow
    # deny side
    challenges: tuple[str, ...] = ()
    # bookkeeping
    auth_type: str = "none"
    account_id: str | None = None
    operation: str | None = None
    trace: tuple[TraceStep, ...] = ()
    dry_run_overridden: bool = False  # the real decision was deny but dry_run allowed it

    @property
    def http_status(self) -> int:
        if self.allowed:
            return 200
        assert self.reason is not None
        return self.reason.http_status

    @property
    def result(self) -> str:
        return "allow" if self.allowed else "deny"
