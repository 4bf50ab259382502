"""Benchmark results: one load run's numbers, the side-by-side table and its JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

NULL = "null"
SIDECAR = "sidecar"
GRPC = "grpc"
ENVOY = "envoy"


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(round(pct / 100 * len(ordered), 9)))  # 99.9% of 1000 is 999
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class LoadResult:
    """What one timed load run measured (latencies in milliseconds)."""

    tool: str  # "grpc.aio" or "wrk"
    seconds: float
    requests: int  # answers received in the window
    errors: int  # transport errors, timeouts and answers other than the expected one
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    outcomes: Mapping[str, int] = field(default_factory=dict)  # "allow" / reason -> count
    server_cpu_seconds: float | None = None  # the server under test, in the window
    envoy_cpu_seconds: float | None = None
    client_cpu_seconds: float | None = None  # the load generator (grpc.aio client or wrk)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cpu_us_per_request(self) -> float | None:
        if self.server_cpu_seconds is None or not self.requests:
            return None
        return self.server_cpu_seconds / self.requests * 1e6

    def with_cpu(
        self, *, server: float | None, client: float | None, envoy: float | None = None
    ) -> LoadResult:
        return replace(self, server_cpu_seconds=server, client_cpu_seconds=client,
                       envoy_cpu_seconds=envoy)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = dict(sorted(self.outcomes.items()))
        data["rps"] = round(self.rps, 1)
        us = self.server_cpu_us_per_request
        data["server_cpu_us_per_request"] = None if us is None else round(us, 1)
        return data


def latency_result(
    tool: str, seconds: float, latencies: list[float], errors: int, outcomes: Mapping[str, int]
) -> LoadResult:
    """A LoadResult from per-request latencies in seconds (sorted here)."""
    latencies.sort()

    def ms(pct: float) -> float | None:
        value = percentile(latencies, pct)
        return None if value is None else value * 1000

    return LoadResult(tool, seconds, len(latencies), errors, ms(50), ms(99), ms(99.9),
                      dict(outcomes))


@dataclass
class ServerRuns:
    """Everything measured for one server: direct gRPC, through Envoy, peak memory."""

    grpc: LoadResult | None = None
    envoy: LoadResult | None = None
    peak_rss_kib: int | None = None


@dataclass
class Report:
    settings: dict[str, Any]
    mix: list[dict[str, Any]]
    servers: dict[str, ServerRuns] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "mix": self.mix,
            "servers": {
                name: {
                    GRPC: runs.grpc.as_dict() if runs.grpc else None,
                    ENVOY: runs.envoy.as_dict() if runs.envoy else None,
                    "peak_rss_kib": runs.peak_rss_kib,
                }
                for name, runs in self.servers.items()
            },
            "ratios": self.ratios(),
            "notes": self.notes,
        }

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """sidecar / null for each path and figure (requests/s: below 1 is slower)."""
        out: dict[str, dict[str, float | None]] = {}
        null, side = self.servers.get(NULL), self.servers.get(SIDECAR)
        if null is None or side is None:
            return out
        for path in (GRPC, ENVOY):
            a, b = getattr(null, path), getattr(side, path)
            if a is None or b is None:
                continue
            out[path] = {
                "rps": _ratio(b.rps, a.rps),
                "p50_ms": _ratio(b.p50_ms, a.p50_ms),
                "p99_ms": _ratio(b.p99_ms, a.p99_ms),
                "p999_ms": _ratio(b.p999_ms, a.p999_ms),
            }
        return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


_ROWS: tuple[tuple[str, str, int], ...] = (
    ("requests/s", "rps", 0),
    ("p50 ms", "p50_ms", 2),
    ("p99 ms", "p99_ms", 2),
    ("p99.9 ms", "p999_ms", 2),
    ("errors", "errors", 0),
    ("server CPU µs/request", "server_cpu_us_per_request", 0),
    ("server CPU %", "server_cpu_seconds", 0),
    ("Envoy CPU %", "envoy_cpu_seconds", 0),
    ("load generator CPU %", "client_cpu_seconds", 0),
)
_RATIO_KEYS = frozenset({"rps", "p50_ms", "p99_ms", "p999_ms"})


def _figure(result: LoadResult | None, key: str) -> float | None:
    if result is None:
        return None
    value: float | None = getattr(result, key)
    if key.endswith("_cpu_seconds") and value is not None:
        return value / result.seconds * 100  # percent of one CPU
    return value


def format_table(report: Report) -> str:
    """The human summary: both servers side by side, direct and through Envoy."""
    null = report.servers.get(NULL, ServerRuns())
    side = report.servers.get(SIDECAR, ServerRuns())
    ratios = report.ratios()
    s = report.settings
    width = 24
    lines = [
        f"assets-authz benchmark: {s['duration']:g} s per run, concurrency {s['concurrency']}, "
        f"{s['mix_requests']}-request mix ({s['allowed_percent']:.0f}% allowed), "
        f"{s['cpus']} CPUs",
        f"{'':<{width}}{'null server':>14}{'sidecar':>14}{'sidecar/null':>14}",
    ]
    for path, title in ((GRPC, "direct gRPC (grpc.aio client)"), (ENVOY, "through Envoy (wrk)")):
        a, b = getattr(null, path), getattr(side, path)
        lines.append(title)
        if a is None and b is None:
            lines.append(f"  {'skipped':<{width - 2}}")
            continue
        for label, key, digits in _ROWS:
            if key == "envoy_cpu_seconds" and path == GRPC:
                continue
            ratio = ratios.get(path, {}).get(key) if key in _RATIO_KEYS else None
            lines.append(
                f"  {label:<{width - 2}}{_num(_figure(a, key), digits):>14}"
                f"{_num(_figure(b, key), digits):>14}"
                f"{(_num(ratio, 2) + 'x') if ratio is not None else '':>14}"
            )
    rss = [None if r.peak_rss_kib is None else r.peak_rss_kib / 1024 for r in (null, side)]
    lines.append(f"{'peak RSS (VmHWM) MiB':<{width}}{_num(rss[0], 1):>14}{_num(rss[1], 1):>14}")
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)
