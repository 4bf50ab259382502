"""Layer 2: OAuth and API-token scopes, Connect scopes, container-token reach."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Route, Router
from sidecar.operations.table import ROUTES, OperationMatch
from sidecar.permissions import check_api_permission, connect_scopes_cover
from sidecar.request import build_request
from sidecar.store.model import ImportSource, Schema, Snapshot

ROUTER = Router(ApiConfig())
BASE = "/jsm/assets/workspace/{ws}/v1"
SNAPSHOT = Snapshot(
    workspaces=frozenset({"ws-1", "ws-2"}),
    schemas={"1": Schema("1", "ws-1", "A", {}), "2": Schema("2", "ws-2", "B", {})},
    import_sources={"is-1": ImportSource("is-1", "1"), "is-2": ImportSource("is-2", "2")},
)

OBJ, SCH, TYP, ATT, CFG = (
    "cmdb-object:jira", "cmdb-schema:jira", "cmdb-type:jira", "cmdb-attribute:jira",
    "cmdb-config:jira",
)
IMP = "import:import-configuration:cmdb"

# method, path under ws-1, OAuth scope, Connect scope
PERMISSIONS: list[tuple[str, str, str, str]] = [
    ("GET", "/object/88", f"read:{OBJ}", "READ"),
    ("GET", "/object/88/attributes", f"read:{OBJ}", "READ"),
    ("GET", "/object/88/history", f"read:{OBJ}", "READ"),
    ("GET", "/object/88/referenceinfo", f"read:{OBJ}", "READ"),
    ("GET", "/objectconnectedtickets/88/tickets", f"read:{OBJ}", "READ"),
    ("PUT", "/object/88", f"write:{OBJ}", "WRITE"),
    ("DELETE", "/object/88", f"delete:{OBJ}", "DELETE"),
    ("POST", "/object/create", f"write:{OBJ}", "WRITE"),
    ("POST", "/object/aql", f"read:{OBJ}", "READ"),
    ("POST", "/object/aql/totalcount", f"read:{OBJ}", "READ"),
    ("POST", "/object/navlist/aql", f"read:{OBJ}", "READ"),
    ("POST", "/object/navlist/iql", f"read:{OBJ}", "READ"),
    ("GET", "/aql/objects", f"read:{OBJ}", "READ"),
    ("GET", "/iql/objects", f"read:{OBJ}", "READ"),
    ("GET", "/objectschema/list", f"read:{SCH}", "READ"),
    ("POST", "/objectschema/create", f"write:{SCH}", "ADMIN"),
    ("GET", "/objectschema/1", f"read:{SCH}", "READ"),
    ("GET", "/objectschema/1/attributes", f"read:{SCH}", "READ"),
    ("GET", "/objectschema/1/objecttypes", f"read:{SCH}", "READ"),
    ("GET", "/objectschema/1/objecttypes/flat", f"read:{SCH}", "READ"),
    ("PUT", "/objectschema/1", f"write:{SCH}", "WRITE"),
    ("DELETE", "/objectschema/1", f"delete:{SCH}", "ADMIN"),
    ("GET", "/objecttype/10", f"read:{TYP}", "READ"),
    ("GET", "/objecttype/10/attributes", f"read:{TYP}", "READ"),
    ("POST", "/objecttype/create", f"write:{TYP}", "WRITE"),
    ("PUT", "/objecttype/10", f"write:{TYP}", "WRITE"),
    ("POST", "/objecttype/10/position", f"write:{TYP}", "WRITE"),
    ("DELETE", "/objecttype/10", f"delete:{TYP}", "DELETE"),
    ("POST", "/objecttypeattribute/10", f"write:{ATT}", "WRITE"),
    ("PUT", "/objecttypeattribute/10/501", f"write:{ATT}", "WRITE"),
    ("DELETE", "/objecttypeattribute/501", f"delete:{ATT}", "DELETE"),
    ("GET", "/icon/global", "read:cmdb-icon:jira", "READ"),
    ("GET", "/icon/3", "read:cmdb-icon:jira", "READ"),
    ("GET", "/icon/3/icon.png", "read:cmdb-icon:jira", "READ"),
    ("GET", "/config/statustype", f"read:{CFG}", "READ"),
    ("GET", "/config/statustype/4", f"read:{CFG}", "READ"),
    ("GET", "/config/referencetype", f"read:{CFG}", "READ"),
    ("POST", "/config/statustype", f"write:{CFG}", "WRITE"),
    ("PUT", "/config/statustype/4", f"write:{CFG}", "WRITE"),
    ("POST", "/config/referencetype", f"write:{CFG}", "WRITE"),
    ("DELETE", "/config/statustype/4", f"delete:{CFG}", "DELETE"),
    ("GET", "/global/config", f"read:{CFG}", "ADMIN"),
    ("GET", "/global/config/objectschema/1", f"read:{CFG}", "ADMIN"),
    ("POST", "/global/config/objectschema/1/property", f"write:{CFG}", "ADMIN"),
    ("POST", "/import/start/is-1", IMP, "WRITE"),
    ("GET", "/progress/category/imports/is-1", IMP, "WRITE"),
    ("GET", "/importsource/is-1", IMP, "WRITE"),
    ("PUT", "/importsource/is-1/mapping", IMP, "WRITE"),
    ("DELETE", "/importsource/is-1/executions/e1", IMP, "WRITE"),
    ("GET", "/importsource/is-1/token", IMP, "WRITE"),
    ("POST", "/importsource/is-1/token", IMP, "WRITE"),
]
IDS = [f"{m} {p}" for m, p, _, _ in PERMISSIONS]
CONNECT_LEVELS = ("READ", "WRITE", "DELETE", "ADMIN")
ALL_SCOPES = frozenset(scope for _, _, scope, _ in PERMISSIONS)


def _route(method: str, target: str) -> tuple[OperationMatch, Route]:
    request = build_request(method=method, target=target, headers={})
    route = ROUTER.route(request)
    return ROUTER.find_operation(request, route), route


def _managed(method: str, path: str, ws: str = "ws-1") -> tuple[OperationMatch, Route]:
    return _route(method, BASE.format(ws=ws) + path)


def _imports_info() -> tuple[OperationMatch, Route]:
    return _route("GET", "/jsm/assets/v1/imports/info")


def oauth(scopes: frozenset[str] | None) -> Principal:
    return Principal(
        AuthType.OAUTH, PrincipalKind.USER, "acc", frozenset({"acc"}), scopes=scopes
    )


def api_token(scopes: frozenset[str] | None) -> Principal:
    return Principal(
        AuthType.API_TOKEN, PrincipalKind.USER, "acc", frozenset({"acc"}), scopes=scopes
    )


def connect(scopes: frozenset[str], *, impersonated: bool = False) -> Principal:
    return Principal(
        AuthType.CONNECT,
        PrincipalKind.USER if impersonated else PrincipalKind.APP,
        "acc" if impersonated else "app-account",
        frozenset({"acc"} if impersonated else {"app-account", "connect:com.example"}),
        app_key="com.example",
        impersonated=impersonated,
        connect_scopes=scopes,
    )


def container(source: str) -> Principal:
    return Principal(
        AuthType.CONTAINER_TOKEN, PrincipalKind.CONTAINER, None, frozenset(),
        import_source_id=source,
    )


def _denied(principal: Principal, match: OperationMatch, route: Route) -> Deny:
    with pytest.raises(Deny) as err:
        check_api_permission(principal, match, route, SNAPSHOT)
    return err.value


def test_the_examples_cover_every_operation_row() -> None:
    patterns = {_managed(m, p)[0].pattern for m, p, _, _ in PERMISSIONS}
    assert patterns == {r.pattern for r in ROUTES}


@pytest.mark.parametrize("make", [oauth, api_token], ids=["oauth", "api-token"])
@pytest.mark.parametrize(("method", "path", "scope", "connect_scope"), PERMISSIONS, ids=IDS)
def test_scoped_tokens_need_the_operations_scope(
    make: Callable[[frozenset[str] | None], Principal],
    method: str,
    path: str,
    scope: str,
    connect_scope: str,
) -> None:
    match, route = _managed(method, path)
    check_api_permission(make(frozenset({scope})), match, route, SNAPSHOT)
    check_api_permission(make(ALL_SCOPES), match, route, SNAPSHOT)
    deny = _denied(make(ALL_SCOPES - {scope}), match, route)
    assert deny.reason is Reason.INSUFFICIENT_SCOPE
    assert deny.scope == scope
    deny = _denied(make(frozenset()), match, route)
    assert deny.reason is Reason.INSUFFICIENT_SCOPE
    assert deny.scope == scope


@pytest.mark.parametrize(("method", "path", "scope", "connect_scope"), PERMISSIONS, ids=IDS)
def test_an_oauth_token_without_scopes_is_never_unscoped(
    method: str, path: str, scope: str, connect_scope: str
) -> None:
    match, route = _managed(method, path)
    deny = _denied(oauth(None), match, route)
    assert deny.reason is Reason.INSUFFICIENT_SCOPE
    assert deny.scope == scope


@pytest.mark.parametrize(("method", "path", "scope", "connect_scope"), PERMISSIONS, ids=IDS)
def test_unscoped_api_tokens_pass(method: str, path: str, scope: str, connect_scope: str) -> None:
    match, route = _managed(method, path)
    check_api_permission(api_token(None), match, route, SNAPSHOT)


def test_scope_names_are_exact() -> None:
    match, route = _managed("GET", "/object/88")
    for near in ("READ:cmdb-object:jira", "read:cmdb-object", "read:cmdb-object:jira "):
        assert _denied(oauth(frozenset({near})), match, route).reason is Reason.INSUFFICIENT_SCOPE


@pytest.mark.parametrize("held", CONNECT_LEVELS)
@pytest.mark.parametrize(("method", "path", "scope", "connect_scope"), PERMISSIONS, ids=IDS)
def test_connect_scopes_follow_the_hierarchy(
    held: str, method: str, path: str, scope: str, connect_scope: str
) -> None:
    match, route = _managed(method, path)
    principal = connect(frozenset({held}))
    if CONNECT_LEVELS.index(held) >= CONNECT_LEVELS.index(connect_scope):
        check_api_permission(principal, match, route, SNAPSHOT)
    else:
        assert _denied(principal, match, route).reason is Reason.CONNECT_SCOPE_MISSING


@pytest.mark.parametrize(("method", "path", "scope", "connect_scope"), PERMISSIONS, ids=IDS)
def test_connect_apps_without_scopes_are_refused(
    method: str, path: str, scope: str, connect_scope: str
) -> None:
    match, route = _managed(method, path)
    for held in (frozenset(), frozenset({"ACT_AS_USER"}), frozenset({"BOGUS"})):
        assert _denied(connect(held), match, route).reason is Reason.CONNECT_SCOPE_MISSING


@pytest.mark.parametrize("path", ["/object/aql", "/object/aql/totalcount", "/object/navlist/iql"])
def test_post_searches_need_only_read(path: str) -> None:
    match, route = _managed("POST", path)
    check_api_permission(connect(frozenset({"READ"})), match, route, SNAPSHOT)


@pytest.mark.parametrize(
    ("held", "ok"),
    [
        ({"READ", "ACT_AS_USER"}, True),
        ({"ADMIN", "ACT_AS_USER"}, True),
        ({"read", "act_as_user"}, True),
        ({"READ"}, False),
        ({"ADMIN"}, False),
        ({"ACT_AS_USER"}, False),
    ],
)
def test_impersonation_needs_act_as_user_and_the_scope(held: set[str], ok: bool) -> None:
    match, route = _managed("GET", "/object/88")
    principal = connect(frozenset(held), impersonated=True)
    if ok:
        check_api_permission(principal, match, route, SNAPSHOT)
    else:
        assert _denied(principal, match, route).reason is Reason.CONNECT_SCOPE_MISSING


@pytest.mark.parametrize(
    ("held", "needed", "covered"),
    [
        ({"READ"}, "READ", True),
        ({"WRITE"}, "READ", True),
        ({"DELETE"}, "WRITE", True),
        ({"PROJECT_ADMIN"}, "DELETE", True),
        ({"PROJECT_ADMIN"}, "ADMIN", False),
        ({"ADMIN"}, "DELETE", True),
        ({"WRITE"}, "DELETE", False),
        ({"READ", "WRITE"}, "DELETE", False),
        ({"ACT_AS_USER"}, "READ", False),
        ({"write"}, "WRITE", True),
        (set(), "READ", False),
    ],
)
def test_connect_scope_cover(held: set[str], needed: str, covered: bool) -> None:
    assert connect_scopes_cover(held, needed) is covered


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/importsource/is-1"),
        ("PUT", "/importsource/is-1"),
        ("DELETE", "/importsource/is-1"),
        ("GET", "/importsource/is-1/mapping"),
        ("PUT", "/importsource/is-1/mapping"),
        ("GET", "/importsource/is-1/configstatus"),
        ("POST", "/importsource/is-1/schema-and-mapping"),
        ("POST", "/importsource/is-1/executions"),
        ("POST", "/importsource/is-1/executions/e1/data"),
        ("PUT", "/importsource/is-1/status"),
        ("PATCH", "/importsource/is-1/schedule"),
        ("GET", "/importsource/is-1/token"),
        ("POST", "/importsource/is-1/token/anything"),
    ],
)
def test_container_tokens_reach_their_own_import_source(method: str, path: str) -> None:
    match, route = _managed(method, path)
    check_api_permission(container("is-1"), match, route, SNAPSHOT)


@pytest.mark.parametrize(
    ("method", "path", "ws", "source"),
    [
        ("POST", "/importsource/is-1/token", "ws-1", "is-1"),  # minting
        ("POST", "/importsource/is-1/TOKEN", "ws-1", "is-1"),
        ("GET", "/importsource/is-2", "ws-1", "is-1"),  # foreign source
        ("GET", "/importsource/is-2", "ws-2", "is-1"),
        ("GET", "/importsource/is-1", "ws-2", "is-1"),  # other workspace
        ("GET", "/importsource/is-1", "ws-unknown", "is-1"),
        ("GET", "/importsource/IS-1", "ws-1", "is-1"),
        ("GET", "/importsource/gone", "ws-1", "gone"),  # source no longer in the store
        ("POST", "/import/start/is-1", "ws-1", "is-1"),
        ("GET", "/progress/category/imports/is-1", "ws-1", "is-1"),
        ("GET", "/object/88", "ws-1", "is-1"),
        ("POST", "/object/aql", "ws-1", "is-1"),
        ("GET", "/icon/global", "ws-1", "is-1"),
        ("GET", "/objectschema/1", "ws-1", "is-1"),
        ("DELETE", "/objectschema/1", "ws-1", "is-1"),
    ],
)
def test_container_tokens_reach_nothing_else(method: str, path: str, ws: str, source: str) -> None:
    match, route = _managed(method, path, ws)
    assert _denied(container(source), match, route).reason is Reason.TOKEN_NOT_ALLOWED


def test_container_tokens_reach_imports_info() -> None:
    match, route = _imports_info()
    check_api_permission(container("is-1"), match, route, SNAPSHOT)


@pytest.mark.parametrize(
    "principal",
    [
        oauth(ALL_SCOPES),
        oauth(None),
        api_token(None),
        api_token(ALL_SCOPES),
        connect(frozenset({"ADMIN"})),
        connect(frozenset({"ADMIN", "ACT_AS_USER"}), impersonated=True),
    ],
    ids=["oauth", "oauth-unscoped", "api-token", "api-token-scoped", "connect", "impersonation"],
)
def test_imports_info_is_for_container_tokens_only(principal: Principal) -> None:
    match, route = _imports_info()
    assert _denied(principal, match, route).reason is Reason.TOKEN_NOT_ALLOWED
