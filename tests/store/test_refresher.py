"""SnapshotSource (polling, reload, staleness, hung calls) and PolicyFileApplier."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest

from sidecar.decision import Deny, Reason
from sidecar.store.model import Snapshot
from sidecar.store.policy import PolicyError
from sidecar.store.refresher import PolicyFileApplier, SnapshotSource
from sidecar.store.sqlite import SqliteStore, StoreError

FIXTURES = Path(__file__).parent / "fixtures"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """Generation counter, load counter, an on/off failure switch and an optional gate."""

    def __init__(self) -> None:
        self.gen = 1
        self.loads = 0
        self.down = False
        self.gate: threading.Event | None = None

    def generation(self) -> int:
        if self.gate is not None:
            self.gate.wait(5)
        if self.down:
            raise StoreError("state.db: disk I/O error")
        return self.gen

    def load_snapshot(self) -> Snapshot:
        if self.down:
            raise StoreError("state.db: disk I/O error")
        self.loads += 1
        return Snapshot(generation=self.gen)


def make_source(
    store: FakeStore, clock: FakeClock, events: list[str], **kw: float
) -> SnapshotSource:
    return SnapshotSource(
        store, stale_max_seconds=300, clock=clock, on_reload=events.append, **kw
    )


async def test_nothing_is_served_before_the_first_load() -> None:
    source = make_source(FakeStore(), FakeClock(), [])
    with pytest.raises(Deny) as info:
        source.current()
    assert info.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert not source.ready()
    assert source.latest is None
    assert source.last_success is None
    assert source.stale_for() == float("inf")


async def test_reloads_only_when_the_generation_moves() -> None:
    store, clock, events = FakeStore(), FakeClock(), []
    source = make_source(store, clock, events)
    assert await source.refresh() is True
    assert source.current().generation == 1
    assert source.last_success == 100.0
    assert await source.refresh() is True
    assert store.loads == 1
    store.gen = 2
    clock.now = 101.0
    assert await source.refresh() is True
    assert source.current().generation == 2
    assert store.loads == 2
    assert events == ["success", "success"]
    assert source.ready()


async def test_an_unreachable_store_serves_the_last_snapshot_until_the_bound() -> None:
    store, clock, events = FakeStore(), FakeClock(), []
    source = make_source(store, clock, events)
    await source.refresh()
    store.down = True
    clock.now += 200
    assert await source.refresh() is False
    assert events == ["success", "failure"]
    assert source.current().generation == 1  # still within store_stale_max_seconds
    assert source.ready()
    assert not source.ready(max_stale=100)
    clock.now += 101  # 301 s since the last success
    assert source.stale_for() == 301
    with pytest.raises(Deny) as info:
        source.current()
    assert info.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert not source.ready()
    assert source.latest is not None  # housekeeping still sees it

    store.down = False
    store.gen = 3
    assert await source.refresh() is True
    assert source.current().generation == 3
    assert source.ready()
    assert events == ["success", "failure", "success"]


async def test_the_bound_follows_a_config_reload() -> None:
    store, clock = FakeStore(), FakeClock()
    source = make_source(store, clock, [])
    await source.refresh()
    clock.now += 60
    source.stale_max_seconds = 30
    with pytest.raises(Deny):
        source.current()


async def test_a_hung_store_call_times_out_and_is_not_stacked() -> None:
    store, clock, events = FakeStore(), FakeClock(), []
    source = make_source(store, clock, events, call_timeout_seconds=0.05)
    await source.refresh()
    store.gate = threading.Event()
    try:
        assert await source.refresh() is False  # timed out
        assert await source.refresh() is False  # the hung call is still running: no second one
        assert events == ["success", "failure", "failure"]
    finally:
        store.gate.set()
    store.gate = None
    for _ in range(100):  # let the released worker thread finish
        if await source.refresh():
            break
        await asyncio.sleep(0.01)
    assert source.ready()


async def test_run_polls_until_stopped() -> None:
    store, clock = FakeStore(), FakeClock()
    source = make_source(store, clock, [], poll_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if source.latest is not None:
            break
    store.gen = 2
    for _ in range(200):
        await asyncio.sleep(0.01)
        if source.current().generation == 2:
            break
    stop.set()
    await asyncio.wait_for(task, 1)
    assert source.current().generation == 2


async def test_with_a_real_store_a_mint_is_picked_up(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    PolicyFileApplier(store, FIXTURES / "policy.yaml").apply()
    source = SnapshotSource(store, stale_max_seconds=300)
    await source.refresh()
    assert source.current().token_key == store.token_key
    record, _ = store.mint_api("acc-ann", None, None, "", now=1.0)
    await source.refresh()
    assert record.id in source.current().tokens
    store.path.unlink()
    assert await source.refresh() is False
    assert record.id in source.current().tokens


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_policy_file_applier_follows_the_file_and_its_bulk_files(tmp_path: Path) -> None:
    for name in ("bulk-policy.yaml", "objects.csv", "attributes.jsonl"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    store = SqliteStore(tmp_path / "state.db")
    applier = PolicyFileApplier(store, tmp_path / "bulk-policy.yaml")
    assert applier.changed()
    assert "+ object 88 (type 10)" in applier.apply()
    assert not applier.changed()
    assert applier.apply() == []  # idempotent

    csv = tmp_path / "objects.csv"
    csv.write_text(csv.read_text() + "91,11\n")
    _bump_mtime(csv)
    assert applier.changed()
    assert applier.apply() == ["+ object 91 (type 11)"]
    assert not applier.changed()

    policy = tmp_path / "bulk-policy.yaml"
    good = policy.read_text()
    policy.write_text(good + "surprise: 1\n")
    _bump_mtime(policy)
    assert applier.changed()
    generation = store.generation()
    with pytest.raises(PolicyError):
        applier.apply()
    assert store.generation() == generation
    assert not applier.changed()  # the same bad file is reported once

    policy.write_text(good.replace("key: ITSM", "key: OPS"))
    _bump_mtime(policy)
    assert applier.changed()
    assert applier.apply() == ["~ schema 1 key: ITSM -> OPS"]


def test_policy_file_applier_retries_after_a_store_failure(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    applier = PolicyFileApplier(store, FIXTURES / "policy.yaml")
    store.path.unlink()
    with pytest.raises(StoreError):
        applier.apply()
    assert applier.changed()
