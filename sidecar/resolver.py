"""Live target resolution: ask the upstream Assets service about ids the store does not index.

Objects, attributes, object types and import sources created after the last `apply` are not in
the store's index. With `resolver.url` set, the sidecar asks the upstream once per id (cached for
`cache_ttl_seconds`, answers and "not found" alike; bounded size; each call bounded by
`timeout_ms`). Schemas are never resolved: their roles come only from the policy.

Protocol (the upstream implements it):
  GET <url>?kind=object|attribute|objecttype|importsource&id=<id>&workspaceId=<workspace>
  200 {"objectTypeId": "10", "objectSchemaId": "1"}   (objectTypeId for objects/attributes;
      objectSchemaId for object types and import sources, and optionally for objects/attributes)
  404 the id does not exist in that workspace
Anything else (timeout, 5xx, bad JSON) denies with `dependency_unavailable`, never allows.

Ids longer than MAX_ID_CHARS (128) are never sent: they are "not found" (`unknown_target`, like
a 404), so a client cannot make every lookup fail upstream (414) and page the on-call.

Calls run on the resolver's own pool of FETCH_THREADS (64) threads, never on the event loop's
default executor (a few threads, shared with JWKS fetches, secret reads and the store): lookups
neither queue behind that work nor starve it. At most 64 upstream calls run at a time; more
wait for a free thread, and that wait counts against `timeout_ms`. A call whose callers are all
gone keeps its thread until `timeout_ms` at most.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlencode

from sidecar.config import ResolverConfig
from sidecar.decision import Deny, Reason
from sidecar.operations.table import TargetKind
from sidecar.roles.targets import UnknownTarget
from sidecar.store.model import ImportSource, ObjectType, Snapshot

MAX_ENTRIES = 10_000
MAX_ID_CHARS = 128  # far above any real id; longer ones are "not found", never sent
FETCH_THREADS = 64  # upstream calls in flight at once
MAX_RESPONSE_BYTES = 64 * 1024
_KINDS = {
    TargetKind.OBJECT: "object",
    TargetKind.ATTRIBUTE: "attribute",
    TargetKind.TYPE: "objecttype",
    TargetKind.IMPORT_SOURCE: "importsource",
}

Fetch = Callable[[str, float], Awaitable[tuple[int, bytes]]]


V = TypeVar("V")


class _Overlay(Mapping[str, V]):
    """One extra entry over a snapshot mapping, without copying it."""

    def __init__(self, key: str, value: V, base: Mapping[str, V]) -> None:
        self._key, self._value, self._base = key, value, base

    def __getitem__(self, key: str) -> V:
        return self._value if key == self._key else self._base[key]

    def __iter__(self) -> Iterator[str]:
        yield self._key
        yield from (k for k in self._base if k != self._key)

    def __len__(self) -> int:
        return len(self._base) + (0 if self._key in self._base else 1)


@dataclass(frozen=True)
class Resolved:
    type_id: str | None = None
    schema_id: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-200: it denies, it is never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
# Shared by every resolver (one per configuration generation); threads start on first use.
_FETCH_POOL = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="assets-authz-resolver")


async def http_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """GET a URL on the resolver's own threads; returns (status, body). No redirects."""

    def get() -> tuple[int, bytes]:
        req = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return int(resp.status), resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    return await asyncio.get_running_loop().run_in_executor(_FETCH_POOL, get)


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return None


