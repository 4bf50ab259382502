"""The local JWKS server serves, rotates, breaks and slows down on request."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from sidecar.testing.jwks_server import JwksServer

KEYS_A = {"keys": [{"kty": "oct", "kid": "a"}]}
KEYS_B = {"keys": [{"kty": "oct", "kid": "b"}]}


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer(KEYS_A) as running:
        yield running


def test_serves_the_keys_and_discovery(server: JwksServer) -> None:
    assert server.jwks_uri == f"http://127.0.0.1:{server.port}/.well-known/jwks.json"
    assert get(server.jwks_uri) == (200, KEYS_A)
    assert get(server.discovery_url) == (
        200, {"issuer": server.base_url, "jwks_uri": server.jwks_uri},
    )
    assert get(server.base_url + "/.well-known/oauth-authorization-server")[0] == 200
    assert get(server.base_url + "/nope")[0] == 404
    assert server.jwks_requests == 1


def test_rotation_and_outage(server: JwksServer) -> None:
    server.set_keys(KEYS_B)
    assert get(server.jwks_uri) == (200, KEYS_B)
    server.set_down(True)
    assert get(server.jwks_uri)[0] == 503
    assert get(server.discovery_url)[0] == 503
    server.set_down(False)
    assert get(server.jwks_uri) == (200, KEYS_B)
    assert server.jwks_requests == 3


def test_delay(server: JwksServer) -> None:
    server.set_delay(0.05)
    started = time.monotonic()
    assert get(server.jwks_uri)[0] == 200
    assert time.monotonic() - started >= 0.05


def test_explicit_issuer_and_stop() -> None:
    server = JwksServer(issuer="https://auth.example.test")
    assert get(server.discovery_url)[1] == {
        "issuer": "https://auth.example.test", "jwks_uri": server.jwks_uri,
    }
    assert get(server.jwks_uri) == (200, {"keys": []})
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.jwks_uri, timeout=1)
