"""`python -m sidecar.bench` (`make bench`): print the comparison table, write it as JSON."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from sidecar.bench.procs import ServerStartError
from sidecar.bench.report import format_table
from sidecar.bench.run import BenchOptions, profile_summary, run_bench
from sidecar.bench.workload import DEFAULT_OBJECTS

DEFAULT_JSON = Path("var/bench/latest.json")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.bench",
        description="Benchmark the sidecar against a do-nothing Check server, directly over "
        "gRPC and through a real Envoy (wrk).",
    )
    parser.add_argument("--duration", type=_positive_float, default=10.0, metavar="SECONDS",
                        help="timed window of each run (default 10)")
    parser.add_argument("--concurrency", type=_positive_int, default=32, metavar="N",
                        help="calls (gRPC) or connections (wrk) in flight (default 32)")
    parser.add_argument("--skip-envoy", action="store_true", help="only the direct gRPC runs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the JSON report (default {DEFAULT_JSON})")
    parser.add_argument("--objects", type=_positive_int, default=DEFAULT_OBJECTS, metavar="N",
                        help=f"bulk objects in the seeded store (default {DEFAULT_OBJECTS})")
    parser.add_argument("--profile", action="store_true",
                        help="run the sidecar under cProfile; stats go beside the JSON report "
                        "(sidecar.prof) and the top functions are printed")
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run like Ctrl-C: every child is stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_path: Path = args.json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    profile_path = json_path.with_name("sidecar.prof") if args.profile else None
    options = BenchOptions(
        duration=args.duration, concurrency=args.concurrency, skip_envoy=args.skip_envoy,
        objects=args.objects, profile_path=profile_path,
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_bench(options, progress=progress)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except ServerStartError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"(JSON: {json_path})")
    if profile_path is not None and profile_path.exists():
        print(f"\nsidecar profile ({profile_path}):")
        print(profile_summary(profile_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
