"""An HTTP/1.1 echo upstream: answers every request with its method, path and headers as JSON."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PIECE = 65536
_POLL_SECONDS = 0.05  # how quickly stop_echo() returns


class _EchoHandler(BaseHTTPRequestHandler):
    """Reads (and discards) any body, then answers `{method, path, headers}`."""

    protocol_version = "HTTP/1.1"  # keep-alive, like a real upstream behind Envoy

    def _echo(self) -> None:
        self._drain_body()
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drain_body(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                self._skip(size + 2)  # the chunk and its CRLF
        self._skip(int(self.headers.get("content-length") or 0))

    def _skip(self, length: int) -> None:
        while length > 0:
            piece = self.rfile.read(min(length, _PIECE))
            if not piece:
                return
            length -= len(piece)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: tests and the demo have their own output."""


for _method in _METHODS:
    setattr(_EchoHandler, f"do_{_method}", _EchoHandler._echo)


class EchoServer(ThreadingHTTPServer):
    """The echo upstream; request threads are daemons so a stuck client never blocks exit."""

    daemon_threads = True
    request_queue_size = 128  # the stdlib default of 5 refuses connections under modest load
    allow_reuse_address = True


def start_echo(port: int = 0) -> tuple[EchoServer, int]:
    """Start the echo upstream on 127.0.0.1 in a background thread; return it and its port."""
    server = EchoServer(("127.0.0.1", port), _EchoHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(_POLL_SECONDS,), name="echo-upstream", daemon=True
    )
    thread.start()
    bound: int = server.server_address[1]
    return server, bound


def stop_echo(server: EchoServer) -> None:
    """Stop serving and close the listening socket."""
    server.shutdown()
    server.server_close()
