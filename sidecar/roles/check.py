"""Layer 3: does the acting account hold the role the operation needs on its target."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.operations.table import Operation, OperationMatch, TargetKind
from sidecar.roles.effective import (
    ADMIN,
    VIEWER,
    is_admin,
    readable_in_workspace,
    reads_schema_through_types,
    schema_level,
    type_level,
)
from sidecar.roles.targets import Target
from sidecar.store.model import RANK, Snapshot

ANY = "any"
CONTAINER = "container"
ALL_SCHEMAS = "*"
# The one schema-target operation that a role on one of the schema's types also allows.
SCHEMA_READ = "schema.read"
_CONTAINER_OPERATIONS = frozenset({"imports.info", "importsource.use"})
_TYPE_KINDS = frozenset({TargetKind.TYPE, TargetKind.OBJECT, TargetKind.ATTRIBUTE})


@dataclass(frozen=True)
class RoleGrant:
    """What layer 3 granted: the role header value and, for list/search operations, the lists.

    `role` is the effective role on a schema or type target ("admin" for admins on any
    target), None otherwise. `readable_schemas` is set for operations with `lists_readable`
    (("*",) for admins); `readable_types` for those with `lists_types` (None for admins; ()
    when the account reads no type through type roles alone). See `effective.Readable`.
    """

    role: str | None
    readable_schemas: tuple[str, ...] | None = None
    readable_types: tuple[str, ...] | None = None


def _deny(operation: Operation, needed: str, target: Target) -> Deny:
    return Deny(
        Reason.ROLE_MISSING, f"{operation.name} needs {needed} on {target.describe()}"
    )


def _at_least(level: str | None, needed: str) -> bool:
    return level is not None and needed in RANK and RANK[level] >= RANK[needed]


def authorize(
    principal: Principal, match: OperationMatch, target: Target, snapshot: Snapshot
) -> RoleGrant:
    """Return the grant, or raise Deny(role_missing)."""
    operation = match.operation
    if principal.kind is PrincipalKind.CONTAINER or principal.auth_type is AuthType.CONTAINER_TOKEN:
        # The token is the grant (layer 2 checked its binding); it never stands for an account.
        if operation.name in _CONTAINER_OPERATIONS:
            return RoleGrant(None)
        raise _deny(operation, "an account", target)
    if operation.min_role == CONTAINER:
        raise _deny(operation, "a container token", target)
    identities = principal.identities
    if is_admin(identities, snapshot):
        return RoleGrant(ADMIN, (ALL_SCHEMAS,) if operation.lists_readable else None)
    if target.kind is TargetKind.WORKSPACE:
        return _on_workspace(identities, operation, target, snapshot)
    if target.kind is TargetKind.SCHEMA:
        return _on_schema(identities, operation, target, snapshot)
    level = _level_on_data(identities, target, snapshot)
    if _at_least(level, operation.min_role):
        return RoleGrant(level)
    raise _deny(operation, operation.min_role, target)


def _level_on_data(identities: frozenset[str], target: Target, snapshot: Snapshot) -> str | None:
    """Effective level on a type-like target (override rule) or on an import source's schema."""
    if target.kind in _TYPE_KINDS:
        object_type = snapshot.object_types.get(target.type_id or "")
        if object_type is None:
            raise Deny(Reason.UNKNOWN_TARGET, f"unknown object type {target.type_id!r}")
        return type_level(identities, object_type, snapshot)
    if target.kind is TargetKind.IMPORT_SOURCE:
        schema = snapshot.schemas.get(target.schema_id or "")
        if schema is None:
            raise Deny(Reason.UNKNOWN_TARGET, f"unknown schema {target.schema_id!r}")
        return schema_level(identities, schema, snapshot)
    return None


def _on_schema(
    identities: frozenset[str], operation: Operation, target: Target, snapshot: Snapshot
) -> RoleGrant:
    """Only schema roles count on a schema, except that a type role lets one read it."""
    schema = snapshot.schemas.get(target.schema_id or "")
    if schema is None:
        raise Deny(Reason.UNKNOWN_TARGET, f"unknown schema {target.schema_id!r}")
    level = schema_level(identities, schema, snapshot)
    if _at_least(level, operation.min_role):
        return RoleGrant(level)
    if operation.name == SCHEMA_READ and reads_schema_through_types(
        identities, schema.id, snapshot
    ):
        return RoleGrant(VIEWER)
    raise _deny(operation, operation.min_role, target)


def _on_workspace(
    identities: frozenset[str], operation: Operation, target: Target, snapshot: Snapshot
) -> RoleGrant:
    """Workspace targets: any account, viewer somewhere in the workspace, or admin only."""
    if operation.min_role == ANY:
        return RoleGrant(None)
    if operation.min_role != VIEWER or operation.target is TargetKind.CONFIG_WRITE:
        # Admins returned earlier; config.write without a body schema is global, so admin.
        raise _deny(operation, ADMIN, target)
    readable = readable_in_workspace(identities, target.workspace_id, snapshot)
    if not readable.anything:
        raise _deny(operation, "a role in the workspace", target)
    return RoleGrant(
        None,
        readable.schemas if operation.lists_readable else None,
        readable.types if operation.lists_types else None,
    )
