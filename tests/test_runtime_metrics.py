"""The metrics Runtime feeds from live state: store snapshot age, Connect secrets, stale JWKS.

Runs the real Runtime (or a whole sidecar) against a seeded world and reads the registry or
/metrics, so the wiring from the facts to the series is what is tested.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sidecar.metrics import Metrics
from sidecar.runtime import Runtime
from sidecar.store.policy import parse_policy
from sidecar.testing.running import SidecarThread

from .test_server import BASE, _wait_for, call, http_get, metric
from .world import FIXTURES, World, build_world

AGE = "assets_authz_store_snapshot_age_seconds"
SECRETS_UNAVAILABLE = "assets_authz_connect_secrets_unavailable"
STALE_SERVED = "assets_authz_jwks_stale_served_total"


@pytest.fixture(autouse=True)
def fast_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tick the gauge watcher every 50 ms instead of every second."""
    monkeypatch.setattr("sidecar.runtime.WATCH_INTERVAL_SECONDS", 0.05)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return float(value)


async def test_store_snapshot_age_grows_while_the_store_is_gone_and_resets_when_back(
    fresh_world: World,
) -> None:
    metrics = Metrics()
    runtime = Runtime(fresh_world.config, metrics, poll_seconds=0.05)
    db = fresh_world.root / "state.db"
    away = fresh_world.root / "state.db.away"
    await runtime.start()
    try:
        assert gauge(metrics, AGE) < 1.0  # set at start, from the first poll
        db.rename(away)
        assert await eventually(lambda: gauge(metrics, AGE) > 0.5)
        assert runtime.snapshots.ready()  # still within store_stale_max_seconds: serving
        away.rename(db)
        assert await eventually(lambda: gauge(metrics, AGE) < 0.3)
    finally:
        if away.exists():
            away.rename(db)
        await runtime.stop()


async def test_store_snapshot_age_is_infinite_until_the_store_first_answers(
    fresh_world: World,
) -> None:
    metrics = Metrics()
    db = fresh_world.root / "state.db"
    runtime = Runtime(fresh_world.config, metrics, poll_seconds=0.05)
    db.rename(fresh_world.root / "state.db.away")
    await runtime.start()
    try:
        assert gauge(metrics, AGE) == math.inf
        assert runtime.serving_problems()  # the same fact as "no current snapshot"
    finally:
        await runtime.stop()


def _use_secret_file(world: World, tmp_path: Path, client_key: str) -> Path:
    """Point one installation at a secret file (written), re-applying the fixture policy."""
    secret_file = tmp_path / "writer.secret"
    secret_file.write_text("writer-secret-from-a-file-0123456789\n")
    data = yaml.safe_load((FIXTURES / "policy.yaml").read_text())
    for inst in data["connect_installations"]:
        if inst["client_key"] == client_key:
            inst.pop("shared_secret_env", None)
            inst["shared_secret_file"] = str(secret_file)
    world.store.apply(parse_policy(data, base=tmp_path), dry_run=False)
    return secret_file


async def test_connect_secrets_gauge_follows_a_secret_file(tmp_path: Path) -> None:
    world = build_world(tmp_path / "w")
    secret_file = _use_secret_file(world, tmp_path, "jira:def-456")
    metrics = Metrics()
    runtime = Runtime(world.config, metrics, poll_seconds=0.05)
    await runtime.start()
    try:
        assert gauge(metrics, SECRETS_UNAVAILABLE) == 0
        moved = secret_file.with_suffix(".gone")
        secret_file.rename(moved)
        assert await eventually(lambda: gauge(metrics, SECRETS_UNAVAILABLE) == 1)
        moved.rename(secret_file)
        assert await eventually(lambda: gauge(metrics, SECRETS_UNAVAILABLE) == 0)
    finally:
        await runtime.stop()
        world.stop()


def test_oauth_checks_while_the_issuer_is_down_count_as_served_stale(
    fresh_world: World,
) -> None:
    issuer = fresh_world.jwks_server.issuer
    with SidecarThread(fresh_world.config) as running:
        port, http = running.serving.grpc_port, running.serving.http_port

        def stale_served() -> float:
            return metric(http_get(http, "/metrics")[1], STALE_SERVED, issuer=issuer)

        def check() -> str:
            auth = {"authorization": fresh_world.oauth("acc-ann", "read:cmdb-object:jira")}
            resp = call(port, "GET", f"{BASE}/object/88", auth)
            part = resp.ok_response if resp.HasField("ok_response") else resp.denied_response
            return {h.header.key: h.header.value for h in part.headers}.get(
                "x-assets-authz-reason", "ok"
            )

        text = http_get(http, "/metrics")[1]
        assert f'{STALE_SERVED}{{issuer="{issuer}"}} 0.0' in text  # exists before any event
        assert check() == "ok"
        assert stale_served() == 0  # fresh keys

        fresh_world.jwks_server.set_down(True)
        fresh_world.kid = "rotated"  # an unseen kid makes the sidecar refetch: it fails
        assert check() == "unknown_key"
        assert _wait_for(lambda: metric(http_get(http, "/metrics")[1],
                                    "assets_authz_jwks_fetches_total", issuer=issuer,
                                    result="failure") == 1)
        assert stale_served() == 0  # nothing was served
        fresh_world.kid = "k1"
        assert check() == "ok"  # verified with the last good keys while the issuer is down
        assert check() == "ok"
        assert stale_served() == 2
