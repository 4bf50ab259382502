"""HTTP load through Envoy with wrk and deploy/bench/mix.lua, which rotates through the mix.

wrk is the Debian package `wrk`. When it is missing and we run as root with apt-get, it is
installed; otherwise the Envoy part of the benchmark is skipped with a hint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Collection, Iterable
from pathlib import Path

from sidecar.bench.report import LoadResult
from sidecar.bench.workload import ALLOW, BENCH_DIR, MixEntry
from sidecar.decision import Reason

LUA_SCRIPT = BENCH_DIR / "mix.lua"
SUMMARY_PREFIX = "BENCH-JSON "
REQUEST_TIMEOUT = "2s"
APT_TIMEOUT_SECONDS = 600.0
WRK_GRACE_SECONDS = 30.0  # beyond the run's own duration, before wrk is killed
INSTALL_HINT = "install it with `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"


class WrkError(RuntimeError):
    """wrk failed or printed no summary; the message carries its output."""


def _apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            ["apt-get", *args], stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
            env=env, timeout=APT_TIMEOUT_SECONDS, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_wrk() -> str | None:
    """The wrk binary: on PATH, or installed with apt-get when root; None (with a hint) else."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: wrk not found, installing the Debian package wrk", file=sys.stderr)
        if not _apt_get("install", "-y", "--no-install-recommends", "wrk"):
            _apt_get("update")
            _apt_get("install", "-y", "--no-install-recommends", "wrk")
        found = shutil.which("wrk")
        if found:
            return found
    print(f"bench: wrk is not installed; {INSTALL_HINT}. Skipping the runs through Envoy.",
          file=sys.stderr)
    return None


def _field(text: str) -> str:
    if "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"tab or newline in a request field: {text[:40]!r}")
    return text


def write_requests(path: Path, entries: Iterable[MixEntry]) -> None:
    """The requests file mix.lua reads (format in its header comment)."""
    lines = []
    for entry in entries:
        fields = [entry.method, entry.path, (entry.body or b"").hex()]
        for name, value in entry.headers.items():
            fields += [name, value]
        lines.append("\t".join(_field(f) for f in fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def outcome_of(status: int, reason: str) -> str:
    """The outcome label of an HTTP answer: `allow`, a reason code, or `http STATUS REASON`."""
    if status == 200 and reason == "ok":
        return ALLOW
    try:
        known = Reason(reason)
    except ValueError:
        known = None
    if known is not None and known.http_status == status:
        return reason
    return f"http {status} {reason}"


def parse_summary(output: str, expected: Collection[str]) -> LoadResult:
    """Read the BENCH-JSON line mix.lua prints; answers outside `expected` count as errors."""
    for line in reversed(output.splitlines()):
        if line.startswith(SUMMARY_PREFIX):
            data = json.loads(line[len(SUMMARY_PREFIX):])
            break
    else:
        raise WrkError(f"wrk printed no summary:\n{output[-2000:]}")
    outcomes: dict[str, int] = {}
    for key, count in data["tally"].items():
        status, _, reason = key.partition(" ")
        label = outcome_of(int(status), reason)
        outcomes[label] = outcomes.get(label, 0) + int(count)
    socket = {k: int(v) for k, v in data["errors"].items() if k != "status"}
    for kind, count in socket.items():
        if count:
            outcomes[f"socket {kind}"] = count
    unexpected = sum(n for label, n in outcomes.items()
                     if label not in expected and not label.startswith("socket "))
    latency = data["latency_us"]
    return LoadResult(
        tool="wrk",
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        errors=sum(socket.values()) + unexpected,
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        outcomes=outcomes,
    )


def run_wrk(
    wrk: str,
    url: str,
    requests_file: Path,
    expected: Collection[str],
    *,
    concurrency: int,
    duration: float,
    threads: int = 2,
) -> LoadResult:
    """One wrk run of `duration` seconds (whole seconds, at least 1) with the mix script."""
    seconds = max(1, round(duration))
    args = [
        wrk, f"-t{max(1, min(threads, concurrency))}", f"-c{concurrency}", f"-d{seconds}s",
        "--timeout", REQUEST_TIMEOUT, "--latency", "-s", str(LUA_SCRIPT), url,
        "--", str(requests_file),
    ]
    try:
        done = subprocess.run(
            args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=seconds + WRK_GRACE_SECONDS, check=False, start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + WRK_GRACE_SECONDS:.0f}s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse_summary(done.stdout, expected)
