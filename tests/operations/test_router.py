"""Routing: base paths, workspace extraction, imports-info, operations and unknown operations."""

from __future__ import annotations

import re

import pytest

from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.router import ImportsInfo, Managed, Route, Router, Unmanaged
from sidecar.operations.table import ROUTES, OperationMatch
from sidecar.request import build_request

DEFAULT = ApiConfig()
CUSTOM = ApiConfig(
    base_paths=("/custom/ws-{workspaceId}/api",), imports_info_path="/custom/imports/info"
)
BASES = [
    ("default-1", DEFAULT, "/jsm/assets/workspace/{ws}/v1"),
    ("default-2", DEFAULT, "/gateway/api/jsm/assets/workspace/{ws}/v1"),
    ("custom", CUSTOM, "/custom/ws-{ws}/api"),
]

# method, relative path, operation, params, pattern it must come from
EXAMPLES: list[tuple[str, str, str, dict[str, str], str]] = [
    ("GET", "/object/88", "object.read", {"id": "88"}, "/object/{id}"),
    ("GET", "/object/88/attributes", "object.read", {"id": "88"}, "/object/{id}/attributes"),
    ("GET", "/object/88/history", "object.read", {"id": "88"}, "/object/{id}/history"),
    (
        "GET", "/object/88/referenceinfo", "object.read", {"id": "88"},
        "/object/{id}/referenceinfo",
    ),
    (
        "GET", "/objectconnectedtickets/88/tickets", "object.read", {"id": "88"},
        "/objectconnectedtickets/{id}/tickets",
    ),
    ("PUT", "/object/88", "object.update", {"id": "88"}, "/object/{id}"),
    ("DELETE", "/object/88", "object.delete", {"id": "88"}, "/object/{id}"),
    ("POST", "/object/create", "object.create", {}, "/object/create"),
    ("POST", "/object/aql", "object.search", {}, "/object/aql"),
    ("POST", "/object/aql/totalcount", "object.search", {}, "/object/aql/totalcount"),
    ("POST", "/object/navlist/aql", "object.search", {}, "/object/navlist/aql"),
    ("POST", "/object/navlist/iql", "object.search", {}, "/object/navlist/iql"),
    ("GET", "/aql/objects", "object.search", {}, "/aql/objects"),
    ("GET", "/iql/objects", "object.search", {}, "/iql/objects"),
    ("GET", "/objectschema/list", "schema.list", {}, "/objectschema/list"),
    ("POST", "/objectschema/create", "schema.create", {}, "/objectschema/create"),
    ("GET", "/objectschema/1", "schema.read", {"id": "1"}, "/objectschema/{id}"),
    (
        "GET", "/objectschema/1/attributes", "schema.read", {"id": "1"},
        "/objectschema/{id}/attributes",
    ),
    (
        "GET", "/objectschema/1/objecttypes", "schema.read", {"id": "1"},
        "/objectschema/{id}/objecttypes",
    ),
    (
        "GET", "/objectschema/1/objecttypes/flat", "schema.read", {"id": "1"},
        "/objectschema/{id}/objecttypes/flat",
    ),
    ("PUT", "/objectschema/1", "schema.update", {"id": "1"}, "/objectschema/{id}"),
    ("DELETE", "/objectschema/1", "schema.delete", {"id": "1"}, "/objectschema/{id}"),
    ("GET", "/objecttype/10", "type.read", {"id": "10"}, "/objecttype/{id}"),
    (
        "GET", "/objecttype/10/attributes", "type.read", {"id": "10"},
        "/objecttype/{id}/attributes",
    ),
    ("POST", "/objecttype/create", "type.create", {}, "/objecttype/create"),
    ("PUT", "/objecttype/10", "type.update", {"id": "10"}, "/objecttype/{id}"),
    (
        "POST", "/objecttype/10/position", "type.update", {"id": "10"},
        "/objecttype/{id}/position",
    ),
    ("DELETE", "/objecttype/10", "type.delete", {"id": "10"}, "/objecttype/{id}"),
    (
        "POST", "/objecttypeattribute/10", "attribute.create", {"objectTypeId": "10"},
        "/objecttypeattribute/{objectTypeId}",
    ),
    (
        "PUT", "/objecttypeattribute/10/501", "attribute.update",
        {"objectTypeId": "10", "id": "501"}, "/objecttypeattribute/{objectTypeId}/{id}",
    ),
    (
        "DELETE", "/objecttypeattribute/501", "attribute.delete", {"id": "501"},
        "/objecttypeattribute/{id}",
    ),
    ("GET", "/icon/global", "icon.read", {}, "/icon/global"),
    ("GET", "/icon/3", "icon.read", {"id": "3"}, "/icon/{id}"),
    ("GET", "/icon/3/icon.png", "icon.read", {"id": "3"}, "/icon/{id}/icon.png"),
    ("GET", "/config/statustype", "config.read", {}, "/config/statustype"),
    ("GET", "/config/statustype/4", "config.read", {"id": "4"}, "/config/statustype/{id}"),
    ("GET", "/config/referencetype", "config.read", {}, "/config/referencetype"),
    ("POST", "/config/statustype", "config.write", {}, "/config/statustype"),
    ("PUT", "/config/statustype/4", "config.write", {"id": "4"}, "/config/statustype/{id}"),
    ("POST", "/config/referencetype", "config.write", {}, "/config/referencetype"),
    ("DELETE", "/config/statustype/4", "config.delete", {"id": "4"}, "/config/statustype/{id}"),
    ("GET", "/global/config", "config.global", {}, "/global/config"),
    (
        "GET", "/global/config/objectschema/1", "config.global", {"id": "1"},
        "/global/config/objectschema/{id}",
    ),
    (
        "POST", "/global/config/objectschema/1/property", "config.global", {"id": "1"},
        "/global/config/objectschema/{id}/property",
    ),
    ("POST", "/import/start/is-1", "import.run", {"id": "is-1"}, "/import/start/{id}"),
    (
        "GET", "/progress/category/imports/is-1", "import.run", {"id": "is-1"},
        "/progress/category/imports/{id}",
    ),
    ("GET", "/importsource/is-1", "importsource.use", {"id": "is-1"}, "/importsource/{id}/**"),
    (
        "PUT", "/importsource/is-1/mapping", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "GET", "/importsource/is-1/configstatus", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "POST", "/importsource/is-1/schema-and-mapping", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "POST", "/importsource/is-1/executions", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "POST", "/importsource/is-1/executions/e1/data", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "DELETE", "/importsource/is-1/status", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "PATCH", "/importsource/is-1/schedule", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "GET", "/importsource/is-1/token", "importsource.use", {"id": "is-1"},
        "/importsource/{id}/**",
    ),
    (
        "POST", "/importsource/is-1/token", "importsource.token", {"id": "is-1"},
        "/importsource/{id}/token",
    ),
]

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def _find(router: Router, method: str, target: str) -> tuple[Route, OperationMatch]:
    request = build_request(method=method, target=target, headers={})
    route = router.route(request)
    return route, router.find_operation(request, route)


