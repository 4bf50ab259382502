"""The HTTP operations endpoint: /metrics, /healthz, /readyz (stdlib server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Readiness = Callable[[], list[str]]  # returns the parts that are not ready (empty = ready)


class OpsServer:
    """Serves metrics and health on its own port, off the gRPC event loop."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "assets-authz"
            sys_version = ""

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

            def _json(self, code: int, body: object) -> None:
                self._send(code, json.dumps(body).encode() + b"\n", "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes and probes are not worth a log line each

        self.registry = registry
        self.readiness = readiness
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
