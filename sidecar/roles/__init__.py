"""Layer 3, roles: effective role (override rule), target resolution and the role check."""

from sidecar.roles.check import RoleGrant, authorize
from sidecar.roles.effective import (
    Readable,
    id_sort_key,
    is_admin,
    readable_in_workspace,
    schema_level,
    type_level,
)
from sidecar.roles.targets import Target, UnknownTarget, resolve_target

__all__ = [
    "Readable",
    "RoleGrant",
    "Target",
    "UnknownTarget",
    "authorize",
    "id_sort_key",
    "is_admin",
    "readable_in_workspace",
    "resolve_target",
    "schema_level",
    "type_level",
]
