"""Live target resolution: unknown ids asked of the upstream, cached, failing closed."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from sidecar.config import ResolverConfig
from sidecar.decision import Deny, Reason
from sidecar.resolver import TargetResolver
from sidecar.testing.resolver_upstream import ResolverUpstream

from .test_pipeline import bearer, decide, engine, req

BASE = "/jsm/assets/workspace/ws-1/v1"


class FakeUpstream:
    def __init__(self, answers: dict[str, tuple[int, object]], delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.calls: list[str] = []

    async def __call__(self, url: str, timeout: float) -> tuple[int, bytes]:
        self.calls.append(url)
        if self.delay:
            await asyncio.sleep(self.delay)
        for needle, (status, body) in self.answers.items():
            if needle in url:
                return status, json.dumps(body).encode()
        return 404, b""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(upstream: FakeUpstream, clock: Clock | None = None, timeout_ms: int = 100,
             ttl: float = 60) -> TargetResolver:
    cfg = ResolverConfig(url="http://127.0.0.1:1/resolve", timeout_ms=timeout_ms,
                         cache_ttl_seconds=ttl)
    return TargetResolver(cfg, clock=clock or Clock(), fetch=upstream)


def with_resolver(r: TargetResolver):  # type: ignore[no-untyped-def]
    return replace(engine(), resolver=r)


async def test_unknown_object_resolved_through_the_upstream() -> None:
    up = FakeUpstream({"kind=object&id=777": (200, {"objectTypeId": "10"})})
    d = await decide(req("GET", f"{BASE}/object/777", bearer("ann")), with_resolver(resolver(up)))
    assert d.allowed, d.detail
    assert d.identity["role"] == "viewer"
    assert up.calls == ["http://127.0.0.1:1/resolve?kind=object&id=777&workspaceId=ws-1"]


async def test_object_of_an_unknown_type_resolves_type_with_schema() -> None:
    up = FakeUpstream({"kind=object&id=778": (200, {"objectTypeId": "12", "objectSchemaId": "1"})})
    d = await decide(req("GET", f"{BASE}/object/778", bearer("ann")), with_resolver(resolver(up)))
    assert d.allowed, d.detail


async def test_type_in_a_schema_of_another_workspace_is_unknown_target() -> None:
    up = FakeUpstream({"kind=objecttype&id=55": (200, {"objectSchemaId": "2"})})
    d = await decide(req("GET", f"{BASE}/objecttype/55", "Basic admin"),
                     with_resolver(resolver(up)))
    assert d.reason is Reason.UNKNOWN_TARGET


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((404, {}), Reason.UNKNOWN_TARGET),
        ((500, {}), Reason.DEPENDENCY_UNAVAILABLE),
        ((200, ["not", "an", "object"]), Reason.DEPENDENCY_UNAVAILABLE),
        ((200, {"objectTypeId": True}), Reason.DEPENDENCY_UNAVAILABLE),
        ((200, {}), Reason.DEPENDENCY_UNAVAILABLE),
    ],
)
async def test_failures_deny(answer: tuple[int, object], reason: Reason) -> None:
    up = FakeUpstream({"id=777": answer})
    d = await decide(req("GET", f"{BASE}/object/777", bearer("ann")), with_resolver(resolver(up)))
    assert d.reason is reason


async def test_timeout_denies_dependency_unavailable() -> None:
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})}, delay=1.0)
    d = await decide(req("GET", f"{BASE}/object/777", bearer("ann")),
                     with_resolver(resolver(up, timeout_ms=20)))
    assert d.reason is Reason.DEPENDENCY_UNAVAILABLE


async def test_schemas_are_never_resolved() -> None:
    up = FakeUpstream({})
    d = await decide(req("GET", f"{BASE}/objectschema/42", "Basic admin"),
                     with_resolver(resolver(up)))
    assert d.reason is Reason.UNKNOWN_TARGET
    assert up.calls == []


async def test_answers_and_misses_are_cached_until_ttl() -> None:
    clock = Clock()
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})})
    r = resolver(up, clock, ttl=60)
    for _ in range(3):
        assert await r.lookup("object", "777", "ws-1") is not None
        assert await r.lookup("object", "404", "ws-1") is None
    assert len(up.calls) == 2
    clock.now += 61
    await r.lookup("object", "777", "ws-1")
    assert len(up.calls) == 3


async def test_concurrent_misses_share_one_call() -> None:
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})}, delay=0.05)
    r = resolver(up)
    results = await asyncio.gather(*(r.lookup("object", "777", "ws-1") for _ in range(5)))
    assert all(x is not None for x in results)
    assert len(up.calls) == 1


async def test_waiter_answered_when_the_first_caller_is_cancelled() -> None:
    # Before: the lookup ran in the first caller's coroutine; cancelling it left the waiter
    # on a future nobody would ever resolve, so it hung until its deadline (spurious 503).
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})}, delay=0.1)
    r = resolver(up)
    first = asyncio.create_task(r.lookup("object", "777", "ws-1"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(r.lookup("object", "777", "ws-1"))
    await asyncio.sleep(0.01)
    first.cancel()
    found = await asyncio.wait_for(second, 0.5)
    assert found is not None and found.type_id == "10"
    assert first.cancelled()
    assert len(up.calls) == 1
    assert r._inflight == {}


async def _settle(r: TargetResolver) -> None:
    """Wait until no shared lookup is in flight (bounded)."""
    async with asyncio.timeout(1):
        while r._inflight:
            await asyncio.sleep(0.01)


async def test_lookup_is_cancelled_when_no_caller_waits_for_it_any_more() -> None:
    """A slow upstream must not pile up lookups nobody waits for (cancelled Checks)."""
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})}, delay=0.05)
    r = resolver(up)
    callers = [asyncio.create_task(r.lookup("object", "777", "ws-1")) for _ in range(3)]
    await asyncio.sleep(0.01)
    (lookup,) = r._inflight.values()
    callers[0].cancel()
    callers[1].cancel()
    await asyncio.sleep(0.005)
    assert not lookup.done()  # one caller still waits
    callers[2].cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    assert all(c.cancelled() for c in callers)
    await _settle(r)
    assert lookup.cancelled()
    assert r._waiting == {}
    found = await r.lookup("object", "777", "ws-1")  # not cached: asked again
    assert found is not None and found.type_id == "10"
    assert len(up.calls) == 2
    assert r._inflight == {}


async def test_failed_lookup_of_cancelled_callers_is_retrieved_and_not_cached() -> None:
    up = FakeUpstream({"id=777": (500, {})}, delay=0.05)
    r = resolver(up)
    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
    caller = asyncio.create_task(r.lookup("object", "777", "ws-1"))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    await _settle(r)
    gc.collect()
    assert unhandled == []  # no "Task exception was never retrieved"
    with pytest.raises(Deny) as denied:
        await r.lookup("object", "777", "ws-1")
    assert denied.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert len(up.calls) == 2  # failures are asked again, not cached
    assert r._inflight == {}


async def test_unexpected_fetch_error_reaches_every_waiter() -> None:
    # Before: only Deny was handed to waiters; any other error left them hanging.
    async def broken(url: str, timeout: float) -> tuple[int, bytes]:
        await asyncio.sleep(0.02)
        raise RuntimeError("a bug in the fetch")

    r = TargetResolver(ResolverConfig(url="http://127.0.0.1:1/resolve", timeout_ms=100,
                                      cache_ttl_seconds=60), clock=Clock(), fetch=broken)
    results = await asyncio.wait_for(asyncio.gather(
        *(r.lookup("object", "777", "ws-1") for _ in range(3)), return_exceptions=True), 0.5)
    assert all(isinstance(x, RuntimeError) for x in results)
    assert r._inflight == {}


async def test_every_waiter_is_bounded_by_the_timeout() -> None:
    up = FakeUpstream({"id=777": (200, {"objectTypeId": "10"})}, delay=5.0)
    r = resolver(up, timeout_ms=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(r.lookup("object", "777", "ws-1") for _ in range(3)), return_exceptions=True
    )
    assert loop.time() - started < 1
    assert all(isinstance(x, Deny) and x.reason is Reason.DEPENDENCY_UNAVAILABLE for x in results)
    assert len(up.calls) == 1
    assert r._inflight == {}


async def test_real_http_redirect_is_not_followed() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "id=781" in self.path:
                self.send_response(302)
                self.send_header("Location", "/resolve?kind=object&id=777&workspaceId=ws-1")
                self.end_headers()
                return
            body = json.dumps({"objectTypeId": "10"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = ResolverConfig(url=f"http://127.0.0.1:{server.server_address[1]}/resolve",
                             timeout_ms=2000, cache_ttl_seconds=60)
        r = TargetResolver(cfg, clock=Clock())
        assert await r.lookup("object", "777", "ws-1") is not None  # the real fetch path works
        d = await decide(req("GET", f"{BASE}/object/781", bearer("ann")), with_resolver(r))
        assert d.reason is Reason.DEPENDENCY_UNAVAILABLE
    finally:
        server.shutdown()
        server.server_close()


async def test_a_broken_http_answer_is_dependency_unavailable() -> None:
    """A real fetch against a server that speaks no valid HTTP (was: internal_error)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 abc nonsense\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    cfg = ResolverConfig(url=f"http://127.0.0.1:{listener.getsockname()[1]}/resolve",
                         timeout_ms=2000, cache_ttl_seconds=60)
    try:
        d = await decide(req("GET", f"{BASE}/object/777", bearer("ann")),
                         with_resolver(TargetResolver(cfg, clock=Clock())))
    finally:
        listener.close()
    assert d.reason is Reason.DEPENDENCY_UNAVAILABLE, d.detail