class TargetResolver:
    """Resolves unknown ids through the upstream, with a bounded TTL cache."""

    def __init__(
        self,
        config: ResolverConfig,
        *,
        clock: Callable[[], float],
        fetch: Fetch = http_fetch,
        on_cache: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._fetch = fetch
        self._on_cache = on_cache
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, Resolved | None]] = (
            OrderedDict()
        )
        # One task per id being asked, owned by no single caller: a cancelled Check never
        # cancels or strands a lookup others are waiting on. When the last caller waiting on it
        # is gone (Envoy's deadline, a reset stream), the lookup is cancelled too, so a slow
        # upstream never accumulates work nobody waits for. Each entry leaves when its task ends.
        self._inflight: dict[tuple[str, str, str], asyncio.Task[Resolved | None]] = {}
        self._waiting: dict[tuple[str, str, str], int] = {}

    async def lookup(self, kind: str, ident: str, workspace: str) -> Resolved | None:
        if len(ident) > MAX_ID_CHARS:
            return None  # no such id: answered like the upstream's 404, without asking it
        key = (kind, ident, workspace)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self._count("hit")
            return hit[1]
        self._count("miss")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve(key, now))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        # _ask bounds the task itself; this bounds each caller's wait even if a fetch
        # ignores cancellation. Cancelling a caller cancels only its shield, and the task only
        # when no other caller still waits on it.
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with asyncio.timeout(self._timeout + 0.1):
                return await asyncio.shield(task)
        except TimeoutError:
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "resolver: TimeoutError") from None
        finally:
            left = self._waiting[key] - 1
            if left:
                self._waiting[key] = left
            else:
                del self._waiting[key]
                if not task.done():
                    task.cancel()

    @property
    def _timeout(self) -> float:
        return self.config.timeout_ms / 1000

    async def _resolve(self, key: tuple[str, str, str], now: float) -> Resolved | None:
        """Ask the upstream once and cache the answer ("not found" too; failures are not)."""
        value = await self._ask(*key)
        self._cache[key] = (now + self.config.cache_ttl_seconds, value)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
        return value

    def _finished(self, key: tuple[str, str, str], task: asyncio.Task[Resolved | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: callers may all be gone

    def _count(self, result: str) -> None:
        if self._on_cache is not None:
            self._on_cache(result)

    async def _ask(self, kind: str, ident: str, workspace: str) -> Resolved | None:
        query = urlencode({"kind": kind, "id": ident, "workspaceId": workspace})
        url = f"{self.config.url}{'&' if '?' in self.config.url else '?'}{query}"
        timeout = self._timeout
        try:
            status, body = await asyncio.wait_for(self._fetch(url, timeout), timeout + 0.05)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:  # incl. broken HTTP
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, f"resolver: {type(exc).__name__}") from None
        if status == 404:
            return None
        if status != 200 or len(body) > MAX_RESPONSE_BYTES:
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, f"resolver answered {status}")
        try:
            data = json.loads(body)
        except ValueError:
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "resolver sent invalid JSON") from None
        if not isinstance(data, dict):
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "resolver sent a non-object")
        resolved = Resolved(_id(data.get("objectTypeId")), _id(data.get("objectSchemaId")))
        needs_type = kind in ("object", "attribute")
        if (needs_type and resolved.type_id is None) or (
            not needs_type and resolved.schema_id is None
        ):
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "resolver answer lacks the needed id")
        return resolved

    async def augment(self, snapshot: Snapshot, missing: UnknownTarget, workspace: str) -> Snapshot:
        """A snapshot that also knows `missing` (or re-raise when the upstream does not)."""
        kind = _KINDS.get(missing.kind)
        if kind is None:  # schemas carry roles: only the policy defines them
            raise missing
        found = await self.lookup(kind, missing.ident, workspace)
        if found is None:
            raise missing
        overlay: dict[str, Any] = {}
        if missing.kind is TargetKind.OBJECT and found.type_id:
            overlay["objects"] = _Overlay(missing.ident, found.type_id, snapshot.objects)
        elif missing.kind is TargetKind.ATTRIBUTE and found.type_id:
            overlay["attributes"] = _Overlay(missing.ident, found.type_id, snapshot.attributes)
        elif missing.kind is TargetKind.IMPORT_SOURCE and found.schema_id:
            overlay["import_sources"] = _Overlay(
                missing.ident, ImportSource(missing.ident, found.schema_id), snapshot.import_sources
            )
        type_id = missing.ident if missing.kind is TargetKind.TYPE else found.type_id
        if type_id and found.schema_id and type_id not in snapshot.object_types:
            overlay["object_types"] = _Overlay(
                type_id, ObjectType(type_id, found.schema_id, "", {}), snapshot.object_types
            )
        return replace(snapshot, **overlay)
