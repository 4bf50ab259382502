"""Paths and headers through a real Envoy: ambiguous targets, unmanaged paths, unknown operations,
duplicate credentials, and the headers the upstream may (not) see."""

from __future__ import annotations

import pytest

from ..world import World
from .cases import BASE, Case, identity, ids, run_case
from .client import (
    CHALLENGES,
    DECISION_ID,
    PREFIX,
    Gateway,
    assert_allowed,
    assert_denied,
    challenges,
)

OBJ = f"{BASE}/object/88"


def ann(world: World) -> str:
    return world.basic("acc-ann")


ANN = identity("api-token", "user", account="acc-ann", role="manager")

# Sent byte for byte; each is refused by canonicalisation before anything else.
AMBIGUOUS = [
    f"{BASE}/object/../object/88",
    f"{BASE}/object/88/..",
    f"{BASE}/./object/88",
    f"{BASE}/%2e/object/88",
    f"{BASE}/%2E%2E/object/88",
    f"{BASE}/object%2F88",
    f"{BASE}/object%2f88",
    f"{BASE}/object%5C88",
    f"{BASE}/object\\88",
    f"{BASE}/object/88;jsessionid=1",
    f"{BASE}/object;/88",
    f"{BASE}/object/%3B88",
    f"{BASE}/object/%00",
    f"{BASE}/object/88%00",
    f"{BASE}/object/%01",
    f"{BASE}//object/88",
    "/jsm/assets/workspace/ws-1//v1/object/88",
    f"{BASE}/object/%zz",
    f"{BASE}/object/88%",
    f"{BASE}/object/%ff",
    f"{BASE}/object/%E2%82",
    f"{OBJ}?a=%00",
    f"{OBJ}?a=%zz",
    f"{OBJ}?a=%ff",
    "/elsewhere/../jsm/assets/workspace/ws-1/v1/object/88",
    "/unmanaged/%2e%2e/x",
]


@pytest.mark.parametrize("with_credential", [False, True], ids=["no-credential", "credential"])
@pytest.mark.parametrize("target", AMBIGUOUS)
def test_ambiguous_target_is_bad_request(
    target: str, with_credential: bool, gateway: Gateway, world: World
) -> None:
    reply = gateway.send("GET", target, auth=ann(world) if with_credential else None)
    assert_denied(reply, 400, "bad_request")
    assert challenges(reply) == []


@pytest.mark.parametrize("target", [f"{OBJ}#frag", f"{OBJ}?x=1#frag"])
def test_fragment_never_reaches_the_upstream(target: str, gateway: Gateway, world: World) -> None:
    """Envoy itself refuses a fragment in the request target (the sidecar would too)."""
    reply = gateway.send("GET", target, auth=ann(world))
    assert reply.status == 400
    assert b'"headers"' not in reply.body


