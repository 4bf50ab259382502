"""Target resolution: ids through the index, bodies, query, workspaces."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import ApiConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Router
from sidecar.operations.table import TargetKind
from sidecar.request import HttpRequest, build_request
from sidecar.roles.targets import Target, UnknownTarget, resolve_target
from sidecar.store.model import Snapshot

from .helpers import container, request, user, world

ROUTER = Router(ApiConfig())
K = TargetKind


def resolve(req: HttpRequest, snap: Snapshot | None = None, principal: Any = None) -> Target:
    route = ROUTER.route(req)
    match = ROUTER.find_operation(req, route)
    return resolve_target(match, route, req, snap or world(), principal)


def denied(req: HttpRequest, snap: Snapshot | None = None, principal: Any = None) -> Deny:
    with pytest.raises(Deny) as err:
        resolve(req, snap, principal)
    return err.value


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/object/88", None, Target(K.OBJECT, "ws-1", "1", "10", object_id="88")),
        ("PUT", "/object/89", None, Target(K.OBJECT, "ws-1", "1", "11", object_id="89")),
        ("GET", "/objectconnectedtickets/88/tickets", None,
         Target(K.OBJECT, "ws-1", "1", "10", object_id="88")),
        ("POST", "/object/create", {"objectTypeId": "10"}, Target(K.TYPE, "ws-1", "1", "10")),
        ("POST", "/object/create", {"objectTypeId": 11, "x": [1]},
         Target(K.TYPE, "ws-1", "1", "11")),
        ("POST", "/object/aql", {"qlQuery": "x"}, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/objectschema/list", None, Target(K.WORKSPACE, "ws-1")),
        ("POST", "/objectschema/create", None, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/objectschema/1/objecttypes/flat", None, Target(K.SCHEMA, "ws-1", "1")),
        ("DELETE", "/objectschema/1", None, Target(K.SCHEMA, "ws-1", "1")),
        ("GET", "/objecttype/10", None, Target(K.TYPE, "ws-1", "1", "10")),
        ("POST", "/objecttype/create", {"objectSchemaId": 1}, Target(K.SCHEMA, "ws-1", "1")),
        ("POST", "/objecttype/create", {"objectSchemaId": "1"}, Target(K.SCHEMA, "ws-1", "1")),
        ("POST", "/objecttype/11/position", {}, Target(K.TYPE, "ws-1", "1", "11")),
        ("POST", "/objecttypeattribute/10", None, Target(K.TYPE, "ws-1", "1", "10")),
        ("PUT", "/objecttypeattribute/10/501", None, Target(K.TYPE, "ws-1", "1", "10")),
        ("PUT", "/objecttypeattribute/10/999", None, Target(K.TYPE, "ws-1", "1", "10")),
        ("DELETE", "/objecttypeattribute/502",
         None, Target(K.ATTRIBUTE, "ws-1", "1", "11", attribute_id="502")),
        ("GET", "/icon/3/icon.png", None, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/config/statustype", None, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/config/statustype?objectSchemaId=1", None, Target(K.SCHEMA, "ws-1", "1")),
        ("POST", "/config/statustype", {"objectSchemaId": "1"}, Target(K.SCHEMA, "ws-1", "1")),
        ("PUT", "/config/statustype/4", {"objectSchemaId": 1}, Target(K.SCHEMA, "ws-1", "1")),
        ("POST", "/config/referencetype", {"name": "n"}, Target(K.WORKSPACE, "ws-1")),
        ("POST", "/config/referencetype", {"objectSchemaId": None}, Target(K.WORKSPACE, "ws-1")),
        ("DELETE", "/config/statustype/4", None, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/global/config", None, Target(K.WORKSPACE, "ws-1")),
        ("GET", "/global/config/objectschema/1", None, Target(K.SCHEMA, "ws-1", "1")),
        ("POST", "/import/start/is-1", None,
         Target(K.IMPORT_SOURCE, "ws-1", "1", import_source_id="is-1")),
        ("GET", "/progress/category/imports/is-1", None,
         Target(K.IMPORT_SOURCE, "ws-1", "1", import_source_id="is-1")),
        ("PUT", "/importsource/is-1/mapping", None,
         Target(K.IMPORT_SOURCE, "ws-1", "1", import_source_id="is-1")),
        ("POST", "/importsource/is-1/token", None,
         Target(K.IMPORT_SOURCE, "ws-1", "1", import_source_id="is-1")),
    ],
)
def test_targets_resolve(method: str, path: str, body: Any, expected: Target) -> None:
    assert resolve(request(method, path, body=body)) == expected


def test_workspace_targets_of_an_empty_workspace_resolve() -> None:
    assert resolve(request("GET", "/objectschema/list", ws="ws-empty")) == Target(
        K.WORKSPACE, "ws-empty"
    )


BODY_OPERATIONS = [
    ("POST", "/object/create", "objectTypeId"),
    ("POST", "/objecttype/create", "objectSchemaId"),
]


@pytest.mark.parametrize(("method", "path", "field"), BODY_OPERATIONS)
@pytest.mark.parametrize(
    ("raw", "partial"),
    [
        (None, False),  # Envoy sent no body
        (b"", False),
        (b'{"objectTypeId": "10", "objectSchemaId": "1"', True),  # truncated
        (b'{"objectTypeId": "10", "objectSchemaId": "1"}', True),  # flagged partial anyway
        (b"{not json", False),
        (b"\xff\xfe{}", False),  # not UTF-8
        (b"[]", False),
        (b'"10"', False),
        (b"10", False),
        (b"null", False),
        (b"{}", False),  # field missing
        (b'{"objectTypeId": NaN, "objectSchemaId": NaN}', False),
        (b'{"objectTypeId": "10", "objectTypeId": "11", '
         b'"objectSchemaId": "1", "objectSchemaId": "2"}', False),  # duplicate keys
        (b"[" * 100000 + b"]" * 100000, False),  # too deep
    ],
    ids=[
        "none", "empty", "partial", "partial-flag", "unparsable", "not-utf8", "array", "string",
        "number", "null", "missing-field", "nan", "duplicate-keys", "deep",
    ],
)
def test_bad_bodies_are_bad_requests(
    method: str, path: str, field: str, raw: bytes | None, partial: bool
) -> None:
    headers = {"x-envoy-auth-partial-body": "true"} if partial else {}
    req = build_request(
        method=method, target=f"/jsm/assets/workspace/ws-1/v1{path}", headers=headers, body=raw
    )
    assert denied(req).reason is Reason.BAD_REQUEST


@pytest.mark.parametrize(("method", "path", "field"), BODY_OPERATIONS)
@pytest.mark.parametrize(
    "value", [None, True, False, 1.0, 10.5, 1e3, [10], {"id": 10}], ids=repr
)
def test_ids_of_the_wrong_type_are_bad_requests(
    method: str, path: str, field: str, value: Any
) -> None:
    assert denied(request(method, path, body={field: value})).reason is Reason.BAD_REQUEST


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"{bad", b"[]", b'{"objectSchemaId": true}', b'{"objectSchemaId": 1.5}',
     b'{"objectSchemaId": ["1"]}'],
)
def test_config_write_bodies_must_be_readable(raw: bytes | None) -> None:
    req = request("POST", "/config/statustype", raw_body=raw) if raw is not None else request(
        "POST", "/config/statustype"
    )
    assert denied(req).reason is Reason.BAD_REQUEST


def test_config_write_partial_body_is_a_bad_request() -> None:
    req = request(
        "PUT", "/config/statustype/4", body={"objectSchemaId": "1"},
        headers={"x-envoy-auth-partial-body": "true"},
    )
    assert denied(req).reason is Reason.BAD_REQUEST


def test_config_read_takes_one_schema_from_the_query() -> None:
    req = request("GET", "/config/statustype?objectSchemaId=1&objectSchemaId=2")
    assert denied(req).reason is Reason.BAD_REQUEST
    assert denied(request("GET", "/config/statustype?objectSchemaId=2")).reason is (
        Reason.UNKNOWN_TARGET
    )
    assert denied(request("GET", "/config/statustype?objectSchemaId=")).reason is (
        Reason.UNKNOWN_TARGET
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/object/99", None),
        ("DELETE", "/object/99", None),
        ("POST", "/object/create", {"objectTypeId": "20"}),
        ("GET", "/objectschema/2", None),
        ("PUT", "/objectschema/2", None),
        ("GET", "/objecttype/20", None),
        ("POST", "/objecttype/create", {"objectSchemaId": 2}),
        ("POST", "/objecttypeattribute/20", None),
        ("PUT", "/objecttypeattribute/20/601", None),
        ("DELETE", "/objecttypeattribute/601", None),
        ("GET", "/config/statustype?objectSchemaId=2", None),
        ("POST", "/config/statustype", {"objectSchemaId": "2"}),
        ("GET", "/global/config/objectschema/2", None),
        ("POST", "/global/config/objectschema/2/property", None),
        ("POST", "/import/start/is-2", None),
        ("GET", "/progress/category/imports/is-2", None),
        ("GET", "/importsource/is-2", None),
        ("POST", "/importsource/is-2/token", None),
    ],
)
def test_targets_in_another_workspace_are_unknown(method: str, path: str, body: Any) -> None:
    deny = denied(request(method, path, body=body, ws="ws-1"))
    assert deny.reason is Reason.UNKNOWN_TARGET
    assert not isinstance(deny, UnknownTarget)  # known, just not here
    # and from their own workspace they resolve
    assert resolve(request(method, path, body=body, ws="ws-2")).workspace_id == "ws-2"


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "ident"),
    [
        ("GET", "/object/404", None, K.OBJECT, "404"),
        ("POST", "/object/create", {"objectTypeId": 404}, K.TYPE, "404"),
        ("POST", "/object/create", {"objectTypeId": ""}, K.TYPE, ""),
        ("GET", "/objectschema/404", None, K.SCHEMA, "404"),
        ("GET", "/objecttype/404", None, K.TYPE, "404"),
        ("POST", "/objecttype/create", {"objectSchemaId": "404"}, K.SCHEMA, "404"),
        ("POST", "/objecttypeattribute/404", None, K.TYPE, "404"),
        ("DELETE", "/objecttypeattribute/404", None, K.ATTRIBUTE, "404"),
        ("PUT", "/config/statustype/4", {"objectSchemaId": -1}, K.SCHEMA, "-1"),
        ("POST", "/import/start/nope", None, K.IMPORT_SOURCE, "nope"),
        ("GET", "/importsource/nope/mapping", None, K.IMPORT_SOURCE, "nope"),
    ],
)
def test_unknown_ids_are_unknown_targets(
    method: str, path: str, body: Any, kind: TargetKind, ident: str
) -> None:
    deny = denied(request(method, path, body=body))
    assert isinstance(deny, UnknownTarget)
    assert deny.reason is Reason.UNKNOWN_TARGET
    assert (deny.kind, deny.ident) == (kind, ident)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/object/88"), ("GET", "/objectschema/list"), ("GET", "/icon/global")],
)
def test_an_unknown_workspace_is_an_unknown_target(method: str, path: str) -> None:
    assert denied(request(method, path, ws="ws-404")).reason is Reason.UNKNOWN_TARGET


def test_an_attribute_of_another_type_is_not_reachable_through_a_type() -> None:
    deny = denied(request("PUT", "/objecttypeattribute/11/501"))  # 501 is of type 10
    assert deny.reason is Reason.UNKNOWN_TARGET


def test_dangling_index_entries_are_unknown() -> None:
    snap = world()
    broken = Snapshot(
        workspaces=snap.workspaces,
        schemas={},
        object_types=snap.object_types,
        objects=snap.objects,
        import_sources=snap.import_sources,
    )
    for method, path in [("GET", "/object/88"), ("GET", "/importsource/is-1")]:
        assert denied(request(method, path), broken).reason is Reason.UNKNOWN_TARGET


def test_imports_info_targets_the_tokens_own_import_source() -> None:
    req = build_request(method="GET", target="/jsm/assets/v1/imports/info", headers={})
    assert resolve(req, principal=container("is-2")) == Target(
        K.IMPORT_SOURCE, "ws-2", "2", import_source_id="is-2"
    )
    assert denied(req, principal=container("gone")).reason is Reason.UNKNOWN_TARGET
    assert denied(req, principal=user()).reason is Reason.UNKNOWN_TARGET
    assert denied(req).reason is Reason.UNKNOWN_TARGET


def test_describe_names_the_ids() -> None:
    target = Target(K.OBJECT, "ws-1", "1", "10", object_id="88")
    assert target.describe() == "workspace ws-1, schema 1, type 10, object 88"
