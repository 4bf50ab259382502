"""`python -m sidecar.bench`: options, and the table and JSON it writes from a report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.bench import __main__ as bench_main
from sidecar.bench.report import NULL, SIDECAR, LoadResult, Report, ServerRuns
from sidecar.bench.run import BenchOptions


@pytest.mark.parametrize(
    "argv",
    [["--duration", "0"], ["--duration", "-1"], ["--concurrency", "0"], ["--objects", "x"],
     ["--unknown"]],
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main._parser().parse_args(argv)
    assert exc.value.code == 2


def test_defaults() -> None:
    args = bench_main._parser().parse_args([])
    assert (args.duration, args.concurrency, args.skip_envoy) == (10.0, 32, False)
    assert args.json == Path("var/bench/latest.json")


@pytest.mark.parametrize(("duration", "warmup"), [(10.0, 1.0), (5.0, 1.0), (2.0, 0.4)])
def test_warmup_is_a_fifth_of_the_run_at_most_one_second(duration: float, warmup: float) -> None:
    assert BenchOptions(duration=duration).warmup == warmup


def test_main_prints_the_table_and_writes_the_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[BenchOptions] = []

    def fake_run(options: BenchOptions, *, progress: Callable[[str], None]) -> Report:
        seen.append(options)
        result = LoadResult("grpc.aio", 1.0, 100, 0, 1.0, 2.0, 3.0, {"allow": 100})
        report = Report(settings={"duration": 1.0, "concurrency": 4, "mix_requests": 41,
                                  "allowed_percent": 75.6, "cpus": 2}, mix=[])
        report.servers[NULL] = ServerRuns(result, None, 1024)
        report.servers[SIDECAR] = ServerRuns(result, None, 2048)
        return report

    monkeypatch.setattr(bench_main, "run_bench", fake_run)
    out = tmp_path / "out" / "bench.json"
    code = bench_main.main(["--duration", "1", "--concurrency", "4", "--skip-envoy",
                            "--json", str(out)])
    assert code == 0
    assert seen == [BenchOptions(duration=1.0, concurrency=4, skip_envoy=True)]
    data = json.loads(out.read_text())
    assert data["servers"][SIDECAR]["peak_rss_kib"] == 2048
    assert data["ratios"]["grpc"]["rps"] == 1.0
    printed = capsys.readouterr().out
    assert "requests/s" in printed and str(out) in printed
