"""The store under concurrency: CLI writers in processes of their own while the sidecar serves.

No writer may fail ("database is locked" above all), the sidecar must serve every change within
the pickup bound and never an older state after a newer one, the WAL must stay small, and
processes creating a store at the same moment must all succeed with one key.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2_grpc

from sidecar.explain import check_request
from sidecar.store import sqlite as sqlite_module
from sidecar.store.policy import Policy, load_policy, parse_policy
from sidecar.store.sqlite import WAL_SIZE_LIMIT, SqliteStore, StoreError, preview_apply
from sidecar.store.tokens import key_path_for, read_key
from sidecar.testing.running import SidecarThread

from ..world import EMAILS, FIXTURES, World
from . import concurrency_workers as workers

BASE = "/jsm/assets/workspace/ws-1/v1"
POLL_SECONDS = 1.0  # the production default (Runtime, serve)
# The documented pickup is one poll plus one snapshot load (sqlite.py, refresher.py): about a
# second. Five leave room for a loaded two-core machine without hiding a missed change.
PICKUP_BOUND = 5.0
# Each write checkpoints, so the WAL holds about one transaction (tens of KiB here); a reader that
# pinned an old snapshot would stop checkpoints and make it grow past this with every write.
WAL_BOUND = 256 << 10

SPAWN = multiprocessing.get_context("spawn")  # never fork a process that runs gRPC threads


@dataclass
class Expect:
    """From `since` + PICKUP_BOUND on, the sidecar must answer `allow` for `header`."""

    header: str
    allow: bool
    since: float
    kind: str
    final: bool  # nothing changes it again: once seen, it must keep holding
    seen: float | None = None


def _policy_files(root: Path) -> list[str]:
    """The world's policy, and the same with acc-zed (no role) added to all-staff (ITSM user)."""
    data = yaml.safe_load((FIXTURES / "policy.yaml").read_text())
    data["groups"]["all-staff"].append("acc-zed")
    flipped = root / "policy-zed.yaml"
    flipped.write_text(yaml.safe_dump(data))
    return [str(FIXTURES / "policy.yaml"), str(flipped)]


def _wal_size(db: Path) -> int:
    try:
        return os.path.getsize(f"{db}-wal")
    except OSError:
        return 0


