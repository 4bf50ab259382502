"""Every operation x role level x type-override case, through all of the pure decision core.

The expectations are written from assets-model.md by hand (not derived from the table), so a
wrong row, a wrong target or a wrong override shows up here.
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Router
from sidecar.operations.table import ROUTES
from sidecar.permissions import check_api_permission
from sidecar.roles.check import RoleGrant, authorize
from sidecar.roles.targets import resolve_target
from sidecar.store.model import RANK, Snapshot

from .helpers import request, user, world

ROUTER = Router(ApiConfig())

LEVELS = ("none", "viewer", "user", "developer", "manager", "admin")
# Type 10 carries no override, an override of developer held by others, or one the account
# is part of.
OVERRIDES = ("absent", "others", "member")
EFFECTIVE_ON_TYPE_10: dict[str, dict[str, str | None]] = {
    "absent": {
        "none": None, "viewer": "viewer", "user": "user", "developer": "developer",
        "manager": "manager", "admin": "admin",
    },
    "others": {
        "none": None, "viewer": "viewer", "user": "user", "developer": "user",
        "manager": "manager", "admin": "admin",
    },
    "member": {
        "none": "developer", "viewer": "developer", "user": "developer",
        "developer": "developer", "manager": "manager", "admin": "admin",
    },
}


def on_type(minimum: str) -> tuple[str, ...]:
    return ("type", minimum)


def on_schema(minimum: str, *, via_types: bool = False) -> tuple[Any, ...]:
    return ("schema", minimum, via_types)


SOMEWHERE = ("somewhere",)
ADMIN = ("admin",)
ANY = ("any",)
IMPORT = ("import", "manager")

# method, path under ws-1, JSON body, expectation
MATRIX: list[tuple[str, str, Any, tuple[Any, ...]]] = [
    ("GET", "/object/88", None, on_type("viewer")),
    ("GET", "/object/88/attributes", None, on_type("viewer")),
    ("GET", "/object/88/history", None, on_type("viewer")),
    ("GET", "/object/88/referenceinfo", None, on_type("viewer")),
    ("GET", "/objectconnectedtickets/88/tickets", None, on_type("viewer")),
    ("PUT", "/object/88", {"attributes": []}, on_type("developer")),
    ("DELETE", "/object/88", None, on_type("manager")),
    ("POST", "/object/create", {"objectTypeId": "10"}, on_type("developer")),
    ("POST", "/object/aql", {"qlQuery": "Name = x"}, SOMEWHERE),
    ("POST", "/object/aql/totalcount", {}, SOMEWHERE),
    ("POST", "/object/navlist/aql", {}, SOMEWHERE),
    ("POST", "/object/navlist/iql", {}, SOMEWHERE),
    ("GET", "/aql/objects?qlQuery=x", None, SOMEWHERE),
    ("GET", "/iql/objects", None, SOMEWHERE),
    ("GET", "/objectschema/list", None, SOMEWHERE),
    ("POST", "/objectschema/create", {"name": "n"}, ADMIN),
    ("GET", "/objectschema/1", None, on_schema("viewer", via_types=True)),
    ("GET", "/objectschema/1/attributes", None, on_schema("viewer", via_types=True)),
    ("GET", "/objectschema/1/objecttypes", None, on_schema("viewer", via_types=True)),
    ("GET", "/objectschema/1/objecttypes/flat", None, on_schema("viewer", via_types=True)),
    ("PUT", "/objectschema/1", {}, on_schema("manager")),
    ("DELETE", "/objectschema/1", None, on_schema("admin")),
    ("GET", "/objecttype/10", None, on_type("viewer")),
    ("GET", "/objecttype/10/attributes", None, on_type("viewer")),
    ("POST", "/objecttype/create", {"objectSchemaId": 1, "name": "n"}, on_schema("manager")),
    ("PUT", "/objecttype/10", {}, on_type("manager")),
    ("POST", "/objecttype/10/position", {}, on_type("manager")),
    ("DELETE", "/objecttype/10", None, on_type("manager")),
    ("POST", "/objecttypeattribute/10", {}, on_type("manager")),
    ("PUT", "/objecttypeattribute/10/501", {}, on_type("manager")),
    ("DELETE", "/objecttypeattribute/501", None, on_type("manager")),
    ("GET", "/icon/global", None, ANY),
    ("GET", "/icon/3", None, ANY),
    ("GET", "/icon/3/icon.png", None, ANY),
    ("GET", "/config/statustype", None, SOMEWHERE),
    ("GET", "/config/statustype/4", None, SOMEWHERE),
    ("GET", "/config/referencetype", None, SOMEWHERE),
    ("GET", "/config/statustype?objectSchemaId=1", None, on_schema("viewer")),
    ("GET", "/config/referencetype?objectSchemaId=1", None, on_schema("viewer")),
    ("POST", "/config/statustype", {"objectSchemaId": "1", "name": "n"}, on_schema("manager")),
    ("PUT", "/config/statustype/4", {"objectSchemaId": 1}, on_schema("manager")),
    ("POST", "/config/referencetype", {"objectSchemaId": "1"}, on_schema("manager")),
    ("POST", "/config/statustype", {"name": "global"}, ADMIN),
    ("PUT", "/config/statustype/4", {}, ADMIN),
    ("POST", "/config/referencetype", {"objectSchemaId": None}, ADMIN),
    ("DELETE", "/config/statustype/4", None, ADMIN),
    ("GET", "/global/config", None, ADMIN),
    ("GET", "/global/config/objectschema/1", None, on_schema("manager")),
    ("POST", "/global/config/objectschema/1/property", {}, on_schema("manager")),
    ("POST", "/import/start/is-1", None, IMPORT),
    ("GET", "/progress/category/imports/is-1", None, IMPORT),
    ("GET", "/importsource/is-1", None, IMPORT),
    ("PUT", "/importsource/is-1/mapping", {}, IMPORT),
    ("GET", "/importsource/is-1/configstatus", None, IMPORT),
    ("POST", "/importsource/is-1/executions", {}, IMPORT),
    ("POST", "/importsource/is-1/token", None, IMPORT),
]


def _snapshot(level: str, override: str) -> Snapshot:
    schema_roles = {"manager": ["someone-else"]}
    if level not in ("none", "admin"):
        schema_roles[level] = [*schema_roles.get(level, []), "acc"]
    type_roles = {
        "absent": {},
        "others": {"developer": ["frank", "katy"]},
        "member": {"developer": ["frank", "acc"]},
    }[override]
    return world(
        schema_roles=schema_roles,
        type_roles=type_roles,
        admins=["acc"] if level == "admin" else ["root"],
    )


def _decide(method: str, path: str, body: Any, snap: Snapshot) -> RoleGrant:
    req = request(method, path, body=body)
    principal = user("acc")
    route = ROUTER.route(req)
    match = ROUTER.find_operation(req, route)
    check_api_permission(principal, match, route, snap)
    target = resolve_target(match, route, req, snap, principal)
    return authorize(principal, match, target, snap)


def _at_least(level: str | None, minimum: str) -> bool:
    return level is not None and RANK[level] >= RANK[minimum]


def _expected(expectation: tuple[Any, ...], level: str, override: str) -> RoleGrant | None:
    """The grant the spec promises, or None for role_missing."""
    kind = expectation[0]
    schema_level = None if level == "none" else level
    reaches_ws = schema_level is not None or override == "member"
    if level == "admin":
        return RoleGrant("admin")
    if kind == "type":
        effective = EFFECTIVE_ON_TYPE_10[override][level]
        return RoleGrant(effective) if _at_least(effective, expectation[1]) else None
    if kind in ("schema", "import"):
        if _at_least(schema_level, expectation[1]):
            return RoleGrant(schema_level)
        via_types = kind == "schema" and expectation[2] and override == "member"
        return RoleGrant("viewer") if via_types else None
    if kind == "somewhere":
        return RoleGrant(None) if reaches_ws else None
    if kind == "any":
        return RoleGrant(None)
    return None  # admin only


def test_the_matrix_covers_every_row_of_the_table() -> None:
    patterns = set()
    for method, path, _, _ in MATRIX:
        req = request(method, path)
        patterns.add(ROUTER.find_operation(req, ROUTER.route(req)).pattern)
    assert patterns == {r.pattern for r in ROUTES}


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("method", "path", "body", "expectation"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_every_operation_for_every_role(
    method: str, path: str, body: Any, expectation: tuple[Any, ...], level: str, override: str
) -> None:
    snap = _snapshot(level, override)
    expected = _expected(expectation, level, override)
    if expected is None:
        with pytest.raises(Deny) as err:
            _decide(method, path, body, snap)
        assert err.value.reason is Reason.ROLE_MISSING
        return
    grant = _decide(method, path, body, snap)
    assert grant.role == expected.role


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("method", "path", "types"),
    [("POST", "/object/aql", True), ("GET", "/iql/objects", True),
     ("GET", "/objectschema/list", False)],
)
def test_readable_lists_for_every_role(
    method: str, path: str, types: bool, level: str, override: str
) -> None:
    snap = _snapshot(level, override)
    if level == "none" and override != "member":
        with pytest.raises(Deny):
            _decide(method, path, {}, snap)
        return
    grant = _decide(method, path, {}, snap)
    if level == "admin":
        assert (grant.readable_schemas, grant.readable_types) == (("*",), None)
    elif level == "none":  # only the type override on type 10 reaches schema 1
        assert grant.readable_schemas == ("1",)
        assert grant.readable_types == (("10",) if types else None)
    else:
        assert grant.readable_schemas == ("1",)
        assert grant.readable_types == (() if types else None)
