"""The live state behind `serve`: config, store snapshot, JWKS caches, secrets and the Engine.

Everything here is I/O at the edge: background refreshers and reloads. The decision core reads
only the immutable values this module hands it (the Engine of the current generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sidecar.authn.api_token import ApiTokenAuthenticator
from sidecar.authn.base import Authenticator
from sidecar.authn.connect import ConnectAuthenticator
from sidecar.authn.container_token import ContainerTokenAuthenticator
from sidecar.authn.credentials import CredentialKind
from sidecar.authn.jwks import JwksCache
from sidecar.authn.oauth import OAuthAuthenticator
from sidecar.authn.secrets import SecretSource
from sidecar.config import Config, ConfigError, load_config
from sidecar.metrics import Metrics
from sidecar.pipeline import Engine
from sidecar.resolver import TargetResolver
from sidecar.store.policy import PolicyError
from sidecar.store.refresher import PolicyFileApplier, SnapshotSource
from sidecar.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

WATCH_INTERVAL_SECONDS = 1.0


def _announce_dry_run_change(old: Config, new: Config) -> None:
    """A reload that turns dry run on (or off) says so as loudly as a start in dry run."""
    if new.dry_run and not old.dry_run:
        log.warning("DRY RUN turned on by a reload: every decision is logged and counted, but "
                    "all requests are allowed")
    elif old.dry_run and not new.dry_run:
        log.warning("dry run turned off by a reload")


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


class Runtime:
    """Owns the background work and swaps in a new Engine whenever config changes."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 1.0,
    ) -> None:
        assert config.store_path is not None
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.generation = 1
        self.store = SqliteStore(config.store_path)
        self.snapshots = SnapshotSource(
            self.store,
            stale_max_seconds=config.store_stale_max_seconds,
            poll_seconds=poll_seconds,
            on_reload=lambda result: metrics.reloads.labels(what="store", result=result).inc(),
        )
        self.secrets = SecretSource()
        self.jwks: dict[str, JwksCache] = {}
        self._jwks_tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._config_mtime = _mtime(config.path)
        self._policy: PolicyFileApplier | None = None
        self._policy_problem: str | None = None  # why the last apply of policy_file failed
        self._secrets_generation = -1
        self._sync_jwks(config)
        self.engine = self._build_engine(config)
        metrics.config_generation.set(self.generation)
        metrics.dry_run.set(1 if config.dry_run else 0)

    # -- construction -------------------------------------------------------------------------

    def _on_fetch(self, issuer: str, result: str) -> None:
        self.metrics.jwks_fetches.labels(issuer=issuer, result=result).inc()

    def _on_stale(self, issuer: str) -> None:
        self.metrics.jwks_stale_served.labels(issuer=issuer).inc()

    def _sync_jwks(self, config: Config) -> None:
        """Keep caches of unchanged issuers; make new ones for new or changed issuers."""
        wanted = {iss.issuer: iss for iss in config.oauth.issuers}
        for name in list(self.jwks):
            if name not in wanted or self.jwks[name].settings != wanted[name]:
                self.jwks.pop(name)
                task = self._jwks_tasks.pop(name, None)
                if task:
                    task.cancel()
                for gauge in (self.metrics.jwks_keys, self.metrics.jwks_age):
                    with contextlib.suppress(KeyError):
                        gauge.remove(name)
        for name, iss in wanted.items():
            if name not in self.jwks:
                self.jwks[name] = JwksCache(iss, on_fetch=self._on_fetch, on_stale=self._on_stale)
                # Created at zero, so increase() sees the first stale look-up.
                self.metrics.jwks_stale_served.labels(issuer=name)

    def _build_engine(self, config: Config) -> Engine:
        authenticators: dict[CredentialKind, Authenticator] = {
            CredentialKind.OAUTH_JWT: OAuthAuthenticator(
                config.oauth.issuers,
                self.jwks,
                on_cache=lambda result: self.metrics.cache_requests.labels(
                    cache="oauth_verified", result=result
                ).inc(),
            ),
            CredentialKind.CONNECT: ConnectAuthenticator(config.connect, self.secrets),
            CredentialKind.BASIC: ApiTokenAuthenticator(),
            CredentialKind.CONTAINER: ContainerTokenAuthenticator(),
        }
        resolver = None
        if config.resolver.url:
            resolver = TargetResolver(
                config.resolver,
                clock=time.monotonic,
                on_cache=lambda result: self.metrics.cache_requests.labels(
                    cache="resolver", result=result
                ).inc(),
            )
        return Engine(
            config=config,
            authenticators=authenticators,
            snapshots=self.snapshots.current,
            resolver=resolver,
            metrics=self.metrics,
            clock=self.clock,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, apply the policy file, fetch keys, start the refreshers."""
        if self.config.policy_file is not None:
            await self._apply_policy_file(self.config.policy_file)
        await self.prime()
        self._start_jwks_tasks()
        self._tasks.append(asyncio.create_task(self.snapshots.run(self._stop)))
        self._tasks.append(asyncio.create_task(self._watch()))

    async def prime(self) -> None:
        """Load the snapshot, read Connect secrets and fetch every issuer's keys once."""
        await self.snapshots.refresh()
        await self._sync_secrets(force=True)
        if self.jwks:
            await asyncio.gather(
                *(asyncio.wait_for(c.refresh(), 10) for c in self.jwks.values()),
                return_exceptions=True,
            )
        self._update_gauges()

    def _start_jwks_tasks(self) -> None:
        for name, cache in self.jwks.items():
            if name not in self._jwks_tasks:
                self._jwks_tasks[name] = asyncio.create_task(cache.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        tasks = [*self._tasks, *self._jwks_tasks.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- reloads ------------------------------------------------------------------------------

    async def reload_config(self) -> bool:
        """Re-read the config file; an invalid file is rejected and the old one keeps serving."""
        path = self.config.path
        if path is None:
            return False
        # Remember what is being read, so the watcher does not load the same edit again after
        # a SIGHUP (and an edit made while loading is still seen on its next tick).
        self._config_mtime = _mtime(path)
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            self.metrics.reloads.labels(what="config", result="failure").inc()
            log.error("config reload rejected",
                      extra={"fields": {"file": exc.source, "problems": exc.problems}})
            return False
        except Exception:
            self.metrics.reloads.labels(what="config", result="failure").inc()
            log.exception("config reload failed; the previous configuration keeps serving")
            return False
        if new.listen != self.config.listen or new.store != self.config.store:
            log.warning(
                "config changes to listen/store need a restart; they are ignored until then"
            )
            new = replace(new, listen=self.config.listen, store=self.config.store,
                          store_path=self.config.store_path)
        self._sync_jwks(new)
        fresh = [c for n, c in self.jwks.items() if n not in self._jwks_tasks]
        if fresh:
            await asyncio.gather(
                *(asyncio.wait_for(c.refresh(), 10) for c in fresh), return_exceptions=True
            )
        self._start_jwks_tasks()
        self.snapshots.stale_max_seconds = new.store_stale_max_seconds
        _announce_dry_run_change(self.config, new)
        self.config = new
        self.engine = self._build_engine(new)
        self.generation += 1
        self.metrics.config_generation.set(self.generation)
        self.metrics.dry_run.set(1 if new.dry_run else 0)
        self.metrics.reloads.labels(what="config", result="success").inc()
        await self._sync_secrets(force=True)
        if new.policy_file is not None:
            await self._apply_policy_file(new.policy_file)
        log.info("config reloaded", extra={"fields": {"generation": self.generation}})
        return True

    async def _apply_policy_file(self, path: Path, *, only_if_changed: bool = False) -> bool:
        """Apply the config's policy file (also its bulk files) like `apply`; count the result."""
        if self._policy is None or self._policy.path != path:
            self._policy = PolicyFileApplier(self.store, path)
        if only_if_changed and not self._policy.changed():
            return True
        try:
            changes = await asyncio.to_thread(self._policy.apply)
        except PolicyError as exc:
            self.metrics.reloads.labels(what="policy", result="failure").inc()
            log.error("policy file rejected",
                      extra={"fields": {"file": exc.source, "problems": exc.problems}})
            self._policy_problem = f"rejected: {exc.problems[0][:200]}" if exc.problems else (
                "rejected")
            return False
        except Exception as exc:
            self.metrics.reloads.labels(what="policy", result="failure").inc()
            log.exception("policy file could not be applied")
            self._policy_problem = f"could not be applied: {type(exc).__name__}"
            return False
        self._policy_problem = None
        self.metrics.reloads.labels(what="policy", result="success").inc()
        if changes:
            log.info("policy applied", extra={"fields": {"changes": len(changes)}})
            await self.snapshots.refresh()
        return True

    async def _sync_secrets(self, *, force: bool = False) -> None:
        """Re-read Connect secrets when the installations may have changed (or on demand)."""
        snap = self.snapshots.latest
        if snap is None:
            return
        if force or snap.generation != self._secrets_generation:
            self._secrets_generation = snap.generation
            await self.secrets.reload_async(snap.installations.values())

    def _uses_secret_files(self) -> bool:
        snap = self.snapshots.latest
        return snap is not None and any(
            i.shared_secret_file for i in snap.installations.values()
        )

    async def _watch(self) -> None:
        """Poll the config and policy files for changes; keep secrets in step with the store."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WATCH_INTERVAL_SECONDS)
            if self._stop.is_set():
                return
            try:
                mtime = _mtime(self.config.path)
                if mtime is None and self._config_mtime is not None:
                    self._config_mtime = None  # reloaded when it comes back
                    self.metrics.reloads.labels(what="config", result="failure").inc()
                    log.error("config file is gone; the loaded configuration keeps serving",
                              extra={"fields": {"path": str(self.config.path)}})
                elif mtime is not None and mtime != self._config_mtime:
                    self._config_mtime = mtime
                    await self.reload_config()
                policy = self.config.policy_file
                if policy is not None:
                    await self._apply_policy_file(policy, only_if_changed=True)
                # Secret files are re-read every tick, so a rotated (e.g. remounted Kubernetes)
                # secret takes effect within a second; env vars cannot change under a process.
                await self._sync_secrets(force=self._uses_secret_files())
            except Exception:
                log.exception("watcher iteration failed")
            try:  # apart, so the gauges keep moving even when the steps above fail
                self._update_gauges()
            except Exception:
                log.exception("updating the gauges failed")

    def _update_gauges(self) -> None:
        """The gauges read from live state: JWKS keys and ages, store age, Connect secrets."""
        self._update_jwks_gauges()
        # +Inf until the store first answers; the same clock `ready()` compares with its bound.
        self.metrics.store_snapshot_age.set(self.snapshots.stale_for())
        self.metrics.connect_secrets_unavailable.set(len(self.secrets.problems()))

    def _update_jwks_gauges(self) -> None:
        for name, cache in self.jwks.items():
            self.metrics.jwks_keys.labels(issuer=name).set(cache.key_count)
            age = cache.last_success_age
            if age is not None:
                self.metrics.jwks_age.labels(issuer=name).set(age)

    # -- health -------------------------------------------------------------------------------

    def serving_problems(self) -> list[str]:
        """What stops every decision (the store); drives the Authorization service's health.

        A missing Connect secret or an issuer without keys only fails its own credentials, so it
        shows in /readyz and the metrics but does not take every replica out of service.
        """
        if not self.snapshots.ready():
            return ["store: no current snapshot (unreachable or too stale)"]
        snap = self.snapshots.latest
        if self._policy_problem is not None and (snap is None or not snap.schemas):
            # A new replica whose policy_file is invalid would only deny (unknown_target):
            # keep it out of service rather than let it look healthy.
            return [f"policy: policy_file never applied to this store ({self._policy_problem})"]
        return []

    def readiness(self) -> list[str]:
        """What is not ready (empty list = ready); names parts, never secrets."""
        problems = self.serving_problems()
        if self._policy_problem is not None and not problems:
            problems.append(f"policy: the last apply of policy_file {self._policy_problem}; "
                            "the store keeps the policy it had")
        for name, cache in self.jwks.items():
            if not cache.ready:
                problems.append(f"oauth issuer {name}: no usable signing keys")
        for client_key, why in sorted(self.secrets.problems().items()):
            problems.append(f"connect installation {client_key}: shared secret unavailable ({why})")
        return problems