def test_examples_cover_every_row_of_the_table() -> None:
    covered = {(m if p != "/importsource/{id}/**" else "*", p) for m, _, _, _, p in EXAMPLES}
    assert covered == {(r.method, r.pattern) for r in ROUTES}


@pytest.mark.parametrize(("label", "api", "base"), BASES, ids=[b[0] for b in BASES])
@pytest.mark.parametrize(
    ("method", "path", "name", "params", "pattern"),
    EXAMPLES,
    ids=[f"{e[0]} {e[1]}" for e in EXAMPLES],
)
def test_every_path_routes_to_its_operation(
    label: str,
    api: ApiConfig,
    base: str,
    method: str,
    path: str,
    name: str,
    params: dict[str, str],
    pattern: str,
) -> None:
    router = Router(api)
    route, match = _find(router, method, base.format(ws="ws-1") + path + "?x=1")
    assert isinstance(route, Managed)
    assert route.workspace_id == "ws-1"
    assert route.rest == tuple(path[1:].split("/"))
    assert match.operation.name == name
    assert dict(match.params) == params
    assert match.pattern == pattern


def _shape(pattern: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", pattern)


@pytest.mark.parametrize(
    "path", sorted({e[1] for e in EXAMPLES if not e[4].startswith("/importsource/")})
)
def test_wrong_methods_are_unknown_operations(path: str) -> None:
    router = Router(DEFAULT)
    shape = next(_shape(e[4]) for e in EXAMPLES if e[1] == path)
    allowed = {e[0] for e in EXAMPLES if _shape(e[4]) == shape}
    for method in METHODS:
        if method in allowed:
            continue
        request = build_request(
            method=method, target=f"/jsm/assets/workspace/ws-1/v1{path}", headers={}
        )
        with pytest.raises(Deny) as err:
            router.find_operation(request, router.route(request))
        assert err.value.reason is Reason.UNKNOWN_OPERATION, (method, path)


@pytest.mark.parametrize(("method", "path"), sorted({(e[0], e[1]) for e in EXAMPLES}))
def test_a_trailing_slash_never_matches(method: str, path: str) -> None:
    router = Router(DEFAULT)
    request = build_request(
        method=method, target=f"/jsm/assets/workspace/ws-1/v1{path}/", headers={}
    )
    route = router.route(request)
    assert isinstance(route, Managed)
    with pytest.raises(Deny) as err:
        router.find_operation(request, route)
    assert err.value.reason is Reason.UNKNOWN_OPERATION


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/"),
        ("GET", "/object"),
        ("GET", "/objects/88"),
        ("GET", "/object/88/unknown"),
        ("GET", "/objectschema"),
        ("GET", "/objecttypeattribute/10/501/extra"),
        ("GET", "/global"),
        ("GET", "/global/config/objectschema"),
        ("POST", "/import/start"),
        ("GET", "/progress/category/imports"),
        ("GET", "/importsource"),
        ("GET", "/v1/object/88"),
        ("HEAD", "/object/88"),
        ("OPTIONS", "/object/aql"),
    ],
)
def test_unknown_paths_are_unknown_operations(method: str, path: str) -> None:
    router = Router(DEFAULT)
    request = build_request(
        method=method, target=f"/jsm/assets/workspace/ws-1/v1{path}", headers={}
    )
    route = router.route(request)
    assert isinstance(route, Managed)
    with pytest.raises(Deny) as err:
        router.find_operation(request, route)
    assert err.value.reason is Reason.UNKNOWN_OPERATION


