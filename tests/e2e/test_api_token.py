"""Basic API tokens through a real Envoy: layer 1, scoped tokens, roles and body-read targets."""

from __future__ import annotations

import base64

import pytest

from ..world import World
from .cases import BASE, BASE2, Auth, Case, identity, ids, run_case
from .client import Gateway, assert_allowed, assert_denied

WRITE = "write:cmdb-object:jira"


def basic(name: str, email: str | None = None) -> Auth:
    return lambda w: w.basic(name, email)


def raw_basic(text: str) -> Auth:
    return lambda w: "Basic " + base64.b64encode(text.encode()).decode()


def no_colon(world: World) -> str:
    raw = f"ann@example.test{world.api_tokens['acc-ann']}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def api(account: str, role: str | None = None, **extra: str) -> dict[str, str]:
    if role is not None:
        extra["role"] = role
    return identity("api-token", "user", account=account, **extra)


JSON = [("content-type", "application/json")]
CREATE = f"{BASE}/object/create"
TYPE_CREATE = f"{BASE}/objecttype/create"

LAYER1 = [
    Case("unscoped token", "GET", f"{BASE}/object/88", basic("acc-ann"),
         identity=api("acc-ann", "manager")),
    Case("email compared case-insensitively", "GET", f"{BASE}/object/88",
         basic("acc-ann", "aNN@EXAMPLE.test"), identity=api("acc-ann", "manager")),
    Case("scoped token with the scope", "GET", f"{BASE}/object/88", basic("acc-ann:read"),
         identity=api("acc-ann", "manager")),
    Case("scoped token without the scope", "PUT", f"{BASE}/object/88", basic("acc-ann:read"),
         status=403, reason="insufficient_scope", scope=WRITE),
    Case("wrong email", "GET", f"{BASE}/object/88", basic("acc-ann", "bob@example.test"),
         status=401, reason="unknown_token"),
    Case("unknown token", "GET", f"{BASE}/object/88",
         raw_basic("ann@example.test:not-a-token"), status=401, reason="unknown_token"),
    Case("revoked", "GET", f"{BASE}/object/88", basic("acc-ann:revoked"),
         status=401, reason="revoked_token"),
    Case("expired", "GET", f"{BASE}/object/88", basic("acc-ann:expired"),
         status=401, reason="revoked_token"),
    Case("bad base64", "GET", f"{BASE}/object/88", lambda w: "Basic !!not*base64!!",
         status=401, reason="malformed_credential"),
    Case("no colon", "GET", f"{BASE}/object/88", no_colon,
         status=401, reason="malformed_credential"),
    Case("scheme name is case-insensitive", "GET", f"{BASE}/object/89",
         lambda w: "bAsIc " + w.basic("acc-eve").split(" ")[1],
         identity=api("acc-eve", "user")),
]

