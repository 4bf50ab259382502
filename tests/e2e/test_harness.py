"""Self-test of the e2e harness: a throwaway Check server, the echo upstream and a real Envoy."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sidecar.testing.envoy import EnvoyProcess

StartEnvoy = Callable[[int, int], EnvoyProcess]  # the `start_envoy` fixture (conftest.py)

AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"
DENY_BODY = json.dumps({"errorMessages": ["denied by the throwaway server"], "errors": {}})


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value))


class ThrowawayAuthz(external_auth_pb2_grpc.AuthorizationServicer):
    """Allows everything with `x-test: 1`, except paths under /deny: 401 with a JSON body."""

    def __init__(self) -> None:
        self.seen: list[external_auth_pb2.CheckRequest] = []

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        self.seen.append(request)
        if request.attributes.request.http.path.startswith("/deny"):
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
                denied_response=external_auth_pb2.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                    headers=[_header("content-type", "application/json")],
                    body=DENY_BODY,
                ),
            )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(headers=[_header("x-test", "1")]),
        )

    def paths(self) -> list[str]:
        return [r.attributes.request.http.path for r in self.seen]


@dataclass
class Authz:
    port: int
    servicer: ThrowawayAuthz
    server: grpc.aio.Server


@asynccontextmanager
async def throwaway_authz() -> AsyncIterator[Authz]:
    """The Check server plus grpc.health.v1 (Envoy health-checks the authz cluster)."""
    server = grpc.aio.server()
    servicer = ThrowawayAuthz()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set(AUTHZ_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Authz(port, servicer, server)
    finally:
        await server.stop(None)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Reply:
    """One HTTP/1.1 request, sent as is (no client-side path clean-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def echoed_headers(reply: Reply) -> list[tuple[str, str]]:
    raw = reply.json()["headers"]
    assert isinstance(raw, list)
    return [(str(name).lower(), str(value)) for name, value in raw]


def check_headers(authz: Authz, index: int = -1) -> dict[str, str]:
    return dict(authz.servicer.seen[index].attributes.request.http.headers)


@dataclass
class Case:
    name: str
    path: str
    expect_status: int
    check: Callable[[Reply, Authz], None]
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _allowed(reply: Reply, authz: Authz) -> None:
    assert reply.json()["method"] == "GET"
    assert reply.json()["path"] == "/hello/world?x=1&y=%2F"
    assert ("x-test", "1") in echoed_headers(reply)
    assert authz.servicer.paths() == ["/hello/world?x=1&y=%2F"]


def _overwrites_client_header(reply: Reply, authz: Authz) -> None:
    assert [v for k, v in echoed_headers(reply) if k == "x-test"] == ["1"]


def _denied(reply: Reply, authz: Authz) -> None:
    assert reply.headers["content-type"] == "application/json"
    assert reply.body.decode() == DENY_BODY
    assert authz.servicer.paths() == ["/deny/me"]


def _direct(reply: Reply, authz: Authz) -> None:
    assert reply.json() == {"direct": True}
    assert authz.servicer.paths() == ["/bench/direct"], "the direct route must be checked"


def _direct_by_header(reply: Reply, authz: Authz) -> None:
    assert reply.json() == {"direct": True}
    assert authz.servicer.paths() == ["/jsm/assets/workspace/ws-1/v1/object/88"]


def _direct_by_header_denied(reply: Reply, authz: Authz) -> None:
    assert reply.body.decode() == DENY_BODY


def _path_as_sent(reply: Reply, authz: Authz) -> None:
    assert authz.servicer.paths() == ["/a/../b//c%2Fd;p"]
    assert reply.json()["path"] == "/a/../b//c%2Fd;p"


def _small_body(reply: Reply, authz: Authz) -> None:
    http_attrs = authz.servicer.seen[-1].attributes.request.http
    assert http_attrs.raw_body == b'{"objectTypeId":"10","\xff":1}'
    assert http_attrs.body == ""
    assert check_headers(authz)["x-envoy-auth-partial-body"] == "false"


def _big_body(reply: Reply, authz: Authz) -> None:
    http_attrs = authz.servicer.seen[-1].attributes.request.http
    assert len(http_attrs.raw_body) == 65536
    assert http_attrs.size == 70000
    assert check_headers(authz)["x-envoy-auth-partial-body"] == "true"


def _body_not_buffered(reply: Reply, authz: Authz) -> None:
    http_attrs = authz.servicer.seen[-1].attributes.request.http
    assert http_attrs.raw_body == b"" and http_attrs.body == ""
    assert "x-envoy-auth-partial-body" not in check_headers(authz)


def _underscore_rejected(reply: Reply, authz: Authz) -> None:
    assert authz.servicer.seen == [], "Envoy refuses it before any check"


BODY_BASE = "/jsm/assets/workspace/ws-1/v1"
CASES = [
    Case("allowed request reaches the upstream with the added header",
         "/hello/world?x=1&y=%2F", 200, _allowed),
    Case("the server's header overwrites a client's", "/spoof", 200, _overwrites_client_header,
         headers={"x-test": "0"}),
    Case("denied with the server's status, content type and JSON body", "/deny/me", 401, _denied),
    Case("/bench/direct is answered by Envoy after the check", "/bench/direct", 200, _direct),
    Case("x-bench-direct answers any checked path directly",
         "/jsm/assets/workspace/ws-1/v1/object/88", 200, _direct_by_header,
         headers={"x-bench-direct": "1"}),
    Case("x-bench-direct never bypasses a denial", "/deny/direct", 401,
         _direct_by_header_denied, headers={"x-bench-direct": "1"}),
    Case("the path reaches the check and the upstream as sent (no normalisation)",
         "/a/../b//c%2Fd;p", 200, _path_as_sent),
    Case("small body: exact bytes in raw_body", f"{BODY_BASE}/object/create", 200, _small_body,
         method="POST", body=b'{"objectTypeId":"10","\xff":1}',
         headers={"content-type": "application/json"}),
    Case("body over the buffer: sent partial (not 413) for the server to judge",
         f"{BODY_BASE}/object/create", 200, _big_body, method="POST", body=b"x" * 70000),
    Case("the body is buffered under the gateway base path too",
         f"/gateway/api{BODY_BASE}/config/statustype/7", 200, _small_body,
         method="PUT", body=b'{"objectTypeId":"10","\xff":1}'),
    Case("routes whose operations do not read the body stream it unchecked",
         f"{BODY_BASE}/object/89", 200, _body_not_buffered, method="PUT", body=b"{}" * 1000),
    Case("a body route needs POST or PUT to buffer", f"{BODY_BASE}/object/create", 200,
         _body_not_buffered, method="PATCH", body=b"{}"),
    Case("header names with underscores are refused by Envoy", "/hello", 400,
         _underscore_rejected, headers={"x_assets_account_id": "acc-admin"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_through_envoy(case: Case, echo_upstream: int, start_envoy: StartEnvoy) -> None:
    async with throwaway_authz() as authz:
        envoy = await asyncio.to_thread(start_envoy, authz.port, echo_upstream)
        reply = await asyncio.to_thread(
            request, envoy.listener_port(), case.path,
            method=case.method, headers=case.headers, body=case.body,
        )
        assert reply.status == case.expect_status, reply.body
        case.check(reply, authz)


async def test_fails_closed_with_503_when_the_server_is_down(
    echo_upstream: int, start_envoy: StartEnvoy
) -> None:
    async with throwaway_authz() as authz:
        envoy = await asyncio.to_thread(start_envoy, authz.port, echo_upstream)
        port = envoy.listener_port()
        assert (await asyncio.to_thread(request, port, "/up")).status == 200
        await authz.server.stop(None)
        reply = await asyncio.to_thread(request, port, "/down")
        assert reply.status == 503
        assert b"x-test" not in reply.body, "the upstream must not have been reached"
        stats = await asyncio.to_thread(envoy.stats, r"^http\.demo\.ext_authz\.(ok|error)$")
        assert stats == {"http.demo.ext_authz.ok": 1, "http.demo.ext_authz.error": 1}
