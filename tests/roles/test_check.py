"""Layer 3 rules that the matrix does not spell out: principals, apps, lists, inconsistencies."""

from __future__ import annotations

import pytest

from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Route, Router
from sidecar.operations.table import OperationMatch, TargetKind
from sidecar.request import HttpRequest, build_request
from sidecar.roles.check import RoleGrant, authorize
from sidecar.roles.targets import Target, resolve_target
from sidecar.store.model import Snapshot

from .helpers import container, object_type, request, schema, snapshot, user, world

ROUTER = Router(ApiConfig())


def _match(req: HttpRequest) -> tuple[OperationMatch, Route, HttpRequest]:
    route = ROUTER.route(req)
    match = ROUTER.find_operation(req, route)
    return match, route, req


def grant_for(principal: Principal, req: HttpRequest, snap: Snapshot) -> RoleGrant:
    match, route, _ = _match(req)
    target = resolve_target(match, route, req, snap, principal)
    return authorize(principal, match, target, snap)


def denied(principal: Principal, req: HttpRequest, snap: Snapshot) -> Deny:
    with pytest.raises(Deny) as err:
        grant_for(principal, req, snap)
    return err.value


IMPORTS_INFO = build_request(method="GET", target="/jsm/assets/v1/imports/info", headers={})


@pytest.mark.parametrize(
    "req",
    [
        IMPORTS_INFO,
        request("GET", "/importsource/is-1"),
        request("POST", "/importsource/is-1/executions/e/data"),
    ],
    ids=["imports-info", "importsource", "importsource-data"],
)
def test_container_tokens_are_their_own_grant(req: HttpRequest) -> None:
    assert grant_for(container("is-1"), req, world()) == RoleGrant(None)


@pytest.mark.parametrize(
    "req",
    [
        request("POST", "/importsource/is-1/token"),
        request("POST", "/import/start/is-1"),
        request("GET", "/object/88"),
        request("GET", "/icon/global"),
    ],
    ids=["mint", "import-start", "object", "icon"],
)
def test_container_tokens_never_stand_for_an_account(req: HttpRequest) -> None:
    # layer 2 refuses these first; layer 3 refuses them as well
    assert denied(container("is-1"), req, world(admins=[])).reason is Reason.ROLE_MISSING


def test_accounts_never_pass_imports_info() -> None:
    match, _, _ = _match(IMPORTS_INFO)
    target = Target(TargetKind.IMPORT_SOURCE, "ws-1", "1", import_source_id="is-1")
    snap = world(admins=["acc"])
    with pytest.raises(Deny) as err:
        authorize(user("acc"), match, target, snap)
    assert err.value.reason is Reason.ROLE_MISSING


def test_icon_read_needs_no_role_and_sets_no_role() -> None:
    snap = world()
    assert grant_for(user("stranger"), request("GET", "/icon/global"), snap) == RoleGrant(None)
    assert grant_for(user("stranger"), request("GET", "/icon/3"), snap) == RoleGrant(None)


def test_admins_get_admin_on_every_target_and_all_schemas() -> None:
    snap = world(admins=["boss"])
    boss = user("boss")
    assert grant_for(boss, request("GET", "/icon/global"), snap) == RoleGrant("admin")
    assert grant_for(boss, request("DELETE", "/objectschema/2", ws="ws-2"), snap) == RoleGrant(
        "admin"
    )
    assert grant_for(boss, request("POST", "/object/aql", body={}), snap) == RoleGrant(
        "admin", ("*",), None
    )
    assert grant_for(boss, request("GET", "/objectschema/list", ws="ws-empty"), snap) == (
        RoleGrant("admin", ("*",), None)
    )


def test_an_app_account_acts_with_its_connect_identity() -> None:
    app = Principal(
        AuthType.CONNECT, PrincipalKind.APP, "app-reporting",
        frozenset({"app-reporting", "connect:com.example.reporting"}),
        app_key="com.example.reporting", connect_scopes=frozenset({"READ"}),
    )
    snap = world(schema_roles={"viewer": ["connect:com.example.reporting"]})
    assert grant_for(app, request("GET", "/object/88"), snap) == RoleGrant("viewer")
    assert denied(app, request("PUT", "/object/88", body={}), snap).reason is Reason.ROLE_MISSING


def test_a_schema_role_elsewhere_does_not_count() -> None:
    snap = world()  # mgr-2 manages schema 2 in ws-2 only
    mgr2 = user("mgr-2")
    assert grant_for(mgr2, request("PUT", "/objectschema/2", ws="ws-2"), snap) == RoleGrant(
        "manager"
    )
    for req in (
        request("GET", "/objectschema/list"),
        request("POST", "/object/aql", body={}),
        request("GET", "/config/statustype"),
    ):
        assert denied(mgr2, req, snap).reason is Reason.ROLE_MISSING
    assert denied(mgr2, request("GET", "/objectschema/list", ws="ws-empty"), snap).reason is (
        Reason.ROLE_MISSING
    )


def test_a_type_role_gives_no_schema_rights_beyond_reading() -> None:
    snap = world(type_roles={"manager": ["acc"]})
    acc = user("acc")
    assert grant_for(acc, request("GET", "/objectschema/1"), snap) == RoleGrant("viewer")
    assert grant_for(acc, request("DELETE", "/objecttype/10"), snap) == RoleGrant("manager")
    assert denied(acc, request("DELETE", "/objecttype/11"), snap).reason is Reason.ROLE_MISSING
    assert denied(acc, request("GET", "/object/89"), snap).reason is Reason.ROLE_MISSING
    for req in (
        request("PUT", "/objectschema/1", body={}),
        request("POST", "/objecttype/create", body={"objectSchemaId": "1"}),
        request("POST", "/import/start/is-1"),
        request("GET", "/config/statustype?objectSchemaId=1"),
    ):
        assert denied(acc, req, snap).reason is Reason.ROLE_MISSING


def test_readable_lists_name_type_only_schemas_and_their_types() -> None:
    snap = snapshot(
        schemas=[
            schema("3", "ws", {"viewer": ["acc"]}),
            schema("12", "ws"),
            schema("4", "ws"),
            schema("5", "other", {"manager": ["acc"]}),
        ],
        types=[object_type("40", "4"), object_type("120", "12", {"user": ["acc"]})],
    )
    req = build_request(
        method="POST", target="/jsm/assets/workspace/ws/v1/object/aql", headers={}, body=b"{}"
    )
    assert grant_for(user("acc"), req, snap) == RoleGrant(None, ("3", "12"), ("120",))
    req = build_request(
        method="GET", target="/jsm/assets/workspace/ws/v1/objectschema/list", headers={}
    )
    assert grant_for(user("acc"), req, snap) == RoleGrant(None, ("3", "12"), None)


def test_targets_missing_from_the_snapshot_are_unknown() -> None:
    snap = world()
    match, _, _ = _match(request("GET", "/object/88"))
    for target in (
        Target(TargetKind.OBJECT, "ws-1", "1", "404", object_id="88"),
        Target(TargetKind.SCHEMA, "ws-1", "404"),
        Target(TargetKind.IMPORT_SOURCE, "ws-1", "404", import_source_id="is-1"),
    ):
        with pytest.raises(Deny) as err:
            authorize(user("acc"), match, target, snap)
        assert err.value.reason is Reason.UNKNOWN_TARGET