@pytest.mark.parametrize(
    ("api", "target", "expected"),
    [
        (DEFAULT, "/jsm/assets/workspace/ws-1/v1/object/88", Managed("ws-1", ("object", "88"))),
        (DEFAULT, "/jsm/assets/workspace/ws-1/v1", Managed("ws-1", ())),
        (DEFAULT, "/jsm/assets/workspace/ws-1/v1/", Managed("ws-1", ("",))),
        (DEFAULT, "/jsm/assets/workspace/a%20b/v1/aql/objects", Managed("a b", ("aql", "objects"))),
        (DEFAULT, "/jsm/assets/workspace/%C3%A9/v1/x", Managed("é", ("x",))),
        (DEFAULT, "/jsm/assets/workspace/WS-1/v1/x", Managed("WS-1", ("x",))),
        (DEFAULT, "/JSM/Assets/workspace/ws-1/V1/x", Managed("ws-1", ("x",))),
        (DEFAULT, "/jsm/%61ssets/workspace/ws-1/v1/x", Managed("ws-1", ("x",))),
        (
            DEFAULT,
            "/gateway/api/jsm/assets/workspace/ws-2/v1/object/1",
            Managed("ws-2", ("object", "1")),
        ),
        (DEFAULT, "/jsm/assets/workspace/ws-1", Unmanaged()),
        (DEFAULT, "/jsm/assets/workspace/ws-1/v2/object/88", Unmanaged()),
        (DEFAULT, "/jsm/assets/workspace//v1/object/88", None),  # refused by canonicalisation
        (DEFAULT, "/", Unmanaged()),
        (DEFAULT, "/rest/api/3/myself", Unmanaged()),
        (DEFAULT, "/jsm/assets/v1/imports/info", ImportsInfo()),
        (DEFAULT, "/jsm/assets/v1/imports/info/", ImportsInfo()),
        (DEFAULT, "/jsm/assets/v1/imports/info?x=1", ImportsInfo()),
        (DEFAULT, "/jsm/assets/v1/imports/info/more", Unmanaged()),
        (DEFAULT, "/jsm/assets/v1/imports", Unmanaged()),
        (CUSTOM, "/custom/ws-abc/api/object/1", Managed("abc", ("object", "1"))),
        (CUSTOM, "/custom/WS-abc/api/object/1", Managed("abc", ("object", "1"))),
        (CUSTOM, "/custom/ws-/api/object/1", Unmanaged()),
        (CUSTOM, "/custom/abc/api/object/1", Unmanaged()),
        (CUSTOM, "/jsm/assets/workspace/ws-1/v1/object/88", Unmanaged()),
        (CUSTOM, "/custom/imports/info", ImportsInfo()),
        (CUSTOM, "/jsm/assets/v1/imports/info", Unmanaged()),
    ],
)
def test_route_classification_and_workspace_extraction(
    api: ApiConfig, target: str, expected: object
) -> None:
    router = Router(api)
    if expected is None:
        with pytest.raises(Deny):
            build_request(method="GET", target=target, headers={})
        return
    request = build_request(method="GET", target=target, headers={})
    assert router.route(request) == expected