ROLES = [
    Case("override: schema developer is only user on type 10", "PUT", f"{BASE}/object/88",
         basic("acc-dan"), status=403, reason="role_missing"),
    Case("override: still developer on type 11", "PUT", f"{BASE}/object/89", basic("acc-dan"),
         identity=api("acc-dan", "developer")),
    Case("override: reads type 10 as user", "GET", f"{BASE}/object/88", basic("acc-dan"),
         identity=api("acc-dan", "user")),
    Case("type developer edits type 10", "PUT", f"{BASE}/object/88", basic("acc-bob"),
         identity=api("acc-bob", "developer")),
    Case("delete needs manager: developer refused", "DELETE", f"{BASE}/object/88",
         basic("acc-bob"), status=403, reason="role_missing"),
    Case("delete needs manager: manager allowed", "DELETE", f"{BASE}/object/88",
         basic("acc-ann"), identity=api("acc-ann", "manager")),
    Case("admin deletes an object in another workspace", "DELETE", f"{BASE2}/object/99",
         basic("acc-admin"), identity=api("acc-admin", "admin", workspace="ws-2")),
    Case("admin deletes a schema", "DELETE", f"{BASE}/objectschema/2", basic("acc-admin"),
         identity=api("acc-admin", "admin")),
    Case("admin creates a schema", "POST", f"{BASE}/objectschema/create", basic("acc-admin"),
         identity=api("acc-admin", "admin"), body=b'{"name":"New"}', headers=JSON),
    Case("schema manager cannot delete the schema", "DELETE", f"{BASE}/objectschema/1",
         basic("acc-ann"), status=403, reason="role_missing"),
    Case("no role at all", "GET", f"{BASE}/object/88", basic("acc-zed"),
         status=403, reason="role_missing"),
    Case("type role reads the schema", "GET", f"{BASE}/objectschema/2", basic("acc-eve"),
         identity=api("acc-eve", "viewer")),
    Case("type role reads its objects", "GET", f"{BASE}/object/90", basic("acc-eve"),
         identity=api("acc-eve", "user")),
    Case("type role does not reach the schema's other type", "GET", f"{BASE}/objecttype/21",
         basic("acc-eve"), status=403, reason="role_missing"),
    Case("object in another workspace than the path", "GET", f"{BASE}/object/99",
         basic("acc-ann"), status=404, reason="unknown_target"),
    Case("unknown workspace", "GET", "/jsm/assets/workspace/ws-9/v1/object/88",
         basic("acc-admin"), status=404, reason="unknown_target"),
]