@pytest.mark.parametrize(("length", "asked"), [(128, True), (129, False), (200_000, False)])
async def test_an_id_too_long_to_exist_is_unknown_target_without_asking(
    length: int, asked: bool
) -> None:
    # Before: 200,000 digits were sent; the upstream answered 414 (URI too long), so any client
    # could turn a lookup into 503 dependency_unavailable and page the on-call.
    ident = "7" * length
    up = FakeUpstream({f"id={ident}&": (414 if length > 128 else 404, {})})
    d = await decide(req("GET", f"{BASE}/object/{ident}", bearer("ann")),
                     with_resolver(resolver(up)))
    assert d.reason is Reason.UNKNOWN_TARGET  # the same answer as the upstream's 404
    assert len(up.calls) == (1 if asked else 0)
    assert len(d.detail) < 1000


class _HeldUpstream:
    """A real resolve endpoint that answers only once `release` is set."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.server = ResolverUpstream(self._held)

    def _held(self, _path: str) -> float:
        self.release.wait(5)
        return 0.0

    def resolver(self) -> TargetResolver:
        cfg = ResolverConfig(url=self.server.url, timeout_ms=4000, cache_ttl_seconds=60)
        return TargetResolver(cfg, clock=Clock())

    async def until_arrived(self, count: int) -> None:
        """Until `count` requests are held (none is answered before `release`)."""
        async with asyncio.timeout(3):
            while self.server.busy < count:
                await asyncio.sleep(0.01)

    def close(self) -> None:
        self.release.set()
        self.server.stop()


@pytest.fixture
async def small_default_executor() -> AsyncIterator[ThreadPoolExecutor]:
    """The loop's default executor (asyncio.to_thread) with 2 threads, as on a small box."""
    pool = ThreadPoolExecutor(2)
    asyncio.get_running_loop().set_default_executor(pool)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


