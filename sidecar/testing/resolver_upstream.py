"""A live-resolution upstream for tests (sidecar/resolver.py's protocol) on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ResolverUpstream(ThreadingHTTPServer):
    """Says every id is of object type `type_id`, after `delay(request path)` seconds.

    `url` is what `resolver.url` takes; `asked` is released as each request arrives and `busy`
    counts the requests being answered.
    """

    daemon_threads = True

    def __init__(self, delay: Callable[[str], float] = lambda _path: 0.0, type_id: str = "10"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay, self.type_id = delay, type_id
        self.url = f"http://127.0.0.1:{self.server_address[1]}/resolve"
        self.asked = threading.Semaphore(0)
        self.busy = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ResolverUpstream

    def do_GET(self) -> None:
        upstream = self.server
        with upstream.lock:
            upstream.busy += 1
        upstream.asked.release()
        try:
            time.sleep(upstream.delay(self.path))
            body = json.dumps({"objectTypeId": upstream.type_id}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the sidecar gave up first
        finally:
            with upstream.lock:
                upstream.busy -= 1

    def log_message(self, format: str, *args: object) -> None:
        return