def test_cli_writers_while_serving_never_fail_and_are_served_within_the_bound(
    fresh_world: World, tmp_path: Path
) -> None:
    world = fresh_world
    config = str(world.config_path)
    db = world.config.store_path
    assert db is not None
    ann, eve, dan = (("acc-ann", EMAILS["acc-ann"]), ("acc-eve", EMAILS["acc-eve"]),
                     ("acc-dan", EMAILS["acc-dan"]))
    to_revoke = []  # minted before the sidecar starts, so each revocation is a visible change
    for i in range(10):
        _, token = world.store.mint_api(ann[0], None, None, f"to-revoke-{i}", time.time())
        to_revoke.append((token, workers.basic(ann[1], token)))
    events: Any = SPAWN.Queue()
    plan: list[tuple[Any, tuple[Any, ...]]] = [
        (workers.applier, (config, _policy_files(tmp_path), "applier", 6, 1.2, events)),
        (workers.minter, (config, eve, "minter-1", 25, 0.1, events)),
        (workers.minter, (config, dan, "minter-2", 25, 0.1, events)),
        (workers.revoker, (config, to_revoke, "revoker", 0.5, events)),
    ]
    zed = world.basic("acc-zed")
    expects: dict[str, Expect] = {}  # by credential; "policy" for the latest policy flip
    errors: list[str] = []
    late: list[str] = []
    regressions: list[str] = []
    latency: dict[str, list[float]] = {"minted": [], "revoked": [], "policy": []}
    counts = dict.fromkeys(latency, 0)
    wal: list[int] = []
    done: set[str] = set()

    with SidecarThread(world.config, poll_seconds=POLL_SECONDS) as sidecar, \
            grpc.insecure_channel(f"127.0.0.1:{sidecar.serving.grpc_port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)

        def allowed(header: str) -> bool:
            resp = stub.Check(
                check_request("GET", f"{BASE}/object/89", {"authorization": header}, None),
                timeout=5,
            )
            return bool(resp.status.code == 0)

        assert not allowed(zed)  # the world's policy gives acc-zed no role
        assert all(allowed(credential) for _, credential in to_revoke)
        procs = [SPAWN.Process(target=fn, args=args, daemon=True) for fn, args in plan]
        for p in procs:
            p.start()
        deadline = time.monotonic() + 90
        rounds = 0
        while time.monotonic() < deadline:
            while True:
                try:
                    what, subject, at = events.get_nowait()
                except queue.Empty:
                    break
                if what == "error":
                    errors.append(subject)
                elif what == "done":
                    done.add(subject)
                elif what == "policy":  # a flip not seen before the next one goes unchecked
                    counts[what] += 1
                    expects[what] = Expect(zed, subject == "1", at, what, final=False)
                else:
                    counts[what] += 1
                    expects[subject] = Expect(subject, what == "minted", at, what, final=True)
            for key, e in expects.items():
                if e.seen is not None:
                    continue
                if allowed(e.header) == e.allow:
                    e.seen = time.monotonic()
                    latency[e.kind].append(e.seen - e.since)
                elif time.monotonic() - e.since > PICKUP_BOUND:
                    late.append(f"{e.kind} {key[-12:]}: not served {PICKUP_BOUND}s later")
                    e.seen = float("inf")
            # What is final and was seen must keep holding (never an older snapshot again);
            # one of them is checked again per round.
            settled = [e for e in expects.values() if e.final and e.seen not in (None, math.inf)]
            if settled:
                e = settled[rounds % len(settled)]
                if allowed(e.header) != e.allow:
                    regressions.append(f"{e.kind} {e.header[-12:]} changed back")
            rounds += 1
            wal.append(_wal_size(db))
            if len(done) == len(plan) and all(e.seen is not None for e in expects.values()):
                break
            time.sleep(0.02)
        for p in procs:
            p.join(10)
    wal_at_end = _wal_size(db)

    print("\npickup latency (s): " + ", ".join(
        f"{k} n={len(v)} max={max(v, default=0):.2f} median={statistics.median(v or [0]):.2f}"
        for k, v in latency.items()
    ) + f"; WAL max {max(wal)} B, at end {wal_at_end} B; {rounds} rounds")
    assert errors == [], errors  # "database is locked" above all
    assert done == {"applier", "minter-1", "minter-2", "revoker"}
    assert counts == {"minted": 50, "revoked": 10, "policy": 6}
    assert late == [], late
    assert regressions == [], regressions
    assert len(latency["minted"]) == 50 and len(latency["revoked"]) == 10
    assert len(latency["policy"]) >= 3  # flips come every 1.2 s; most must be seen
    assert max(wal) <= WAL_BOUND, f"the WAL reached {max(wal)} bytes"
    assert wal_at_end <= WAL_BOUND


def test_processes_creating_a_new_store_at_once_all_succeed_with_one_key(tmp_path: Path) -> None:
    processes, rounds = 6, 25
    barrier: Any = SPAWN.Barrier(processes)
    results: Any = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=workers.opener, args=(str(tmp_path), rounds, barrier, results),
                      daemon=True)
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    keys: dict[int, set[str]] = {}
    errors: list[str] = []
    for _ in range(processes * rounds):
        r, what, value = results.get(timeout=120)
        if what == "error":
            errors.append(f"round {r}: {value}")
        else:
            keys.setdefault(r, set()).add(value)
    for p in procs:
        p.join(10)
    assert errors == [], errors
    for r in range(rounds):
        path = tmp_path / str(r) / "state.db"
        assert keys[r] == {read_key(key_path_for(path)).hex()}
        assert SqliteStore(path).generation() == 0


# -- the same rules, one at a time, in one process ---------------------------------------------

