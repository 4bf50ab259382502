"""The compiled operation table against assets-model.md section 3, restated row by row."""

from __future__ import annotations

import pytest

from sidecar.operations.table import (
    ROUTES,
    TABLE,
    MatchStatus,
    Operation,
    OperationTable,
    RouteSpec,
    TargetKind,
)

K = TargetKind
OB, SC, TY, AT, CF, IM = (
    "cmdb-object:jira",
    "cmdb-schema:jira",
    "cmdb-type:jira",
    "cmdb-attribute:jira",
    "cmdb-config:jira",
    "import:import-configuration:cmdb",
)

# (method, pattern) -> (name, oauth scope, connect scope, min role, target kind)
SPEC: dict[tuple[str, str], tuple[str, str, str, str, TargetKind]] = {
    ("GET", "/object/{id}"): ("object.read", f"read:{OB}", "READ", "viewer", K.OBJECT),
    ("GET", "/object/{id}/attributes"): ("object.read", f"read:{OB}", "READ", "viewer", K.OBJECT),
    ("GET", "/object/{id}/history"): ("object.read", f"read:{OB}", "READ", "viewer", K.OBJECT),
    ("GET", "/object/{id}/referenceinfo"): (
        "object.read", f"read:{OB}", "READ", "viewer", K.OBJECT
    ),
    ("GET", "/objectconnectedtickets/{id}/tickets"): (
        "object.read", f"read:{OB}", "READ", "viewer", K.OBJECT
    ),
    ("PUT", "/object/{id}"): ("object.update", f"write:{OB}", "WRITE", "developer", K.OBJECT),
    ("DELETE", "/object/{id}"): ("object.delete", f"delete:{OB}", "DELETE", "manager", K.OBJECT),
    ("POST", "/object/create"): (
        "object.create", f"write:{OB}", "WRITE", "developer", K.BODY_TYPE
    ),
    ("POST", "/object/aql"): ("object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE),
    ("POST", "/object/aql/totalcount"): (
        "object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE
    ),
    ("POST", "/object/navlist/aql"): ("object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE),
    ("POST", "/object/navlist/iql"): ("object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE),
    ("GET", "/aql/objects"): ("object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE),
    ("GET", "/iql/objects"): ("object.search", f"read:{OB}", "READ", "viewer", K.WORKSPACE),
    ("GET", "/objectschema/list"): ("schema.list", f"read:{SC}", "READ", "viewer", K.WORKSPACE),
    ("POST", "/objectschema/create"): (
        "schema.create", f"write:{SC}", "ADMIN", "admin", K.WORKSPACE
    ),
    ("GET", "/objectschema/{id}"): ("schema.read", f"read:{SC}", "READ", "viewer", K.SCHEMA),
    ("GET", "/objectschema/{id}/attributes"): (
        "schema.read", f"read:{SC}", "READ", "viewer", K.SCHEMA
    ),
    ("GET", "/objectschema/{id}/objecttypes"): (
        "schema.read", f"read:{SC}", "READ", "viewer", K.SCHEMA
    ),
    ("GET", "/objectschema/{id}/objecttypes/flat"): (
        "schema.read", f"read:{SC}", "READ", "viewer", K.SCHEMA
    ),
    ("PUT", "/objectschema/{id}"): ("schema.update", f"write:{SC}", "WRITE", "manager", K.SCHEMA),
    ("DELETE", "/objectschema/{id}"): ("schema.delete", f"delete:{SC}", "ADMIN", "admin", K.SCHEMA),
    ("GET", "/objecttype/{id}"): ("type.read", f"read:{TY}", "READ", "viewer", K.TYPE),
    ("GET", "/objecttype/{id}/attributes"): ("type.read", f"read:{TY}", "READ", "viewer", K.TYPE),
    ("POST", "/objecttype/create"): (
        "type.create", f"write:{TY}", "WRITE", "manager", K.BODY_SCHEMA
    ),
    ("PUT", "/objecttype/{id}"): ("type.update", f"write:{TY}", "WRITE", "manager", K.TYPE),
    ("POST", "/objecttype/{id}/position"): (
        "type.update", f"write:{TY}", "WRITE", "manager", K.TYPE
    ),
    ("DELETE", "/objecttype/{id}"): ("type.delete", f"delete:{TY}", "DELETE", "manager", K.TYPE),
    ("POST", "/objecttypeattribute/{objectTypeId}"): (
        "attribute.create", f"write:{AT}", "WRITE", "manager", K.TYPE
    ),
    ("PUT", "/objecttypeattribute/{objectTypeId}/{id}"): (
        "attribute.update", f"write:{AT}", "WRITE", "manager", K.TYPE
    ),
    ("DELETE", "/objecttypeattribute/{id}"): (
        "attribute.delete", f"delete:{AT}", "DELETE", "manager", K.ATTRIBUTE
    ),
    ("GET", "/icon/global"): ("icon.read", "read:cmdb-icon:jira", "READ", "any", K.WORKSPACE),
    ("GET", "/icon/{id}"): ("icon.read", "read:cmdb-icon:jira", "READ", "any", K.WORKSPACE),
    ("GET", "/icon/{id}/icon.png"): (
        "icon.read", "read:cmdb-icon:jira", "READ", "any", K.WORKSPACE
    ),
    ("GET", "/config/statustype"): ("config.read", f"read:{CF}", "READ", "viewer", K.CONFIG_READ),
    ("GET", "/config/statustype/{id}"): (
        "config.read", f"read:{CF}", "READ", "viewer", K.CONFIG_READ
    ),
    ("GET", "/config/referencetype"): (
        "config.read", f"read:{CF}", "READ", "viewer", K.CONFIG_READ
    ),
    ("POST", "/config/statustype"): (
        "config.write", f"write:{CF}", "WRITE", "manager", K.CONFIG_WRITE
    ),
    ("PUT", "/config/statustype/{id}"): (
        "config.write", f"write:{CF}", "WRITE", "manager", K.CONFIG_WRITE
    ),
    ("POST", "/config/referencetype"): (
        "config.write", f"write:{CF}", "WRITE", "manager", K.CONFIG_WRITE
    ),
    ("DELETE", "/config/statustype/{id}"): (
        "config.delete", f"delete:{CF}", "DELETE", "admin", K.WORKSPACE
    ),
    ("GET", "/global/config"): ("config.global", f"read:{CF}", "ADMIN", "admin", K.WORKSPACE),
    ("GET", "/global/config/objectschema/{id}"): (
        "config.global", f"read:{CF}", "ADMIN", "manager", K.SCHEMA
    ),
    ("POST", "/global/config/objectschema/{id}/property"): (
        "config.global", f"write:{CF}", "ADMIN", "manager", K.SCHEMA
    ),
    ("POST", "/import/start/{id}"): ("import.run", IM, "WRITE", "manager", K.IMPORT_SOURCE),
    ("GET", "/progress/category/imports/{id}"): (
        "import.run", IM, "WRITE", "manager", K.IMPORT_SOURCE
    ),
    ("*", "/importsource/{id}/**"): ("importsource.use", IM, "WRITE", "manager", K.IMPORT_SOURCE),
    ("POST", "/importsource/{id}/token"): (
        "importsource.token", IM, "WRITE", "manager", K.IMPORT_SOURCE
    ),
}


def test_the_table_has_exactly_the_rows_of_the_spec() -> None:
    assert {(r.method, r.pattern) for r in ROUTES} == set(SPEC)
    assert len(ROUTES) == len(SPEC)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
def test_each_row_matches_the_spec(route: RouteSpec) -> None:
    op = route.operation
    assert (op.name, op.oauth_scope, op.connect_scope, op.min_role, op.target) == SPEC[
        (route.method, route.pattern)
    ]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
def test_only_list_and_search_operations_list_readable(route: RouteSpec) -> None:
    op = route.operation
    assert op.lists_readable is (op.name in {"object.search", "schema.list"})
    assert op.lists_types is (op.name == "object.search")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
def test_target_parameters_exist_in_the_pattern(route: RouteSpec) -> None:
    op = route.operation
    if op.target in {K.OBJECT, K.TYPE, K.ATTRIBUTE, K.SCHEMA, K.IMPORT_SOURCE}:
        assert "{" + op.target_param + "}" in route.pattern
    if op.attribute_param is not None:
        assert "{" + op.attribute_param + "}" in route.pattern


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path[1:].split("/"))


@pytest.mark.parametrize(
    ("method", "path", "status", "name", "params"),
    [
        ("GET", "/object/7", MatchStatus.FULL, "object.read", {"id": "7"}),
        ("PATCH", "/object/7", MatchStatus.METHOD_MISMATCH, None, {}),
        ("GET", "/object/create", MatchStatus.METHOD_MISMATCH, None, {}),  # literal wins
        ("PUT", "/object/aql", MatchStatus.METHOD_MISMATCH, None, {}),
        ("GET", "/object/7/unknown", MatchStatus.NONE, None, {}),
        ("GET", "/nothing", MatchStatus.NONE, None, {}),
        ("GET", "/object", MatchStatus.NONE, None, {}),
        ("GET", "/icon/global/icon.png", MatchStatus.NONE, None, {}),  # no backtracking
        ("GET", "/OBJECT/7", MatchStatus.FULL, "object.read", {"id": "7"}),
        ("POST", "/ImportSource/s/TOKEN", MatchStatus.FULL, "importsource.token", {"id": "s"}),
        ("GET", "/importsource/s", MatchStatus.FULL, "importsource.use", {"id": "s"}),
        ("PATCH", "/importsource/s/a/b/c", MatchStatus.FULL, "importsource.use", {"id": "s"}),
        ("GET", "/importsource/s/token", MatchStatus.FULL, "importsource.use", {"id": "s"}),
        ("POST", "/importsource/s/token/x", MatchStatus.FULL, "importsource.use", {"id": "s"}),
        ("GET", "/importsource", MatchStatus.NONE, None, {}),
        (
            "PUT", "/objecttypeattribute/10/501", MatchStatus.FULL, "attribute.update",
            {"objectTypeId": "10", "id": "501"},
        ),
        (
            "POST", "/objecttypeattribute/10", MatchStatus.FULL, "attribute.create",
            {"objectTypeId": "10"},
        ),
        ("DELETE", "/objecttypeattribute/501", MatchStatus.FULL, "attribute.delete", {"id": "501"}),
        ("GET", "/objecttypeattribute/501", MatchStatus.METHOD_MISMATCH, None, {}),
    ],
)
def test_match_statuses(
    method: str, path: str, status: MatchStatus, name: str | None, params: dict[str, str]
) -> None:
    found = TABLE.match(method, _segments(path))
    assert found.status is status
    if status is MatchStatus.FULL:
        assert found.match is not None
        assert found.match.operation.name == name
        assert dict(found.match.params) == params
    else:
        assert found.match is None


def test_method_mismatch_reports_the_allowed_methods() -> None:
    found = TABLE.match("PATCH", _segments("/object/7"))
    assert set(found.allowed_methods) == {"GET", "PUT", "DELETE"}


def test_parameter_values_keep_their_case_and_decoding() -> None:
    found = TABLE.match("GET", ("object", "Ab c/é"))
    assert found.match is not None and found.match.params["id"] == "Ab c/é"


_OP = Operation("x", "read:x", "READ", "viewer", K.WORKSPACE)


@pytest.mark.parametrize(
    "routes",
    [
        [RouteSpec("GET", "/a", _OP), RouteSpec("GET", "/a", _OP)],
        [RouteSpec("GET", "a", _OP)],
        [RouteSpec("GET", "/a/", _OP)],
        [RouteSpec("GET", "/a//b", _OP)],
        [RouteSpec("GET", "/a/**", _OP)],
        [RouteSpec("*", "/a", _OP)],
        [RouteSpec("*", "/a/**", _OP), RouteSpec("*", "/a/**", _OP)],
    ],
)
def test_invalid_tables_are_refused(routes: list[RouteSpec]) -> None:
    with pytest.raises(ValueError):
        OperationTable(routes)
