"""Keeps the server's Snapshot current: polls the store's generation, reloads on change.

Store calls run in a worker thread with a timeout; a failed or hung store never crashes the
server. The last good snapshot keeps serving until the store has been unreachable longer than
the staleness bound, after which `current()` denies with `dependency_unavailable`.

Pickup bound: a change committed by any process (apply, mint, revoke bump the generation in the
same transaction) is served after at most one `poll_seconds` (1 s by default) plus one snapshot
load. Each poll and each load is one short read transaction on a connection of its own, closed
at once (SqliteStore), so the server never pins an old snapshot nor holds back WAL checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sidecar.decision import Deny, Reason
from sidecar.paths import as_mounted
from sidecar.store.model import Snapshot
from sidecar.store.policy import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)
T = TypeVar("T")


class SnapshotStore(Protocol):
    def generation(self) -> int: ...

    def load_snapshot(self) -> Snapshot: ...


class PolicyStore(Protocol):
    def apply(self, policy: Policy, *, dry_run: bool) -> list[str]: ...


class StoreCallTimeout(Exception):
    """A store call took longer than allowed (or an earlier one is still running)."""


class SnapshotSource:
    """The current Snapshot, refreshed from the store in the background."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        stale_max_seconds: float,
        poll_seconds: float = 1.0,
        call_timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self.stale_max_seconds = stale_max_seconds  # may be changed by a config reload
        self.poll_seconds = poll_seconds
        self._store = store
        self._call_timeout = call_timeout_seconds
        self._clock = clock
        self._on_reload = on_reload
        self._snapshot: Snapshot | None = None
        self._last_success: float | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._failing = False

    @property
    def last_success(self) -> float | None:
        """Clock reading of the last successful poll (None before the first)."""
        return self._last_success

    def stale_for(self) -> float:
        """Seconds since the store last answered (infinite before it ever did)."""
        if self._last_success is None:
            return float("inf")
        return max(0.0, self._clock() - self._last_success)

    @property
    def latest(self) -> Snapshot | None:
        """The last loaded snapshot however stale (for housekeeping, never for decisions)."""
        return self._snapshot

    def ready(self, max_stale: float | None = None) -> bool:
        """A snapshot is loaded and the store answered within `max_stale` (default: the bound)."""
        bound = self.stale_max_seconds if max_stale is None else max_stale
        return self._snapshot is not None and self.stale_for() <= bound

    def current(self) -> Snapshot:
        """The snapshot to decide with; Deny(dependency_unavailable) when too stale."""
        snapshot = self._snapshot
        if snapshot is None:
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "the store has not been loaded yet")
        stale = self.stale_for()
        if stale > self.stale_max_seconds:
            raise Deny(
                Reason.DEPENDENCY_UNAVAILABLE, f"the store has been unreachable for {stale:.0f}s"
            )
        return snapshot

    async def refresh(self) -> bool:
        """Poll once: reload when the generation moved. Returns whether the store answered."""
        reloaded = False
        try:
            generation = await self._in_thread(self._store.generation)
            if self._snapshot is None or generation != self._snapshot.generation:
                self._snapshot = await self._in_thread(self._store.load_snapshot)
                reloaded = True
        except Exception as exc:  # any store failure: keep serving the last snapshot
            if not self._failing:
                log.warning("store unreachable, serving the last snapshot: %s", exc)
            self._failing = True
            self._notify("failure")
            return False
        self._last_success = self._clock()
        if self._failing:
            log.info("store reachable again")
            self._failing = False
        if reloaded:
            log.info("store snapshot loaded (generation %d)", self._snapshot.generation)
            self._notify("success")
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every `poll_seconds` until `stop` is set."""
        while not stop.is_set():
            await self.refresh()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        # A hung call keeps its thread; never start a second one behind it.
        if self._pending is not None and not self._pending.done():
            raise StoreCallTimeout("an earlier store call is still running")
        task = asyncio.ensure_future(asyncio.to_thread(fn))
        task.add_done_callback(_consume)
        self._pending = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._call_timeout)
        except TimeoutError:
            raise StoreCallTimeout(f"store call exceeded {self._call_timeout:g}s") from None

    def _notify(self, result: str) -> None:
        if self._on_reload is not None:
            self._on_reload(result)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's exception so an abandoned call is not reported as lost."""
    if not task.cancelled():
        task.exception()


def _fingerprint(files: Iterable[str]) -> tuple[tuple[str, int, int], ...]:
    out: list[tuple[str, int, int]] = []
    for name in files:
        try:
            st = Path(name).stat()
            out.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, -1, -1))
    return tuple(out)


class PolicyFileApplier:
    """Applies the config's `policy_file` like `apply`, at start and whenever it changes.

    Synchronous (call it from a thread). `changed()` compares the modification time and size of
    the policy file and of the bulk files it names with those seen at the last attempt, so an
    invalid file is reported once, not on every poll, and a store failure is retried. Applying
    is idempotent. An invalid file raises PolicyError and leaves the store as it was.
    """

    def __init__(self, store: PolicyStore, path: Path) -> None:
        self.path = Path(path)
        self._store = store
        self._files: tuple[str, ...] = (str(as_mounted(self.path)),)
        self._seen: tuple[tuple[str, int, int], ...] | None = None

    def changed(self) -> bool:
        return self._seen is None or _fingerprint(self._files) != self._seen

    def apply(self) -> list[str]:
        before = _fingerprint(self._files[:1])
        try:
            policy = load_policy(self.path)
        except PolicyError:
            self._seen = before + _fingerprint(self._files[1:])
            raise
        self._seen = None  # until the store has taken it: a store failure is retried
        changes = self._store.apply(policy, dry_run=False)
        self._files = policy.files
        after = _fingerprint(self._files)
        # If the file changed while it was read, stay "changed" so the next poll applies again.
        self._seen = after if after[:1] == before else None
        return changes

