"""wrk side of the bench: the requests file, the summary parser, and a short real wrk run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.bench.workload import MixEntry
from sidecar.bench.wrk_load import (
    WrkError,
    outcome_of,
    parse_summary,
    run_wrk,
    write_requests,
)
from sidecar.testing.echo import start_echo, stop_echo

SUMMARY = (
    'Running 1s test @ http://127.0.0.1:1\n'
    '  Latency Distribution\n     50%    1.00ms\n'
    'BENCH-JSON {"requests":100,"duration_us":2000000,"errors":{"connect":0,"read":1,'
    '"write":0,"status":30,"timeout":2},"latency_us":{"p50":1500,"p99":9000,"p999":12000,'
    '"max":15000},"tally":{"200 ok":70,"403 role_missing":20,"401 unknown_token":7,'
    '"503 ok":2,"401 role_missing":1}}\n'
)


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (200, "ok", "allow"),
        (403, "role_missing", "role_missing"),
        (401, "qsh_mismatch", "qsh_mismatch"),
        (401, "role_missing", "http 401 role_missing"),  # wrong status for the reason
        (503, "ok", "http 503 ok"),  # Envoy's own answer when the check fails
        (403, "not_a_reason", "http 403 not_a_reason"),
        (200, "role_missing", "http 200 role_missing"),
    ],
)
def test_outcome_of(status: int, reason: str, expected: str) -> None:
    assert outcome_of(status, reason) == expected


def test_parse_summary_counts_unexpected_answers_and_socket_errors() -> None:
    result = parse_summary(SUMMARY, {"allow", "role_missing", "unknown_token"})
    assert result.requests == 100
    assert result.seconds == 2.0
    assert result.rps == 50.0
    assert (result.p50_ms, result.p99_ms, result.p999_ms) == (1.5, 9.0, 12.0)
    assert result.outcomes == {
        "allow": 70, "role_missing": 20, "unknown_token": 7, "http 503 ok": 2,
        "http 401 role_missing": 1, "socket read": 1, "socket timeout": 2,
    }
    assert result.errors == 3 + 3  # two 503s and a misfiled 401, plus three socket errors


def test_parse_summary_without_the_line_fails() -> None:
    with pytest.raises(WrkError, match="no summary"):
        parse_summary("Running 1s test\n", {"allow"})


def test_requests_file_format(tmp_path: Path) -> None:
    entries = [
        MixEntry("a", "GET", "/x/1", {"authorization": "Basic abc", "x-bench-direct": "1"}),
        MixEntry("b", "POST", "/x/create", {"content-type": "application/json"}, b'{"a":1}'),
    ]
    path = tmp_path / "requests.tsv"
    write_requests(path, entries)
    assert path.read_text().splitlines() == [
        "GET\t/x/1\t\tauthorization\tBasic abc\tx-bench-direct\t1",
        "POST\t/x/create\t7b2261223a317d\tcontent-type\tapplication/json",
    ]


def test_a_tab_in_a_field_is_refused(tmp_path: Path) -> None:
    bad = MixEntry("a", "GET", "/x", {"authorization": "Basic a\tb"})
    with pytest.raises(ValueError, match="tab or newline"):
        write_requests(tmp_path / "r.tsv", [bad])


@pytest.fixture
def echo_port() -> Iterator[int]:
    server, port = start_echo()
    yield port
    stop_echo(server)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_short_wrk_run_with_the_mix_script(tmp_path: Path, echo_port: int) -> None:
    entries = [
        MixEntry("a", "GET", "/x/1", {"authorization": "Basic abc"}),
        MixEntry("b", "POST", "/x/create", {"content-type": "application/json"}, b'{"a":1}'),
    ]
    path = tmp_path / "requests.tsv"
    write_requests(path, entries)
    wrk = shutil.which("wrk")
    assert wrk is not None
    result = run_wrk(wrk, f"http://127.0.0.1:{echo_port}", path, {"allow"},
                     concurrency=2, duration=1, threads=2)
    assert result.requests > 0
    assert result.errors == 0
    assert result.outcomes == {"allow": result.requests}
    assert result.p50_ms is not None and result.p999_ms is not None
    assert 0 < result.p50_ms <= result.p999_ms
