"""Bench results: percentiles, ratios, the printed table and the JSON form."""

from __future__ import annotations

import json

import pytest

from sidecar.bench.report import (
    ENVOY,
    GRPC,
    NULL,
    SIDECAR,
    LoadResult,
    Report,
    ServerRuns,
    format_table,
    latency_result,
    percentile,
)


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([5.0], 99.9, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
        ([float(i) for i in range(1, 1001)], 99.9, 999.0),
        ([float(i) for i in range(1, 1001)], 99, 990.0),
        ([1.0, 2.0], 0, 1.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], pct: float, expected: float | None) -> None:
    assert percentile(values, pct) == expected


def test_latency_result_sorts_and_converts_to_ms() -> None:
    result = latency_result("grpc.aio", 2.0, [0.003, 0.001, 0.002], 1, {"allow": 3})
    assert result.requests == 3
    assert result.rps == 1.5
    assert result.p50_ms == pytest.approx(2.0)
    assert result.p999_ms == pytest.approx(3.0)


def _result(rps: float, p50: float, tool: str = "wrk") -> LoadResult:
    return LoadResult(tool, 10.0, int(rps * 10), 0, p50, p50 * 3, p50 * 4, {"allow": 1},
                      server_cpu_seconds=5.0, client_cpu_seconds=2.0,
                      envoy_cpu_seconds=4.0 if tool == "wrk" else None)


def _report(envoy: bool = True) -> Report:
    report = Report(
        settings={"duration": 10.0, "concurrency": 32, "mix_requests": 41,
                  "allowed_percent": 75.6, "cpus": 2},
        mix=[{"name": "x"}],
        notes=["hello"],
    )
    report.servers[NULL] = ServerRuns(_result(2000, 10.0, "grpc.aio"),
                                      _result(1800, 12.0) if envoy else None, 60 * 1024)
    report.servers[SIDECAR] = ServerRuns(_result(1000, 30.0, "grpc.aio"),
                                         _result(900, 36.0) if envoy else None, 80 * 1024)
    return report


def test_ratios_are_sidecar_over_null() -> None:
    ratios = _report().ratios()
    assert ratios[GRPC] == {"rps": 0.5, "p50_ms": 3.0, "p99_ms": 3.0, "p999_ms": 3.0}
    assert ratios[ENVOY]["rps"] == 0.5


def _rows(table: str, label: str) -> list[list[str]]:
    return [line.replace(label, "").split() for line in table.splitlines()
            if line.strip().startswith(label)]


def test_table_shows_both_servers_both_paths_and_memory() -> None:
    table = format_table(_report())
    lines = table.splitlines()
    assert lines.index("direct gRPC (grpc.aio client)") < lines.index("through Envoy (wrk)")
    assert _rows(table, "requests/s") == [["2,000", "1,000", "0.50x"], ["1,800", "900", "0.50x"]]
    assert _rows(table, "p50 ms") == [["10.00", "30.00", "3.00x"], ["12.00", "36.00", "3.00x"]]
    assert _rows(table, "server CPU µs/request") == [["250", "500"], ["278", "556"]]
    assert _rows(table, "Envoy CPU %") == [["40", "40"]]  # through Envoy only
    assert _rows(table, "peak RSS (VmHWM) MiB") == [["60.0", "80.0"]]
    assert lines[-1] == "note: hello"


def test_table_without_envoy_says_skipped() -> None:
    table = format_table(_report(envoy=False))
    assert "skipped" in table
    assert ENVOY not in _report(envoy=False).ratios()


def test_json_form_is_serializable_and_complete() -> None:
    data = json.loads(json.dumps(_report().as_dict()))
    sidecar = data["servers"][SIDECAR]
    assert sidecar["peak_rss_kib"] == 80 * 1024
    assert sidecar[GRPC]["rps"] == 1000.0
    assert sidecar[GRPC]["server_cpu_us_per_request"] == 500.0
    assert sidecar[ENVOY]["envoy_cpu_seconds"] == 4.0
    assert data["ratios"][GRPC]["rps"] == 0.5
    assert data["notes"] == ["hello"]
