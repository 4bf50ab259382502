"""The echo upstream answers any method with its method, path and headers."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from sidecar.testing.echo import start_echo, stop_echo
from sidecar.testing.ports import free_port


@pytest.fixture
def port() -> Iterator[int]:
    server, bound = start_echo()
    yield bound
    stop_echo(server)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_echoes_method_path_and_headers(port: int, method: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest(method, "/a/../b%2F?x=1&x=2", skip_accept_encoding=True)
    conn.putheader("X-Dup", "one")
    conn.putheader("X-Dup", "two")
    conn.endheaders(b'{"k":1}' if method != "GET" else None)
    response = conn.getresponse()
    payload = json.loads(response.read())
    assert response.status == 200
    assert response.getheader("content-type") == "application/json"
    assert payload["method"] == method
    assert payload["path"] == "/a/../b%2F?x=1&x=2"
    assert [v for k, v in payload["headers"] if k.lower() == "x-dup"] == ["one", "two"]
    conn.close()


def test_keep_alive_with_bodies(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(3):
        conn.request("POST", f"/n/{i}", body=b"x" * 100_000)
        assert json.loads(conn.getresponse().read())["path"] == f"/n/{i}"
    conn.request("POST", "/chunked", body=iter([b"abc", b"defg"]), encode_chunked=True)
    assert json.loads(conn.getresponse().read())["path"] == "/chunked"
    conn.request("GET", "/after")
    assert json.loads(conn.getresponse().read())["path"] == "/after"
    conn.close()


def test_head_has_no_body(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("HEAD", "/h")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert int(response.getheader("content-length") or 0) > 0
    conn.close()


def test_fixed_port_and_stop() -> None:
    wanted = free_port()
    server, bound = start_echo(wanted)
    assert bound == wanted
    stop_echo(server)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", bound), timeout=1):
        pass


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