BODIES = [
    Case("object.create: type developer", "POST", CREATE, basic("acc-bob"),
         identity=api("acc-bob", "developer"), body=b'{"objectTypeId":"10"}', headers=JSON),
    Case("object.create: integer id, overridden to user", "POST", CREATE, basic("acc-dan"),
         status=403, reason="role_missing", body=b'{"objectTypeId":10}', headers=JSON),
    Case("object.create: developer on type 11", "POST", CREATE, basic("acc-dan"),
         identity=api("acc-dan", "developer"),
         body=b'{"objectTypeId":"11","attributes":[{"objectTypeAttributeId":"501"}]}',
         headers=JSON),
    Case("object.create: missing body", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request"),
    Case("object.create: empty body", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b"", headers=JSON),
    Case("object.create: not JSON", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b"objectTypeId=10", headers=JSON),
    Case("object.create: not an object", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b'["10"]', headers=JSON),
    Case("object.create: field missing", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b'{"typeId":"10"}', headers=JSON),
    Case("object.create: field is a boolean", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b'{"objectTypeId":true}', headers=JSON),
    Case("object.create: field is a float", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b'{"objectTypeId":10.0}', headers=JSON),
    Case("object.create: field given twice", "POST", CREATE, basic("acc-bob"),
         status=400, reason="bad_request", body=b'{"objectTypeId":"11","objectTypeId":"10"}',
         headers=JSON),
    Case("object.create: type in another workspace", "POST", CREATE, basic("acc-admin"),
         status=404, reason="unknown_target", body=b'{"objectTypeId":"30"}', headers=JSON),
    Case("object.create: unknown type", "POST", CREATE, basic("acc-admin"),
         status=404, reason="unknown_target", body=b'{"objectTypeId":"999"}', headers=JSON),
    Case("type.create: schema manager", "POST", TYPE_CREATE, basic("acc-ann"),
         identity=api("acc-ann", "manager"), body=b'{"objectSchemaId":1,"name":"Phone"}',
         headers=JSON),
    Case("type.create: developer refused", "POST", TYPE_CREATE, basic("acc-bob"),
         status=403, reason="role_missing", body=b'{"objectSchemaId":"1"}', headers=JSON),
    Case("type.create: schema in another workspace", "POST", TYPE_CREATE, basic("acc-ann"),
         status=404, reason="unknown_target", body=b'{"objectSchemaId":"3"}', headers=JSON),
    Case("type.create: null schema id", "POST", TYPE_CREATE, basic("acc-ann"),
         status=400, reason="bad_request", body=b'{"objectSchemaId":null}', headers=JSON),
    Case("type.create: missing body", "POST", TYPE_CREATE, basic("acc-ann"),
         status=400, reason="bad_request"),
]

SEARCHES = [
    Case("search: schema role and type-only role", "POST", f"{BASE}/object/aql", basic("acc-eve"),
         identity=api("acc-eve", readable_schemas="1,2", readable_object_types="20"),
         body=b'{"qlQuery":"objectType = Laptop"}', headers=JSON),
    Case("search by GET", "GET", f"{BASE}/aql/objects?qlQuery=Name%20%3D%20x", basic("acc-eve"),
         identity=api("acc-eve", readable_schemas="1,2", readable_object_types="20")),
    Case("schema list names schemas only", "GET", f"{BASE}/objectschema/list", basic("acc-eve"),
         identity=api("acc-eve", readable_schemas="1,2")),
    Case("search: schema roles only, no types header", "POST", f"{BASE}/object/aql",
         basic("acc-dan"), identity=api("acc-dan", readable_schemas="1"),
         body=b"{}", headers=JSON),
    Case("search: admin reads everything", "POST", f"{BASE}/object/aql/totalcount",
         basic("acc-admin"), identity=api("acc-admin", "admin", readable_schemas="*"),
         body=b"{}", headers=JSON),
    Case("search in the other workspace", "POST", f"{BASE2}/object/navlist/aql",
         basic("acc-ann"), identity=api("acc-ann", readable_schemas="3", workspace="ws-2"),
         body=b"{}", headers=JSON),
    Case("search without any role in the workspace", "POST", f"{BASE}/object/aql",
         basic("acc-zed"), status=403, reason="role_missing", body=b"{}", headers=JSON),
    Case("search in a workspace without a role there", "POST", f"{BASE2}/object/aql",
         basic("acc-eve"), status=403, reason="role_missing", body=b"{}", headers=JSON),
]

CASES = LAYER1 + ROLES + BODIES + SEARCHES


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_api_token(case: Case, gateway: Gateway, world: World) -> None:
    run_case(gateway, world, case)


def _padded(head: bytes, size: int) -> bytes:
    """A valid JSON body of exactly `size` bytes (trailing spaces are JSON whitespace)."""
    return head + b" " * (size - len(head))


# Envoy buffers up to 65536 bytes (envoy-demo.yaml.tmpl) and sends a longer body partial.
@pytest.mark.parametrize(
    ("size", "spoofed_header", "status"),
    [
        (65536, None, 200),
        (65537, None, 400),
        (70000, None, 400),
        # The client cannot claim the body is whole: Envoy sets the header itself.
        (70000, "false", 400),
    ],
)
def test_body_read_only_when_whole(
    size: int, spoofed_header: str | None, status: int, gateway: Gateway, world: World
) -> None:
    headers = list(JSON)
    if spoofed_header is not None:
        headers.append(("x-envoy-auth-partial-body", spoofed_header))
    reply = gateway.send("POST", CREATE, auth=world.basic("acc-dan"), headers=headers,
                         body=_padded(b'{"objectTypeId":"11"}', size))
    if status == 200:
        assert_allowed(reply, api("acc-dan", "developer"))
    else:
        assert_denied(reply, status, "bad_request")


@pytest.mark.parametrize(
    ("type_id", "status"), [(b"11", 200), (b"10", 403)], ids=["type-11", "type-10"]
)
def test_chunked_body_is_read_whole(
    type_id: bytes, status: int, gateway: Gateway, world: World
) -> None:
    """The id is split across chunks: only the reassembled body names the type."""
    reply = gateway.send("POST", CREATE, auth=world.basic("acc-dan"), headers=JSON,
                         chunks=[b'{"objectTy', b'peId":"', type_id[:1], type_id[1:], b'"}'])
    if status == 200:
        assert_allowed(reply, api("acc-dan", "developer"))
    else:
        assert_denied(reply, 403, "role_missing")
