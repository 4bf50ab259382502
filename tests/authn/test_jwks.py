"""JwksCache: fetching, parsing, refresh loop, shared rate-limited refetch, staleness."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from sidecar.authn.jwks import (
    FetchError,
    JwksCache,
    fetch_url,
    parse_jwks,
    retry_delay,
    url_allowed,
)
from sidecar.config import Issuer
from sidecar.decision import Deny, Reason

FIXTURES = Path(__file__).parent / "fixtures"
ISS = "https://auth.example.test"
JWKS_URL = "https://keys.example.test/jwks.json"
DISCOVERY_URL = ISS + "/.well-known/openid-configuration"
PUBLIC_JWKS: dict[str, dict[str, Any]] = {
    k["kid"]: k for k in json.loads((FIXTURES / "public-jwks.json").read_text())["keys"]
}


def private_key(kid: str) -> Any:
    return serialization.load_pem_private_key((FIXTURES / f"{kid}.pem").read_bytes(), None)


def jwks_doc(*kids: str, extra: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"keys": [PUBLIC_JWKS[k] for k in kids] + (extra or [])}).encode()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeIdP:
    """In-memory fetch double: serves documents by URL, counts calls, can fail or hold."""

    def __init__(self, docs: dict[str, bytes] | None = None) -> None:
        self.docs: dict[str, bytes] = dict(docs or {})
        self.calls: list[str] = []
        self.down = False
        self.gate: asyncio.Event | None = None  # when set, fetches wait for it

    async def __call__(self, url: str, timeout: float) -> bytes:
        assert 0 < timeout <= 10
        self.calls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        if self.down or url not in self.docs:
            raise FetchError("connection refused")
        return self.docs[url]


def make_issuer(**overrides: Any) -> Issuer:
    base = Issuer(
        issuer=ISS,
        jwks_uri=JWKS_URL,
        audiences=("https://api.example.test",),
        algorithms=("RS256", "ES256", "PS256", "EdDSA"),
    )
    return replace(base, **overrides)


def make_cache(
    idp: FakeIdP, clock: FakeClock | None = None, events: list[tuple[str, str]] | None = None,
    **overrides: Any,
) -> JwksCache:
    on_fetch = (lambda iss, result: events.append((iss, result))) if events is not None else None
    return JwksCache(
        make_issuer(**overrides), clock=clock or FakeClock(), fetch=idp, on_fetch=on_fetch
    )


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        (PUBLIC_JWKS["rsa-1"], True),
        (PUBLIC_JWKS["ec-1"], True),
        (PUBLIC_JWKS["ed-1"], True),
        ({**PUBLIC_JWKS["rsa-1"], "use": "enc"}, False),
        ({k: v for k, v in PUBLIC_JWKS["rsa-1"].items() if k != "kid"}, False),
        ({**PUBLIC_JWKS["rsa-1"], "kid": 7}, False),
        ({k: v for k, v in PUBLIC_JWKS["rsa-1"].items() if k != "use"}, True),
        ({"kid": "sym", "kty": "oct", "k": "c2VjcmV0"}, False),
        ({"kid": "broken", "kty": "RSA", "n": "!!", "e": "AQAB"}, False),
        ({"kid": "noty", "n": "AQAB"}, False),
        ({**PUBLIC_JWKS["ec-1"], "crv": "P-999"}, False),
        ({**PUBLIC_JWKS["rsa-1"], "alg": "RSA-OAEP"}, False),
        ("not-an-object", False),
    ],
)
def test_parse_jwks_keeps_only_usable_signing_keys(entry: Any, kept: bool) -> None:
    keys = parse_jwks(json.dumps({"keys": [entry]}).encode())
    assert bool(keys) is kept


def test_parse_jwks_never_keeps_private_parts() -> None:
    from jwt.algorithms import RSAAlgorithm

    private = json.loads(RSAAlgorithm.to_jwk(private_key("rsa-1")))
    keys = parse_jwks(json.dumps({"keys": [{**private, "kid": "p", "use": "sig"}]}).encode())
    assert not hasattr(keys["p"].key, "private_bytes")


@pytest.mark.parametrize("doc", [b"not json", b"[]", b'{"keys": {}}', b'{"nokeys": []}', b"\xff"])
def test_parse_jwks_refuses_non_jwks(doc: bytes) -> None:
    with pytest.raises(FetchError):
        parse_jwks(doc)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://keys.example.test/jwks.json", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://localhost/jwks", True),
        ("http://[::1]:9/jwks", True),
        ("http://keys.example.test/jwks.json", False),
        ("ftp://keys.example.test/jwks.json", False),
        ("file:///etc/passwd", False),
        ("https:///nohost", False),
    ],
)
def test_url_allowed(url: str, allowed: bool) -> None:
    assert url_allowed(url) is allowed


@pytest.mark.parametrize(
    ("failures", "refresh", "delay"),
    [(1, 300, 1.0), (2, 300, 2.0), (5, 300, 16.0), (7, 300, 60.0), (50, 300, 60.0), (3, 3, 3.0)],
)
def test_retry_delay_backs_off_and_stays_below_the_refresh_interval(
    failures: int, refresh: float, delay: float
) -> None:
    assert retry_delay(failures, refresh) == delay


# --- refresh ------------------------------------------------------------------------------------


async def test_refresh_success_then_failure_keeps_last_good_keys() -> None:
    clock, events = FakeClock(), list[tuple[str, str]]()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1", "ec-1")})
    cache = make_cache(idp, clock, events)
    assert (cache.ready, cache.key_count, cache.last_success_age) == (False, 0, None)

    assert await cache.refresh() is True
    clock.t += 42
    assert (cache.ready, cache.key_count, cache.last_success_age) == (True, 2, 42.0)

    idp.down = True
    assert await cache.refresh() is False
    assert (cache.ready, cache.key_count, cache.last_success_age) == (True, 2, 42.0)
    assert events == [(ISS, "success"), (ISS, "failure")]


async def test_a_failing_on_fetch_hook_does_not_break_refresh() -> None:
    def broken(issuer: str, result: str) -> None:
        raise RuntimeError("metrics down")

    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = JwksCache(make_issuer(), clock=FakeClock(), fetch=idp, on_fetch=broken)
    assert await cache.refresh() is True
    assert cache.ready


@pytest.mark.parametrize(
    "doc", [b"<html>", b'{"keys": []}', jwks_doc(extra=[{"kid": "x", "kty": "oct", "k": "AA"}])]
)
async def test_a_document_without_usable_keys_is_a_failure(doc: bytes) -> None:
    events: list[tuple[str, str]] = []
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, events=events)
    assert await cache.refresh()
    idp.docs[JWKS_URL] = doc
    assert await cache.refresh() is False
    assert cache.key_count == 1
    assert events == [(ISS, "success"), (ISS, "failure")]


async def test_a_fetch_that_hangs_past_its_timeout_is_a_failure(monkeypatch: Any) -> None:
    monkeypatch.setattr("sidecar.authn.jwks.FETCH_TIMEOUT_SECONDS", 0.01)
    monkeypatch.setattr("sidecar.authn.jwks.FETCH_GRACE_SECONDS", 0.01)
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    idp.gate = asyncio.Event()  # never set: the double ignores its timeout
    cache = make_cache(idp)
    started = time.monotonic()
    assert await cache.refresh() is False
    assert time.monotonic() - started < 0.5


# --- discovery ----------------------------------------------------------------------------------


def discovery(**fields: Any) -> bytes:
    return json.dumps({"issuer": ISS, "jwks_uri": JWKS_URL, **fields}).encode()


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        (discovery(), True),
        (json.dumps({"jwks_uri": JWKS_URL}).encode(), True),
        (discovery(issuer=ISS + "/"), False),
        (discovery(issuer="https://evil.example.test"), False),
        (discovery(jwks_uri="http://keys.example.test/jwks.json"), False),
        (discovery(jwks_uri=None), False),
        (b"[1]", False),
        (b"nope", False),
    ],
)
async def test_discovery(doc: bytes, ok: bool) -> None:
    idp = FakeIdP({DISCOVERY_URL: doc, JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, jwks_uri="", discovery=True)
    assert await cache.refresh() is ok
    assert idp.calls == ([DISCOVERY_URL, JWKS_URL] if ok else [DISCOVERY_URL])


# --- key lookup ---------------------------------------------------------------------------------


async def test_known_kid_is_served_without_fetching() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp)
    await cache.refresh()
    key = await cache.key_for("rsa-1")
    assert key.key_id == "rsa-1"
    assert len(idp.calls) == 1


async def test_unknown_kid_refetches_once_per_interval() -> None:
    clock = FakeClock()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, clock, unknown_kid_refetch_seconds=30)
    await cache.refresh()

    for _ in range(3):
        with pytest.raises(Deny) as caught:
            await cache.key_for("nope")
        assert caught.value.reason is Reason.UNKNOWN_KEY
    assert len(idp.calls) == 2  # start + one refetch; the next two were rate-limited

    clock.t += 29
    with pytest.raises(Deny):
        await cache.key_for("nope")
    assert len(idp.calls) == 2
    clock.t += 1
    with pytest.raises(Deny):
        await cache.key_for("nope")
    assert len(idp.calls) == 3


async def test_rotation_new_kid_is_found_by_the_refetch() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp)
    await cache.refresh()
    idp.docs[JWKS_URL] = jwks_doc("rsa-2")  # the issuer rotated
    key = await cache.key_for("rsa-2")
    assert key.key_id == "rsa-2"
    assert cache.key_count == 1
    with pytest.raises(Deny) as caught:  # rotated out, and the refetch budget is spent
        await cache.key_for("rsa-1")
    assert caught.value.reason is Reason.UNKNOWN_KEY
    assert len(idp.calls) == 2


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, unknown_kid_wait_ms=2000)
    await cache.refresh()
    idp.docs[JWKS_URL] = jwks_doc("rsa-1", "rsa-2", "ec-1")
    idp.gate = asyncio.Event()
    lookups = [asyncio.create_task(cache.key_for(k)) for k in ["rsa-2", "ec-1", "rsa-2"] * 5]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(idp.calls) == 2
    idp.gate.set()
    keys = await asyncio.gather(*lookups)
    assert [k.key_id for k in keys] == ["rsa-2", "ec-1", "rsa-2"] * 5
    assert len(idp.calls) == 2


async def test_lookup_waits_at_most_unknown_kid_wait_ms_and_the_fetch_goes_on() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, unknown_kid_wait_ms=30)
    await cache.refresh()
    idp.docs[JWKS_URL] = jwks_doc("rsa-1", "rsa-2")
    idp.gate = asyncio.Event()
    started = time.monotonic()
    with pytest.raises(Deny) as caught:
        await cache.key_for("rsa-2")
    assert caught.value.reason is Reason.UNKNOWN_KEY
    assert time.monotonic() - started < 1.0
    idp.gate.set()
    assert await cache.refresh()  # joins the fetch still in flight
    assert len(idp.calls) == 2
    assert (await cache.key_for("rsa-2")).key_id == "rsa-2"


async def test_a_background_fetch_in_flight_is_joined_without_spending_the_budget() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1", "rsa-2")})
    idp.gate = asyncio.Event()
    cache = make_cache(idp, unknown_kid_wait_ms=2000)
    background = asyncio.create_task(cache.refresh())
    await asyncio.sleep(0)
    lookup = asyncio.create_task(cache.key_for("rsa-2"))
    await asyncio.sleep(0)
    idp.gate.set()
    assert await background
    assert (await lookup).key_id == "rsa-2"
    assert len(idp.calls) == 1
    with pytest.raises(Deny):
        await cache.key_for("unseen")  # the budget was not spent by joining
    assert len(idp.calls) == 2


async def test_endpoint_down_at_start_is_dependency_unavailable() -> None:
    events: list[tuple[str, str]] = []
    idp = FakeIdP()
    cache = make_cache(idp, events=events)
    assert await cache.refresh() is False
    for lookup in (cache.key_for("rsa-1"), cache.sole_key()):
        with pytest.raises(Deny) as caught:
            await lookup
        assert caught.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert not cache.ready
    assert events == [(ISS, "failure"), (ISS, "failure")]  # the second lookup was rate-limited


async def test_a_lookup_before_the_first_refresh_fetches() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp)
    assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    assert len(idp.calls) == 1


@pytest.mark.parametrize(("age", "served"), [(0, True), (3000, True), (3600, True), (3601, False)])
async def test_stale_keys_are_served_within_the_bound_only(age: float, served: bool) -> None:
    clock = FakeClock()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, clock, jwks_stale_max_seconds=3600)
    await cache.refresh()
    idp.down = True
    clock.t += age
    assert cache.ready is served
    if served:
        assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    else:
        with pytest.raises(Deny) as caught:
            await cache.key_for("rsa-1")
        assert caught.value.reason is Reason.DEPENDENCY_UNAVAILABLE
        assert len(idp.calls) == 2  # a stale cache tries a (rate-limited) refetch first
        idp.down = False
        clock.t += 30
        assert (await cache.key_for("rsa-1")).key_id == "rsa-1"


@pytest.mark.parametrize(("kids", "found"), [(("rsa-1",), True), (("rsa-1", "ec-1"), False)])
async def test_sole_key(kids: tuple[str, ...], found: bool) -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc(*kids)})
    cache = make_cache(idp)
    await cache.refresh()
    if found:
        assert (await cache.sole_key()).key_id == "rsa-1"
    else:
        with pytest.raises(Deny) as caught:
            await cache.sole_key()
        assert caught.value.reason is Reason.UNKNOWN_KEY


# --- stale serving (on_stale) ------------------------------------------------------------------


def stale_cache(
    idp: FakeIdP, clock: FakeClock, stale: list[str], **overrides: Any
) -> JwksCache:
    return JwksCache(
        make_issuer(**overrides), clock=clock, fetch=idp, on_stale=stale.append
    )


async def test_lookups_while_the_issuer_is_down_are_reported_stale_until_it_recovers() -> None:
    clock, stale = FakeClock(), list[str]()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = stale_cache(idp, clock, stale)
    assert await cache.refresh()
    assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    assert (await cache.sole_key()).key_id == "rsa-1"
    assert stale == []  # fresh keys: nothing to report

    idp.down = True
    assert await cache.refresh() is False
    clock.t += 600
    assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    assert (await cache.sole_key()).key_id == "rsa-1"
    assert stale == [ISS, ISS]  # one per look-up answered from the last good keys

    idp.down = False
    assert await cache.refresh()
    assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    assert stale == [ISS, ISS]


async def test_a_failed_unknown_kid_refetch_also_marks_the_keys_stale() -> None:
    clock, stale = FakeClock(), list[str]()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = stale_cache(idp, clock, stale)
    assert await cache.refresh()
    idp.down = True
    with pytest.raises(Deny):
        await cache.key_for("rotated")  # the refetch it starts fails
    assert stale == []  # nothing was served
    assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
    assert stale == [ISS]  # the most recent fetch failed: served from the last good keys
    assert len(idp.calls) == 2


async def test_only_served_keys_are_reported_stale() -> None:
    clock, stale = FakeClock(), list[str]()
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1", "ec-1")})
    cache = stale_cache(idp, clock, stale, jwks_stale_max_seconds=3600)
    assert await cache.refresh()
    idp.down = True
    assert await cache.refresh() is False
    with pytest.raises(Deny) as unknown:
        await cache.key_for("nope")  # refetch fails; the kid is unknown
    assert unknown.value.reason is Reason.UNKNOWN_KEY
    with pytest.raises(Deny) as no_sole:
        await cache.sole_key()  # two keys: no sole key to serve
    assert no_sole.value.reason is Reason.UNKNOWN_KEY
    clock.t += 3601
    with pytest.raises(Deny) as gone:
        await cache.key_for("rsa-1")  # past jwks_stale_max_seconds: not served at all
    assert gone.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert stale == []


async def test_never_fetched_is_not_reported_stale() -> None:
    stale: list[str] = []
    cache = stale_cache(FakeIdP(), FakeClock(), stale)
    assert await cache.refresh() is False
    with pytest.raises(Deny):
        await cache.key_for("rsa-1")
    assert stale == []


async def test_a_failing_on_stale_hook_does_not_break_lookups(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(issuer: str) -> None:
        raise RuntimeError("metrics down")

    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = JwksCache(make_issuer(), clock=FakeClock(), fetch=idp, on_stale=broken)
    assert await cache.refresh()
    idp.down = True
    assert await cache.refresh() is False
    for _ in range(3):
        assert (await cache.key_for("rsa-1")).key_id == "rsa-1"
        assert (await cache.sole_key()).key_id == "rsa-1"
    hook_errors = [r for r in caplog.records if "on_stale hook failed" in r.getMessage()]
    assert len(hook_errors) == 1  # logged once, not once per request


# --- background loop ----------------------------------------------------------------------------


async def test_run_retries_after_failures_then_refreshes_and_stops() -> None:
    events: list[tuple[str, str]] = []
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    idp.down = True
    cache = make_cache(idp, events=events, jwks_refresh_seconds=0.01)
    stop = asyncio.Event()
    loop = asyncio.create_task(cache.run(stop))
    while len(idp.calls) < 3:
        await asyncio.sleep(0.005)
    assert not cache.ready
    idp.down = False
    while len(idp.calls) < 6:
        await asyncio.sleep(0.005)
    assert cache.ready
    stop.set()
    await asyncio.wait_for(loop, timeout=1)
    assert events[:3] == [(ISS, "failure")] * 3
    assert (ISS, "success") in events


async def test_run_returns_promptly_when_stopped_during_a_long_wait() -> None:
    idp = FakeIdP({JWKS_URL: jwks_doc("rsa-1")})
    cache = make_cache(idp, jwks_refresh_seconds=300)
    stop = asyncio.Event()
    loop = asyncio.create_task(cache.run(stop))
    while not cache.ready:
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(loop, timeout=1)
    assert len(idp.calls) == 1


# --- the real urllib fetch against 127.0.0.1 -----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def idp_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.routes = {
        "/.well-known/openid-configuration": (
            200, {}, json.dumps({"issuer": base, "jwks_uri": base + "/jwks.json"}).encode()
        ),
        "/jwks.json": (200, {"Content-Type": "application/json"}, jwks_doc("rsa-1", "ec-1")),
        "/moved": (302, {"Location": "http://keys.example.test/jwks.json"}, b""),
    }
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


async def test_default_fetch_reads_a_real_jwks_over_discovery(idp_server: str) -> None:
    events: list[tuple[str, str]] = []
    issuer = Issuer(issuer=idp_server, discovery=True, algorithms=("RS256",))
    cache = JwksCache(issuer, on_fetch=lambda iss, result: events.append((iss, result)))
    assert await cache.refresh()
    assert cache.key_count == 2
    assert (await cache.key_for("ec-1")).key_id == "ec-1"
    assert events == [(idp_server, "success")]


@pytest.mark.parametrize("path", ["/missing", "/moved"])
async def test_default_fetch_refuses_errors_and_unsafe_redirects(
    idp_server: str, path: str
) -> None:
    with pytest.raises(FetchError):
        await fetch_url(idp_server + path, 2.0)


async def test_default_fetch_refuses_plain_http_to_other_hosts() -> None:
    with pytest.raises(FetchError):
        await fetch_url("http://keys.example.test/jwks.json", 1.0)


async def test_default_fetch_times_out_against_a_server_that_never_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        started = time.monotonic()
        with pytest.raises(FetchError):
            await fetch_url(url, 0.3)
        assert time.monotonic() - started < 2.0