CASES = [
    Case("unmanaged path", "GET", "/other", status=403, reason="unmanaged_path"),
    Case("unmanaged path with a credential", "GET", "/other/object/88", ann,
         status=403, reason="unmanaged_path"),
    Case("unmanaged path with a broken credential", "GET", "/other", lambda w: "Basic !!",
         status=403, reason="unmanaged_path"),
    Case("a prefix of a base path is unmanaged", "GET", "/jsm/assets/workspace",
         status=403, reason="unmanaged_path"),
    Case("the imports path's parent is unmanaged", "GET", "/jsm/assets/v1/imports",
         status=403, reason="unmanaged_path"),
    Case("managed path in other letter case needs a credential", "GET",
         "/JSM/Assets/Workspace/ws-1/V1/Object/88", status=401, reason="missing_credential"),
    Case("managed path in other letter case is decided like the canonical one", "GET",
         "/JSM/Assets/Workspace/ws-1/V1/Object/88", ann, identity=ANN),
    Case("the gateway base path", "GET", "/gateway/api/jsm/assets/workspace/ws-1/v1/object/88",
         ann, identity=ANN),
    Case("no credential", "GET", OBJ, status=401, reason="missing_credential"),
    Case("unknown scheme", "GET", OBJ, lambda w: "Digest username=ann",
         status=401, reason="malformed_credential"),
    Case("scheme without a value", "GET", OBJ, lambda w: "Basic",
         status=401, reason="malformed_credential"),
    Case("unknown operation after authentication", "GET", f"{OBJ}/nope", ann,
         status=404, reason="unknown_operation"),
    Case("unknown operation without a credential is a 401 first", "GET", f"{OBJ}/nope",
         status=401, reason="missing_credential"),
    Case("unknown operation with a bad credential is a 401 first", "GET", f"{OBJ}/nope",
         lambda w: w.basic("acc-ann:revoked"), status=401, reason="revoked_token"),
    Case("method the path does not have", "PATCH", OBJ, ann,
         status=404, reason="unknown_operation"),
    Case("literal segment is not an object id", "GET", f"{BASE}/object/create", ann,
         status=404, reason="unknown_operation"),
    Case("the base path alone", "GET", BASE, ann, status=404, reason="unknown_operation"),
    Case("trailing slash", "GET", f"{OBJ}/", ann, status=404, reason="unknown_operation"),
    Case("trailing slash on imports info", "GET", "/jsm/assets/v1/imports/info/",
         lambda w: w.container("is-1"), status=404, reason="unknown_operation"),
    Case("encoded question mark is part of the id", "GET", f"{OBJ}%3Fx=1", ann,
         status=404, reason="unknown_target"),
    Case("semicolon in the query is not a path parameter", "GET", f"{OBJ}?a=b;c", ann,
         identity=ANN),
    Case("absolute-form target", "GET", f"http://assets.example.test{OBJ}?x=1", ann,
         identity=ANN, upstream_path=f"{OBJ}?x=1"),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_paths(case: Case, gateway: Gateway, world: World) -> None:
    run_case(gateway, world, case)


@pytest.mark.parametrize("second", ["same", "other-kind"])
def test_two_authorization_headers_are_bad_request(
    second: str, gateway: Gateway, world: World
) -> None:
    other = world.basic("acc-ann") if second == "same" else world.container("is-1")
    reply = gateway.send(
        "GET", OBJ, headers=[("Authorization", world.basic("acc-ann")), ("Authorization", other)]
    )
    assert_denied(reply, 400, "bad_request")
    assert challenges(reply) == []


def test_spoofed_identity_headers_never_reach_the_upstream(
    gateway: Gateway, world: World
) -> None:
    spoofed = [
        ("X-Assets-Account-Id", "acc-admin"),
        ("x-assets-role", "admin"),
        ("x-assets-impersonated", "true"),
        ("x-assets-readable-schemas", "*"),
        ("x-assets-decision-id", "0" * 32),
        ("x-assets-made-up", "1"),
        ("x-assets-made-up", "2"),
        ("x-custom", "kept"),
    ]
    reply = gateway.send("GET", OBJ, auth=world.basic("acc-dan"), headers=spoofed)
    seen = assert_allowed(reply, identity("api-token", "user", account="acc-dan", role="user"))
    assert seen.values("x-assets-decision-id") != ["0" * 32]
    assert seen.values("x-custom") == ["kept"]


def test_spoofed_headers_on_a_search_are_replaced(gateway: Gateway, world: World) -> None:
    reply = gateway.send(
        "POST", f"{BASE}/object/aql", auth=world.basic("acc-ann"), body=b"{}",
        headers=[("x-assets-readable-schemas", "*"), ("x-assets-readable-object-types", "20")],
    )
    assert_allowed(reply, identity("api-token", "user", account="acc-ann", readable_schemas="1"))


def test_spoofed_headers_on_a_denied_request_go_nowhere(gateway: Gateway) -> None:
    reply = gateway.send("GET", OBJ, headers=[("x-assets-account-id", "acc-admin")])
    assert_denied(reply, 401, "missing_credential")
    assert challenges(reply) == CHALLENGES


def test_other_request_headers_and_body_pass_untouched(gateway: Gateway, world: World) -> None:
    reply = gateway.send(
        "PUT", OBJ, auth=world.basic("acc-ann"), body=b'{"attributes":[]}',
        headers=[("content-type", "application/json"), ("x-trace", "a"), ("x-trace", "b")],
    )
    seen = assert_allowed(reply, ANN)
    assert seen.values("x-trace") == ["a", "b"]
    assert seen.values("content-type") == ["application/json"]


def test_every_decision_has_its_own_id(gateway: Gateway, world: World) -> None:
    denied = [gateway.send("GET", "/other").header(PREFIX + "decision-id") for _ in range(3)]
    allowed = [
        gateway.send("GET", OBJ, auth=world.basic("acc-ann")).upstream().values(
            PREFIX + "decision-id"
        )[0]
        for _ in range(3)
    ]
    ids_seen = [*denied, *allowed]
    assert all(DECISION_ID.match(i or "") for i in ids_seen)
    assert len(set(ids_seen)) == len(ids_seen)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
def test_deny_shape_does_not_depend_on_the_method(
    method: str, gateway: Gateway
) -> None:
    assert_denied(gateway.send(method, OBJ, body=b"{}"), 401, "missing_credential")


def test_no_credential_reaches_the_upstream_in_a_cookie_or_query(
    gateway: Gateway, world: World
) -> None:
    """Only `authorization` is the credential: other headers are the upstream's business."""
    reply = gateway.send("GET", f"{OBJ}?x=1", auth=world.basic("acc-ann"),
                         headers=[("cookie", "session=abc")])
    seen = assert_allowed(reply, ANN)
    assert seen.path == f"{OBJ}?x=1"
    assert seen.values("cookie") == ["session=abc"]

