"""A local JWKS and OIDC-discovery server (background thread) that tests can rotate or break."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from sidecar.testing.lifecycle import StopOnExit

JWKS_PATH = "/.well-known/jwks.json"
_POLL_SECONDS = 0.05  # how quickly stop() returns
DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class _State:
    """What the server answers; changed by the test thread, read by request threads."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self.lock = threading.Lock()
        self.jwks: dict[str, Any] = dict(jwks)
        self.issuer = ""
        self.jwks_uri = ""
        self.down = False
        self.delay = 0.0
        self.jwks_requests = 0


class _JwksHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _JwksHandler)
        self.state = state


class _JwksHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state = cast(_JwksHTTPServer, self.server).state
        path = self.path.partition("?")[0]
        with state.lock:
            if path == JWKS_PATH:
                state.jwks_requests += 1
            down, delay = state.down, state.delay
            jwks = json.dumps(state.jwks)
            discovery = json.dumps({"issuer": state.issuer, "jwks_uri": state.jwks_uri})
        if delay:
            time.sleep(delay)
        if down:
            self._send(503, b'{"error":"unavailable"}')
        elif path == JWKS_PATH:
            self._send(200, jwks.encode())
        elif path in DISCOVERY_PATHS:
            self._send(200, discovery.encode())
        else:
            self._send(404, b'{"error":"not found"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""


class JwksServer(StopOnExit):
    """Serves `jwks` at /.well-known/jwks.json and a discovery document naming it.

    Construction starts the server on 127.0.0.1 (`port` 0 picks a free one); the issuer
    defaults to the server's own base URL, as `discovery: true` expects.
    """

    def __init__(
        self,
        jwks: Mapping[str, Any] | None = None,
        *,
        port: int = 0,
        issuer: str | None = None,
    ) -> None:
        self._state = _State(jwks or {"keys": []})
        self._server = _JwksHTTPServer(("127.0.0.1", port), self._state)
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer if issuer is not None else self.base_url
        self.jwks_uri = self.base_url + JWKS_PATH
        self.discovery_url = self.base_url + DISCOVERY_PATHS[0]
        with self._state.lock:
            self._state.issuer = self.issuer
            self._state.jwks_uri = self.jwks_uri
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_POLL_SECONDS,),
            name="jwks-server",
            daemon=True,
        )
        self._thread.start()

    def set_keys(self, jwks: Mapping[str, Any]) -> None:
        """Serve a new key set from the next request on (key rotation)."""
        with self._state.lock:
            self._state.jwks = dict(jwks)

    def set_down(self, down: bool) -> None:
        """While down, every request is answered 503."""
        with self._state.lock:
            self._state.down = down

    def set_delay(self, seconds: float) -> None:
        """Answer every request only after `seconds` (a slow issuer)."""
        with self._state.lock:
            self._state.delay = seconds

    @property
    def jwks_requests(self) -> int:
        """How many times the JWKS document was requested (answered or not)."""
        with self._state.lock:
            return self._state.jwks_requests

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

