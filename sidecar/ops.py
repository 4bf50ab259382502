"""The HTTP operations endpoint: /metrics, /healthz, /readyz (stdlib server in a thread)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Readiness = Callable[[], list[str]]  # returns the parts that are not ready (empty = ready)

IDLE_TIMEOUT_SECONDS = 10.0  # a connection with nothing sent or read for this long is closed
ALLOW = "GET, HEAD"

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection; errors go to the JSON log, never raw to stderr."""

    daemon_threads = True
    request_queue_size = 64  # the stdlib's 5 makes a burst of probes wait for SYN retries

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):  # the client went away or went quiet
            log.debug("ops client gone", extra={"fields": {"error": type(exc).__name__}})
            return
        log.error("ops endpoint request failed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6  # `listen.http: "[::]:9192"` (the stdlib binds IPv4 only)


class OpsServer:
    """Serves metrics and health on its own port, off the gRPC event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Readiness,
        *,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "assets-authz"
            sys_version = ""
            timeout = idle_timeout  # per read and write: an idle client cannot hold a thread
            head = False

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._json(200, {"status": "alive"})
                elif path == "/readyz":
                    problems = outer.readiness()
                    if problems:
                        self._json(503, {"status": "not ready", "problems": problems})
                    else:
                        self._json(200, {"status": "ready"})
                else:
                    self._json(404, {"error": "not found"})

            def do_HEAD(self) -> None:
                self.head = True
                self.do_GET()

            def __getattr__(self, name: str) -> Callable[[], None]:
                # The stdlib answers 501 to a method without a do_<METHOD>; every one but GET
                # and HEAD is a method this endpoint does not allow.
                if name.startswith("do_"):
                    return self._not_allowed
                raise AttributeError(name)

            def _not_allowed(self) -> None:
                self._json(405, {"error": "method not allowed"}, {"Allow": ALLOW})

            def _json(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
                self._send(code, json.dumps(body).encode() + b"\n", "application/json", headers)

            def _send(
                self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not self.head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes and probes are not worth a log line each

        self.registry = registry
        self.readiness = readiness
        self._httpd = (_Server6 if ":" in host else _Server)((host, port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="assets-authz-ops", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever: only once started
        self._httpd.server_close()
