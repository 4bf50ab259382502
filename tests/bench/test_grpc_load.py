"""A tiny direct gRPC load run against the null server in its own process (no timing asserts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from sidecar.bench.grpc_load import Call, run_grpc_load
from sidecar.bench.null_server import HEADER
from sidecar.bench.procs import ServerProcess, ServerStartError, null_command
from sidecar.explain import check_request
from sidecar.testing.ports import free_port

PAYLOAD = check_request(
    "GET", "/jsm/assets/workspace/ws-1/v1/object/88", {"authorization": "Basic eDp5"}, None
).SerializeToString()


@pytest.fixture(scope="module")
def null_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("null") / "null.log"
    with ServerProcess("null server", null_command(address), grpc_address=address,
                       log_path=log) as server:
        server.wait_serving(timeout=20)
        yield server
    assert server.running() is False


def test_null_server_answers_ok_with_one_header(null_server: ServerProcess) -> None:
    with grpc.insecure_channel(null_server.grpc_address) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        reply = stub.Check(external_auth_pb2.CheckRequest.FromString(PAYLOAD), timeout=5)
    assert reply.status.code == 0
    headers = [(h.header.key, h.header.value) for h in reply.ok_response.headers]
    assert headers == [HEADER]


async def test_short_load_run_returns_sane_numbers(null_server: ServerProcess) -> None:
    marks: list[str] = []
    cpu_before = null_server.cpu_seconds()
    result = await run_grpc_load(
        null_server.grpc_address, [Call(PAYLOAD, "allow")], concurrency=4, duration=0.5,
        warmup=0.1, on_start=lambda: marks.append("start"), on_end=lambda: marks.append("end"),
    )
    assert marks == ["start", "end"]
    assert result.requests > 0
    assert result.errors == 0
    assert result.outcomes == {"allow": result.requests}
    assert result.p50_ms is not None and result.p99_ms is not None
    assert result.p999_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms
    assert 0.4 < result.seconds < 5
    assert result.rps == pytest.approx(result.requests / result.seconds)
    assert null_server.cpu_seconds() > cpu_before


async def test_answers_other_than_the_expected_one_are_errors(
    null_server: ServerProcess,
) -> None:
    calls = [Call(PAYLOAD, "allow"), Call(PAYLOAD, "role_missing")]
    result = await run_grpc_load(null_server.grpc_address, calls, concurrency=2,
                                 duration=0.3, warmup=0.0)
    assert 0 < result.errors < result.requests
    assert result.outcomes == {"allow": result.requests}


def test_peak_rss_is_read_at_stop(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = ServerProcess("null server", null_command(address), grpc_address=address,
                           log_path=tmp_path / "null.log")
    try:
        server.wait_serving(timeout=20)
    finally:
        code = server.stop()
    assert code == 0
    assert server.peak_rss_kib is not None and server.peak_rss_kib > 1024


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    server = ServerProcess("broken", null_command("not-an-address"),
                           grpc_address="127.0.0.1:1", log_path=tmp_path / "broken.log")
    with server, pytest.raises(ServerStartError, match="broken exited"):
        server.wait_serving(timeout=20)
