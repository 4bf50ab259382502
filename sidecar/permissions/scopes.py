"""Layer 2: does the credential itself permit this operation (scopes, Connect scopes, bindings)."""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Managed, Route
from sidecar.operations.table import OperationMatch
from sidecar.store.model import Snapshot

IMPORTS_INFO = "imports.info"
IMPORTSOURCE_USE = "importsource.use"
ACT_AS_USER = "ACT_AS_USER"

# READ ⊂ WRITE ⊂ DELETE ⊂ ADMIN (assets-model.md section 2). PROJECT_ADMIN sits between DELETE
# and ADMIN as in Atlassian's Connect scope hierarchy; no operation needs it by name.
CONNECT_RANK = MappingProxyType(
    {"READ": 0, "WRITE": 1, "DELETE": 2, "PROJECT_ADMIN": 3, "ADMIN": 4}
)


def connect_scopes_cover(held: Iterable[str], needed: str) -> bool:
    """True when the installation's Connect scopes include `needed` or a scope above it."""
    want = CONNECT_RANK[needed.upper()]
    return any(CONNECT_RANK.get(scope.upper(), -1) >= want for scope in held)


def check_api_permission(
    principal: Principal, match: OperationMatch, route: Route, snapshot: Snapshot
) -> None:
    """Raise Deny unless the credential permits the operation; return None when it does."""
    operation = match.operation
    if principal.kind is PrincipalKind.CONTAINER or principal.auth_type is AuthType.CONTAINER_TOKEN:
        _check_container(principal, match, route, snapshot)
        return
    if operation.name == IMPORTS_INFO or operation.oauth_scope is None:
        raise Deny(Reason.TOKEN_NOT_ALLOWED, f"{operation.name} is for container tokens only")
    if principal.auth_type is AuthType.CONNECT:
        held = principal.connect_scopes or frozenset()
        if principal.impersonated and ACT_AS_USER not in {s.upper() for s in held}:
            raise Deny(Reason.CONNECT_SCOPE_MISSING, "impersonation needs ACT_AS_USER")
        if not connect_scopes_cover(held, operation.connect_scope):
            raise Deny(
                Reason.CONNECT_SCOPE_MISSING,
                f"{operation.name} needs Connect scope {operation.connect_scope}",
            )
        return
    scopes = principal.scopes
    if scopes is None and principal.auth_type is AuthType.OAUTH:
        scopes = frozenset()  # an OAuth token without scopes grants nothing, never everything
    if scopes is not None and operation.oauth_scope not in scopes:
        raise Deny(
            Reason.INSUFFICIENT_SCOPE,
            f"{operation.name} needs scope {operation.oauth_scope}",
            scope=operation.oauth_scope,
        )


def _check_container(
    principal: Principal, match: OperationMatch, route: Route, snapshot: Snapshot
) -> None:
    """Container tokens reach imports-info and their own import source, in its workspace."""
    name = match.operation.name
    if name == IMPORTS_INFO:
        return
    own = principal.import_source_id
    if name != IMPORTSOURCE_USE or own is None or match.params.get("id") != own:
        raise Deny(Reason.TOKEN_NOT_ALLOWED, f"container token cannot reach {name}")
    if not isinstance(route, Managed) or route.workspace_id != _workspace_of(own, snapshot):
        raise Deny(Reason.TOKEN_NOT_ALLOWED, "import source is not in the path's workspace")


def _workspace_of(import_source_id: str, snapshot: Snapshot) -> str | None:
    source = snapshot.import_sources.get(import_source_id)
    schema = snapshot.schemas.get(source.schema_id) if source is not None else None
    return schema.workspace if schema is not None else None
