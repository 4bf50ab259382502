"""The HTTP operations endpoint on its own: disconnects, errors, idle clients, methods."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from sidecar.logs import JsonFormatter
from sidecar.ops import OpsServer


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("probe_total", "a metric to scrape", ["n"], registry=registry)
    for n in range(200):
        counter.labels(n=str(n)).inc()
    return registry


@pytest.fixture
def ops() -> Iterator[OpsServer]:
    server = OpsServer("127.0.0.1", 0, _registry(), lambda: [])
    server.start()
    yield server
    server.stop()


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def json_log(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The service's JSON log (debug included) as the only handler, for one test.

    The returned function gives the ops endpoint's entries logged so far, after checking that
    nothing was written to stderr outside the log.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)

    def entries() -> list[dict[str, Any]]:
        assert capfd.readouterr().err == ""
        logged = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [e for e in logged if e["logger"] == "sidecar.ops"]  # not other tests' threads

    try:
        yield entries
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_a_client_that_disconnects_early_logs_no_raw_traceback(
    ops: OpsServer, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    # Before: socketserver printed "Exception occurred during processing of request" and a
    # ConnectionResetError/BrokenPipeError traceback to stderr, outside the JSON log.
    for _ in range(5):  # a scrape that times out: the request, then a reset
        client = socket.create_connection(("127.0.0.1", ops.port))
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    time.sleep(0.3)
    assert _request(ops.port, "GET", "/healthz")[0] == 200  # still serving
    entries = json_log()
    assert any(e["msg"] == "ops client gone" for e in entries)  # the resets were seen
    assert [e for e in entries if e["level"] != "debug"] == []


def test_a_failing_handler_is_logged_as_json_with_its_traceback(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    def readiness() -> list[str]:
        raise RuntimeError("readiness broke")

    server = OpsServer("127.0.0.1", 0, _registry(), readiness)
    server.start()
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            _request(server.port, "GET", "/readyz")  # the connection ends without an answer
        time.sleep(0.1)
    finally:
        server.stop()
    (entry,) = json_log()
    assert (entry["level"], entry["msg"]) == ("error", "ops endpoint request failed")
    assert "RuntimeError: readiness broke" in entry["traceback"]


def test_an_idle_connection_is_closed_and_its_thread_ends() -> None:
    # Before: an idle connection was never timed out, and each one held a thread (400 idle
    # sockets -> 411 threads).
    ops = OpsServer("127.0.0.1", 0, _registry(), lambda: [], idle_timeout=0.5)
    ops.start()
    before = set(threading.enumerate())
    clients = [socket.create_connection(("127.0.0.1", ops.port)) for _ in range(20)]
    try:
        time.sleep(0.1)
        handlers = [t for t in set(threading.enumerate()) - before
                    if "process_request" in t.name]
        assert len(handlers) == 20
        assert all(t.daemon for t in handlers)
        for client in clients:
            client.settimeout(3)
            assert client.recv(1) == b""  # closed by the server after idle_timeout
    finally:
        for client in clients:
            client.close()
        ops.stop()
    for handler in handlers:
        handler.join(3)
        assert not handler.is_alive()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_methods_other_than_get_answer_405_allow_get(ops: OpsServer, method: str) -> None:
    # Before: 501 Unsupported method (docs/operations.md promised 404).
    status, headers, _ = _request(ops.port, method, "/metrics")
    assert (status, headers.get("allow")) == (405, "GET, HEAD")


def test_head_answers_like_get_without_a_body(ops: OpsServer) -> None:
    status, headers, body = _request(ops.port, "HEAD", "/healthz")
    get_status, get_headers, get_body = _request(ops.port, "GET", "/healthz")
    assert (status, body) == (get_status, b"") == (200, b"")
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    assert _request(ops.port, "HEAD", "/nope")[0] == 404



def test_an_ipv6_address_is_served() -> None:
    # Before: `listen.http: "[::1]:9192"` (accepted by the configuration) failed at start with
    # "Address family for hostname not supported": the server was IPv4 only.
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = OpsServer("::1", 0, _registry(), lambda: [])
    server.start()
    try:
        conn = http.client.HTTPConnection("::1", server.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()
