"""What the runtime does between Checks: policy_file failures, vanished config, dry-run flips."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.metrics import Metrics
from sidecar.runtime import Runtime

from .test_server import metric
from .world import FIXTURES


def _write_config(root: Path, extra: str = "") -> Path:
    path = root / "config.yaml"
    path.write_text(
        "listen: {grpc: '127.0.0.1:0', http: '127.0.0.1:0'}\n"
        "store: sqlite:///state.db\n"
        "policy_file: policy.yaml\n" + extra
    )
    return path


@contextlib.asynccontextmanager
async def _running(root: Path, policy: str | None = None) -> AsyncIterator[Runtime]:
    """A started Runtime on `root`'s config; the policy file is the fixture unless given."""
    if policy is None:
        shutil.copy(FIXTURES / "policy.yaml", root / "policy.yaml")
    else:
        (root / "policy.yaml").write_text(policy)
    runtime = Runtime(load_config(_write_config(root)), Metrics(), poll_seconds=0.1)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def _ticks(n: int = 2) -> None:
    await asyncio.sleep(1.2 * n)  # the watcher looks once a second


def _metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


async def test_an_invalid_policy_file_on_a_new_store_keeps_the_replica_out_of_service(
    tmp_path: Path,
) -> None:
    """Before: /readyz and gRPC health said ready while every request was denied."""
    async with _running(tmp_path, "schemas: 7\n") as runtime:
        (problem,) = runtime.serving_problems()
        assert problem.startswith("policy: policy_file never applied to this store (rejected: ")
        assert problem in runtime.readiness()
        shutil.copy(FIXTURES / "policy.yaml", tmp_path / "policy.yaml")
        await _ticks()
        assert runtime.serving_problems() == []
        assert not any(p.startswith("policy:") for p in runtime.readiness())


async def test_an_invalid_policy_edit_keeps_serving_and_shows_in_readyz_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _running(tmp_path) as runtime:
        assert runtime.serving_problems() == []
        (tmp_path / "policy.yaml").write_text("schemas: 7\n")
        await _ticks()
        assert runtime.serving_problems() == []  # the store keeps the policy it had
        (problem,) = [p for p in runtime.readiness() if p.startswith("policy:")]
        assert "the last apply of policy_file rejected: " in problem
        (record,) = [r for r in caplog.records if r.getMessage() == "policy file rejected"]
        assert record.fields["file"].endswith("policy.yaml")  # type: ignore[attr-defined]


async def test_a_vanished_config_file_is_counted_and_reloaded_when_it_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _running(tmp_path) as runtime:
        path, metrics = tmp_path / "config.yaml", runtime.metrics
        text = path.read_text()
        path.unlink()
        await _ticks()
        assert metric(_metrics_text(metrics), "assets_authz_reloads_total",
                      what="config", result="failure") == 1  # once, not every second
        assert "config file is gone" in caplog.text
        path.write_text(text + "dry_run: true\n")
        await _ticks()
        assert runtime.config.dry_run and runtime.generation == 2


async def test_dry_run_switched_by_a_reload_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _running(tmp_path) as runtime:
        path = tmp_path / "config.yaml"
        caplog.set_level(logging.WARNING)
        path.write_text(path.read_text() + "dry_run: true\n")
        assert await runtime.reload_config()
        path.write_text(path.read_text().replace("dry_run: true\n", ""))
        assert await runtime.reload_config()
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and r.name == "sidecar.runtime"]
        assert warnings[0].startswith("DRY RUN turned on by a reload")
        assert warnings[1] == "dry run turned off by a reload"