def test_a_workspace_placeholder_ending_the_base_path_needs_a_value() -> None:
    router = Router(ApiConfig(base_paths=("/ws/{workspaceId}",)))
    assert router.route(build_request(method="GET", target="/ws/", headers={})) == Unmanaged()
    assert router.route(build_request(method="GET", target="/ws/a/b", headers={})) == Managed(
        "a", ("b",)
    )


def test_the_longest_base_path_wins() -> None:
    router = Router(ApiConfig(base_paths=("/a/{workspaceId}", "/a/{workspaceId}/v1")))
    request = build_request(method="GET", target="/a/w/v1/object/1", headers={})
    assert router.route(request) == Managed("w", ("object", "1"))
    assert router.find_operation(request, router.route(request)).params["id"] == "1"


@pytest.mark.parametrize(
    ("method", "target", "name"),
    [
        ("GET", "/jsm/assets/v1/imports/info", "imports.info"),
        ("POST", "/jsm/assets/v1/imports/info", None),
        ("DELETE", "/jsm/assets/v1/imports/info", None),
        ("GET", "/jsm/assets/v1/imports/info/", None),
    ],
)
def test_imports_info_is_get_only(method: str, target: str, name: str | None) -> None:
    router = Router(DEFAULT)
    request = build_request(method=method, target=target, headers={})
    route = router.route(request)
    assert isinstance(route, ImportsInfo)
    if name is None:
        with pytest.raises(Deny) as err:
            router.find_operation(request, route)
        assert err.value.reason is Reason.UNKNOWN_OPERATION
    else:
        assert router.find_operation(request, route).operation.name == name


def test_an_unmanaged_route_has_no_operation() -> None:
    router = Router(DEFAULT)
    request = build_request(method="GET", target="/elsewhere", headers={})
    with pytest.raises(Deny) as err:
        router.find_operation(request, router.route(request))
    assert err.value.reason is Reason.UNKNOWN_OPERATION


@pytest.mark.parametrize(
    "api",
    [
        ApiConfig(base_paths=("/a/b",)),
        ApiConfig(base_paths=("/a/{workspaceId}/{workspaceId}",)),
        ApiConfig(base_paths=("a/{workspaceId}",)),
        ApiConfig(base_paths=("/a/{workspaceId}/",)),
        ApiConfig(imports_info_path="imports"),
    ],
)
def test_invalid_api_configuration_is_refused(api: ApiConfig) -> None:
    with pytest.raises(ValueError):
        Router(api)
