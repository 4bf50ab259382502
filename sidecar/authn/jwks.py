"""The signing keys of one OAuth issuer: fetched, cached, refreshed and served stale within a bound.

Fetching happens at the edge (a background loop and a shared, rate-limited refetch for unseen
key ids); lookups never block longer than `unknown_kid_wait_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sidecar.config import Issuer, is_loopback_host
from sidecar.decision import Deny, Reason

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5.0  # per HTTP request (discovery and JWKS each)
FETCH_GRACE_SECONDS = 1.0  # extra time the caller allows a fetcher before abandoning it
MAX_DOCUMENT_BYTES = 1 << 20  # a JWKS or discovery document larger than this is refused
RETRY_FIRST_SECONDS = 1.0  # first retry after a failed refresh; doubles up to the cap
RETRY_MAX_SECONDS = 60.0
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"

Fetch = Callable[[str, float], Awaitable[bytes]]
OnFetch = Callable[[str, str], None]
OnStale = Callable[[str], None]

_PUBLIC_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)
_PRIVATE_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class FetchError(Exception):
    """A JWKS or discovery document could not be fetched or read (the message holds no secret)."""


def url_allowed(url: str) -> bool:
    """https anywhere; plain http only for loopback hosts (the config rule, also for redirects)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL the configuration itself would accept."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not url_allowed(newurl):
            raise FetchError(f"redirect to a disallowed URL (HTTP {code})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SafeRedirects())


def _get(url: str, timeout: float) -> bytes:
    """Blocking GET (run in a worker thread); raises FetchError on anything but a 200 body."""
    if not url_allowed(url):
        raise FetchError("URL must be https (plain http only for loopback hosts)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            body: bytes = response.read(MAX_DOCUMENT_BYTES + 1)
    except FetchError:
        raise
    except Exception as exc:  # URLError, HTTPError, timeouts, connection resets
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    if status != 200:
        raise FetchError(f"HTTP {status}")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchError("document too large")
    return body


async def fetch_url(url: str, timeout: float) -> bytes:
    """The default fetch: urllib in a worker thread, so the event loop never blocks."""
    return await asyncio.to_thread(_get, url, timeout)


def retry_delay(failures: int, refresh_seconds: float) -> float:
    """Seconds to wait after `failures` consecutive failed refreshes (exponential, capped)."""
    backoff = RETRY_FIRST_SECONDS * 2.0 ** min(max(failures - 1, 0), 16)
    return min(backoff, RETRY_MAX_SECONDS, refresh_seconds)


def parse_jwks(document: bytes) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document, by kid.

    Skipped: keys PyJWT cannot parse, keys whose `use` is not `sig`, symmetric keys, keys
    without a `kid`. Private parts, if an issuer publishes them by mistake, are never used.
    """
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise FetchError("JWKS is not JSON") from None
    raw_keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw_keys, list):
        raise FetchError("JWKS has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in raw_keys:
        key = _parse_key(raw)
        if key is not None and key.key_id is not None:
            keys[key.key_id] = key
    return keys


def _parse_key(raw: Any) -> jwt.PyJWK | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
        return None
    if raw.get("use", "sig") != "sig" or raw.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    try:
        key = jwt.PyJWK(raw)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key.key, _PRIVATE_KEY_TYPES):
        key.key = key.key.public_key()
    return key if isinstance(key.key, _PUBLIC_KEY_TYPES) else None


class JwksCache:
    """The keys of one configured issuer, shared by every request."""

    def __init__(
        self,
        issuer: Issuer,
        *,
        clock: Callable[[], float] = time.monotonic,
        fetch: Fetch | None = None,
        on_fetch: OnFetch | None = None,
        on_stale: OnStale | None = None,
    ) -> None:
        self._issuer = issuer
        self._clock = clock
        self._fetch: Fetch = fetch or fetch_url
        self._on_fetch = on_fetch
        self._on_stale = on_stale
        self._keys: dict[str, jwt.PyJWK] = {}
        self._last_success: float | None = None
        self._last_fetch_failed = False  # the most recent completed fetch failed
        self._stale_hook_failed = False
        self._last_unknown_refetch: float | None = None
        self._inflight: asyncio.Task[bool] | None = None

    @property
    def issuer(self) -> str:
        return self._issuer.issuer

    @property
    def settings(self) -> Issuer:
        """The configured issuer this cache serves."""
        return self._issuer

    @property
    def key_count(self) -> int:
        return len(self._keys)

    @property
    def last_success_age(self) -> float | None:
        """Seconds since the last good fetch, or None when none succeeded yet."""
        if self._last_success is None:
            return None
        return max(0.0, self._clock() - self._last_success)

    @property
    def ready(self) -> bool:
        """Whether there are keys to verify with (fetched, and not older than the stale bound)."""
        age = self.last_success_age
        return bool(self._keys) and age is not None and age <= self._issuer.jwks_stale_max_seconds

    async def refresh(self) -> bool:
        """Fetch once (joining a fetch already in flight); on failure keep the last good keys."""
        return await asyncio.shield(self._start_fetch())

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every `jwks_refresh_seconds`, sooner with backoff after failures, until stop."""
        failures = 0
        while not stop.is_set():
            if await self.refresh():
                failures = 0
                delay = self._issuer.jwks_refresh_seconds
            else:
                failures += 1
                delay = retry_delay(failures, self._issuer.jwks_refresh_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def key_for(self, kid: str) -> jwt.PyJWK:
        """The key with this kid, refetching once (shared, rate-limited) when it is unseen.

        Raises Deny(unknown_key) when still unknown, Deny(dependency_unavailable) when there
        are no usable keys (never fetched, or the last good ones are past the stale bound).
        A key served while the latest fetch had failed is reported to `on_stale`.
        """
        if not (self.ready and kid in self._keys):
            await self._refetch_for_lookup()
        self._require_ready()
        key = self._keys.get(kid)
        if key is None:
            raise Deny(Reason.UNKNOWN_KEY, f"no key {kid[:80]!r} in the JWKS of {self.issuer}")
        self._note_stale()
        return key

    async def sole_key(self) -> jwt.PyJWK:
        """The only key, for a token without `kid`: Deny(unknown_key) unless there is one."""
        if not self.ready:
            await self._refetch_for_lookup()
        self._require_ready()
        if len(self._keys) != 1:
            raise Deny(
                Reason.UNKNOWN_KEY,
                f"token has no kid and the JWKS of {self.issuer} has {len(self._keys)} keys",
            )
        self._note_stale()
        return next(iter(self._keys.values()))

    def _require_ready(self) -> None:
        if not self.ready:
            state = "never fetched" if self._last_success is None else "stale"
            raise Deny(Reason.DEPENDENCY_UNAVAILABLE, f"JWKS of {self.issuer} {state}")

    async def _refetch_for_lookup(self) -> None:
        """Join the fetch in flight, or start one if the rate limit allows; wait a bounded time."""
        task = self._inflight if self._inflight is not None and not self._inflight.done() else None
        if task is None:
            now = self._clock()
            last = self._last_unknown_refetch
            if last is not None and now - last < self._issuer.unknown_kid_refetch_seconds:
                return
            self._last_unknown_refetch = now
            task = self._start_fetch()
        # On timeout the fetch goes on in the background; later requests see its keys.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(task), timeout=self._issuer.unknown_kid_wait_ms / 1000
            )

    def _start_fetch(self) -> asyncio.Task[bool]:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._fetch_once())
        return self._inflight

    async def _fetch_once(self) -> bool:
        try:
            keys = parse_jwks(await self._get(await self._jwks_uri()))
            if not keys:
                raise FetchError("JWKS holds no usable signing key")
        except Exception as exc:  # any failure keeps the last good keys
            log.warning("JWKS fetch for %s failed: %s", self.issuer, str(exc)[:200])
            self._last_fetch_failed = True
            self._report("failure")
            return False
        self._keys = keys
        self._last_success = self._clock()
        self._last_fetch_failed = False
        self._report("success")
        return True

    async def _jwks_uri(self) -> str:
        if not self._issuer.discovery:
            return self._issuer.jwks_uri
        url = self._issuer.issuer.rstrip("/") + DISCOVERY_SUFFIX
        try:
            doc = json.loads(await self._get(url))
        except (ValueError, UnicodeDecodeError):
            raise FetchError("discovery document is not JSON") from None
        if not isinstance(doc, dict):
            raise FetchError("discovery document is not an object")
        if "issuer" in doc and doc["issuer"] != self._issuer.issuer:
            raise FetchError("discovery document names another issuer")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not url_allowed(jwks_uri):
            raise FetchError("discovery document has no acceptable jwks_uri")
        return jwks_uri

    async def _get(self, url: str) -> bytes:
        # The outer bound also covers injected fetchers that ignore their timeout.
        return await asyncio.wait_for(
            self._fetch(url, FETCH_TIMEOUT_SECONDS),
            timeout=FETCH_TIMEOUT_SECONDS + FETCH_GRACE_SECONDS,
        )

    def _report(self, result: str) -> None:
        if self._on_fetch is None:
            return
        try:
            self._on_fetch(self.issuer, result)
        except Exception:  # a broken metrics hook must not stop key refreshes
            log.exception("JWKS on_fetch hook failed for %s", self.issuer)

    def _note_stale(self) -> None:
        """A key is being served: tell `on_stale` when the latest fetch failed (issuer down)."""
        if not self._last_fetch_failed or self._on_stale is None:
            return
        try:
            self._on_stale(self.issuer)
        except Exception:  # a broken metrics hook must not fail a lookup, nor flood the log
            if not self._stale_hook_failed:
                self._stale_hook_failed = True
                log.exception("JWKS on_stale hook failed for %s", self.issuer)
