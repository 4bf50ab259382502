"""Servers under test in their own processes: start, wait until serving, measure CPU and memory.

Blocking code: call it outside the event loop (the benchmark runs its loops one at a time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.server import AUTHZ_SERVICE
from sidecar.testing.lifecycle import StopOnExit, tail, terminate

_POLL_SECONDS = 0.05
_PROBE_TIMEOUT_SECONDS = 0.5
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerStartError(RuntimeError):
    """The server exited or did not serve in time; the message ends with its log tail."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def memory_kib(pid: int, field: str = "VmHWM") -> int:
    """A `Vm*` line of /proc/PID/status in KiB (VmHWM: the peak resident set size)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def grpc_serving(address: str, timeout: float = _PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether grpc.health.v1 says the Authorization service at `address` is SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=AUTHZ_SERVICE),
                               timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, timeout: float = _PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether GET `url` answers 2xx (e.g. the sidecar's /readyz)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return 200 <= int(response.status) < 300
    except (OSError, urllib.error.URLError):
        return False


class ServerProcess(StopOnExit):
    """A server child process in its own session (Ctrl-C reaches the benchmark, not it).

    Construction starts it; `wait_serving` blocks until its gRPC health says SERVING (and
    `ready_url`, when given, answers 2xx); `stop` sends SIGTERM, then SIGKILL after a grace.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        grpc_address: str,
        log_path: Path,
        ready_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.grpc_address = grpc_address
        self.log_path = log_path
        self.ready_url = ready_url
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        self.peak_rss_kib: int | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ServerStartError(
                    f"{self.name} exited with {self._process.returncode}\n{self.log_tail()}"
                )
            if grpc_serving(self.grpc_address) and (
                self.ready_url is None or http_ok(self.ready_url)
            ):
                return
            time.sleep(_POLL_SECONDS)
        raise ServerStartError(f"{self.name} did not serve within {timeout:.0f}s\n"
                               f"{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return tail(self.log_path, lines)

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the server (idempotent); record its peak RSS first; return its exit code."""
        if self.running():
            try:
                self.peak_rss_kib = memory_kib(self.pid)
            except (OSError, KeyError):
                self.peak_rss_kib = None
            terminate(self._process, grace)
        if not self._log.closed:
            self._log.close()
        return self._process.returncode



def sidecar_command(config_path: Path, *, profile_path: Path | None = None) -> list[str]:
    """`python -m sidecar serve --config FILE`, under cProfile when `profile_path` is given."""
    command = [sys.executable]
    if profile_path is not None:
        command += ["-m", "cProfile", "-o", str(profile_path)]
    return [*command, "-m", "sidecar", "serve", "--config", str(config_path)]


def null_command(grpc_address: str) -> list[str]:
    return [sys.executable, "-m", "sidecar.bench.null_server", "--listen", grpc_address]
