"""The benchmark run: each server in its own process, driven directly over gRPC, then via Envoy.

For the null server and then the sidecar: start it, wait until it serves, drive it with the
grpc.aio client (warm-up, then the timed window), put a fresh Envoy in front of it and drive
that with wrk (warm-up run, then the timed run), stop everything, keep its peak RSS. CPU time
of the server, Envoy and the load generator is read at the edges of each timed window.
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import pstats
import resource
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from sidecar.bench.grpc_load import Call, run_grpc_load
from sidecar.bench.procs import ServerProcess, cpu_seconds, null_command, sidecar_command
from sidecar.bench.report import ENVOY, GRPC, NULL, SIDECAR, LoadResult, Report, ServerRuns
from sidecar.bench.workload import ALLOW, DEFAULT_OBJECTS, Workload, build_workload
from sidecar.bench.wrk_load import WrkError, ensure_wrk, run_wrk, write_requests
from sidecar.testing.envoy import (
    EnvoyNotFoundError,
    EnvoyProcess,
    EnvoyStartError,
    find_envoy,
    render_demo_config,
)
from sidecar.testing.ports import free_port

MAX_WARMUP_SECONDS = 1.0
ENVOY_CONCURRENCY = 2
WRK_THREADS = 2


@dataclass(frozen=True)
class BenchOptions:
    duration: float = 10.0
    concurrency: int = 32
    skip_envoy: bool = False
    objects: int = DEFAULT_OBJECTS
    profile_path: Path | None = None  # run the sidecar under cProfile, write its stats here

    @property
    def warmup(self) -> float:
        return min(MAX_WARMUP_SECONDS, self.duration / 5)


class _Window:
    """CPU seconds of some processes and of this one between `start()` and `end()`."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._before: list[float] = []
        self._self_before = 0.0
        self.cpu: list[float] = []
        self.own_cpu = 0.0

    def start(self) -> None:
        self._before = [cpu_seconds(pid) for pid in self.pids]
        self._self_before = time.process_time()

    def end(self) -> None:
        self.own_cpu = time.process_time() - self._self_before
        self.cpu = [cpu_seconds(pid) - t for pid, t in zip(self.pids, self._before, strict=True)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _through_envoy(
    wrk: str,
    server: ServerProcess,
    authz_port: int,
    requests_file: Path,
    expected: Collection[str],
    options: BenchOptions,
) -> LoadResult:
    """Envoy (demo template) in front of `server`; wrk warm-up, then the timed run."""
    # The upstream is never reached: every request carries x-bench-direct.
    config = render_demo_config(0, 0, authz_port, free_port())
    with EnvoyProcess(config, concurrency=ENVOY_CONCURRENCY) as envoy:
        url = f"http://127.0.0.1:{envoy.listener_port()}"

        def drive(duration: float) -> LoadResult:
            return run_wrk(wrk, url, requests_file, expected, concurrency=options.concurrency,
                           duration=duration, threads=WRK_THREADS)

        drive(options.warmup)
        window = _Window([server.pid, envoy.pid])
        children = _children_cpu()
        window.start()
        result = drive(options.duration)
        window.end()
        wrk_cpu = _children_cpu() - children
    return result.with_cpu(server=window.cpu[0], envoy=window.cpu[1], client=wrk_cpu)


def _bench_server(
    server: ServerProcess,
    calls: Sequence[Call],
    expected: Collection[str],
    wrk: str | None,
    requests_file: Path,
    options: BenchOptions,
    notes: list[str],
) -> ServerRuns:
    with server:
        server.wait_serving()
        runs = ServerRuns()
        window = _Window([server.pid])
        result = asyncio.run(run_grpc_load(
            server.grpc_address, calls, concurrency=options.concurrency,
            duration=options.duration, warmup=options.warmup,
            on_start=window.start, on_end=window.end,
        ))
        runs.grpc = result.with_cpu(server=window.cpu[0], client=window.own_cpu)
        if wrk is not None:
            port = int(server.grpc_address.rpartition(":")[2])
            try:
                runs.envoy = _through_envoy(wrk, server, port, requests_file, expected, options)
            except (WrkError, EnvoyStartError) as exc:
                notes.append(f"{server.name} through Envoy failed: {exc}")
        if not server.running():
            notes.append(f"{server.name} exited during the run:\n{server.log_tail()}")
        server.stop()
        runs.peak_rss_kib = server.peak_rss_kib
    return runs


def _envoy_tools(options: BenchOptions, notes: list[str]) -> str | None:
    """wrk's path when the Envoy part can run; a note says why not otherwise."""
    if options.skip_envoy:
        notes.append("runs through Envoy skipped (--skip-envoy)")
        return None
    try:
        find_envoy()
    except EnvoyNotFoundError as exc:
        notes.append(f"runs through Envoy skipped: {exc}")
        return None
    wrk = ensure_wrk()
    if wrk is None:
        notes.append("runs through Envoy skipped: wrk is not installed")
    return wrk


def _settings(options: BenchOptions, workload: Workload) -> dict[str, object]:
    return {
        "duration": options.duration,
        "warmup": options.warmup,
        "concurrency": options.concurrency,
        "cpus": os.cpu_count(),
        "objects": options.objects,
        "mix_requests": len(workload.order),
        "allowed_percent": round(workload.fraction_allowed() * 100, 1),
        "envoy_concurrency": ENVOY_CONCURRENCY,
        "wrk_threads": WRK_THREADS,
        "profiled": options.profile_path is not None,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


def run_bench(options: BenchOptions, *, progress: Callable[[str], None] = print) -> Report:
    """Run the whole benchmark and return its report (servers, Envoy and wrk all stopped)."""
    with tempfile.TemporaryDirectory(prefix="assets-authz-bench-") as tmp:
        root = Path(tmp)
        progress(f"bench: seeding a store with {options.objects} objects, signing the mix")
        with build_workload(root / "world", grpc_port=free_port(), http_port=free_port(),
                            objects=options.objects) as workload:
            notes: list[str] = []
            wrk = _envoy_tools(options, notes)
            report = Report(
                settings=_settings(options, workload),
                mix=[{"name": e.name, "method": e.method, "path": e.path,
                      "expect": e.outcome, "weight": e.weight} for e in workload.mix],
                notes=notes,
            )
            entries = [workload.mix[i] for i in workload.order]
            requests_file = root / "requests.tsv"
            write_requests(requests_file, entries)
            payloads = [e.check_request().SerializeToString() for e in entries]
            sidecar_calls = [Call(p, e.outcome) for p, e in zip(payloads, entries, strict=True)]
            null_calls = [Call(p, ALLOW) for p in payloads]

            null_address = f"127.0.0.1:{free_port()}"
            progress(f"bench: null server on {null_address}")
            null = ServerProcess("null server", null_command(null_address),
                                 grpc_address=null_address, log_path=root / "null.log")
            report.servers[NULL] = _bench_server(
                null, null_calls, {ALLOW}, wrk, requests_file, options, notes
            )

            progress(f"bench: sidecar on {workload.grpc_address}")
            sidecar = ServerProcess(
                "sidecar", sidecar_command(workload.config_path, profile_path=options.profile_path),
                grpc_address=workload.grpc_address, log_path=root / "sidecar.log",
                ready_url=f"http://127.0.0.1:{workload.http_port}/readyz",
            )
            expected = {e.outcome for e in entries}
            report.servers[SIDECAR] = _bench_server(
                sidecar, sidecar_calls, expected, wrk, requests_file, options, notes
            )
    if options.profile_path is not None:
        notes.append("the sidecar ran under cProfile: its numbers are slower than without")
    return report


def profile_summary(path: Path, top: int = 25) -> str:
    """The `top` functions of a cProfile stats file by own time, then by cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    return out.getvalue()


__all__ = ["ENVOY", "GRPC", "BenchOptions", "profile_summary", "run_bench"]