async def test_lookups_do_not_queue_behind_other_to_thread_work(
    small_default_executor: ThreadPoolExecutor,
) -> None:
    # Before: fetches ran through asyncio.to_thread, so JWKS fetches, secret reads and store work
    # holding the default executor's threads delayed every lookup (12 of 30 Checks answered 503
    # with `timeout_ms: 100` and a 40 ms upstream), and only that many lookups ran at once.
    import threading

    busy = threading.Event()
    others = [asyncio.ensure_future(asyncio.to_thread(busy.wait, 5)) for _ in range(2)]
    upstream = _HeldUpstream()
    try:
        r = upstream.resolver()
        lookups = [asyncio.ensure_future(r.lookup("object", str(700 + i), "ws-1"))
                   for i in range(8)]
        await upstream.until_arrived(8)  # all eight upstream calls at once, none queued
        upstream.release.set()
        found = await asyncio.gather(*lookups)
        assert [f.type_id if f else None for f in found] == ["10"] * 8
    finally:
        busy.set()
        upstream.close()
        await asyncio.gather(*others)


async def test_lookups_in_flight_leave_the_default_executor_free(
    small_default_executor: ThreadPoolExecutor,
) -> None:
    import threading

    upstream = _HeldUpstream()
    try:
        r = upstream.resolver()
        lookups = [asyncio.ensure_future(r.lookup("object", str(710 + i), "ws-1"))
                   for i in range(8)]
        await upstream.until_arrived(8)
        # A JWKS fetch or secret read is not starved by the eight lookups the upstream holds.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "read"), 0.5) == "read"
        names = [t.name for t in threading.enumerate()]
        assert sum(n.startswith("assets-authz-resolver") for n in names) >= 8
        upstream.release.set()
        assert all(await asyncio.gather(*lookups))
    finally:
        upstream.close()