STORE_FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "state.db")
    store.apply(load_policy(STORE_FIXTURES / "policy.yaml"), dry_run=False)
    return store


def _example(**changes: Any) -> Policy:
    data = yaml.safe_load((STORE_FIXTURES / "policy.yaml").read_text())
    data.update(changes)
    return parse_policy(data)


def _write_between_compare_and_write(monkeypatch: pytest.MonkeyPatch, write: Any) -> None:
    """Run `write` once, after `apply` compared the store with the policy, before it writes."""
    compare = sqlite_module.diff_states
    pending = [write]

    def diff(*args: Any) -> list[str]:
        changes = compare(*args)
        while pending:
            pending.pop()()
        return changes

    monkeypatch.setattr(sqlite_module, "diff_states", diff)


def test_apply_after_a_token_was_minted_meanwhile(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _example(objects=[{"id": "89", "type": "10"}])
    expected = store.apply(policy, dry_run=True)
    assert expected == ["+ object 89 (type 10)", "- object 88 (type 10)"]
    other = SqliteStore(store.path)
    _write_between_compare_and_write(
        monkeypatch, lambda: other.mint_api("acc-ann", None, None, "meanwhile", 1000.0)
    )
    assert store.apply(policy, dry_run=False) == expected
    assert store.generation() == 3  # first apply, mint, this apply
    assert dict(store.load_snapshot().objects) == {"89": "10"}
    assert len(store.list_tokens()) == 1


def test_apply_after_the_same_policy_was_applied_meanwhile_writes_nothing(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _example(objects=[{"id": "89", "type": "10"}])
    other = SqliteStore(store.path)
    _write_between_compare_and_write(monkeypatch, lambda: other.apply(policy, dry_run=False))
    assert store.apply(policy, dry_run=False) == []
    assert store.generation() == 2


def test_apply_after_another_policy_was_applied_meanwhile_compares_again(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _example(objects=[{"id": "89", "type": "10"}])
    other = SqliteStore(store.path)
    _write_between_compare_and_write(
        monkeypatch, lambda: other.apply(parse_policy({}), dry_run=False)
    )
    assert store.apply(policy, dry_run=False) == preview_apply(policy)
    assert store.generation() == 3
    monkeypatch.undo()
    assert store.apply(policy, dry_run=False) == []


def test_opening_or_reading_takes_no_write_lock(store: SqliteStore) -> None:
    """Another process holding the write lock no longer fails an open (every CLI command)."""
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        opened = SqliteStore(store.path, busy_timeout_ms=200)
        assert opened.generation() == 1
        assert opened.apply(load_policy(STORE_FIXTURES / "policy.yaml"), dry_run=False) == []
        assert opened.list_tokens() == []
        with pytest.raises(StoreError, match="database is locked"):
            opened.mint_api("acc-ann", None, None, "waits, then fails", 1000.0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_wal_holds_about_one_transaction(store: SqliteStore) -> None:
    """Each write checkpoints, so the next one restarts the WAL; a big one is cut back."""
    wal = Path(f"{store.path}-wal")
    reader = sqlite3.connect(store.path)  # open, in no transaction: the WAL is not deleted
    try:
        reader.execute("SELECT 1 FROM meta").fetchall()
        sizes = []
        for i in range(100):
            store.mint_api("acc-ann", None, None, f"t{i}", 1000.0)
            sizes.append(wal.stat().st_size)
        assert max(sizes) <= 64 << 10, max(sizes)  # before: 1000 pages (4 MiB) autocheckpoint
        many = [{"id": str(n), "type": "10"} for n in range(1000, 100000)]
        store.apply(_example(objects=many), dry_run=False)
        assert wal.stat().st_size > WAL_SIZE_LIMIT  # one big transaction
        store.mint_api("acc-ann", None, None, "small", 1000.0)
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        reader.close()
    probe = store._open()
    try:
        assert probe.execute("PRAGMA journal_size_limit").fetchone() == (WAL_SIZE_LIMIT,)
    finally:
        probe.close()
