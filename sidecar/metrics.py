"""Prometheus metrics, built against an injected registry (tests use a fresh one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar import __version__

CHECK_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)


class Metrics:
    """The metrics of product.md section 7 and a few more; label values are bounded by design."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "assets_authz_decisions_total", "Check decisions.",
            ["result", "reason", "auth_type"], registry=r,
        )
        self.check_duration = Histogram(
            "assets_authz_check_duration_seconds", "Time to answer one Check.",
            ["result"], buckets=CHECK_BUCKETS, registry=r,
        )
        self.auth_attempts = Counter(
            "assets_authz_auth_attempts_total", "Layer-1 authentication attempts.",
            ["kind", "result"], registry=r,
        )
        self.jwks_fetches = Counter(
            "assets_authz_jwks_fetches_total", "JWKS fetches.", ["issuer", "result"], registry=r
        )
        self.jwks_keys = Gauge(
            "assets_authz_jwks_keys", "Usable keys in the JWKS cache.", ["issuer"], registry=r
        )
        self.jwks_age = Gauge(
            "assets_authz_jwks_last_success_age_seconds",
            "Seconds since the last successful JWKS fetch.", ["issuer"], registry=r,
        )
        self.jwks_stale_served = Counter(
            "assets_authz_jwks_stale_served_total",
            "Key look-ups answered from the last good keys while the latest fetch had failed.",
            ["issuer"], registry=r,
        )
        self.reloads = Counter(
            "assets_authz_reloads_total", "Reloads of config, policy and store snapshot.",
            ["what", "result"], registry=r,
        )
        self.store_snapshot_age = Gauge(
            "assets_authz_store_snapshot_age_seconds",
            "Seconds since the store last confirmed the serving snapshot current (+Inf: never).",
            registry=r,
        )
        self.connect_secrets_unavailable = Gauge(
            "assets_authz_connect_secrets_unavailable",
            "Connect installations whose shared secret cannot be read.", registry=r,
        )
        self.config_generation = Gauge(
            "assets_authz_config_generation", "Configuration generation in use.", registry=r
        )
        self.cache_requests = Counter(
            "assets_authz_cache_requests_total", "Cache look-ups.", ["cache", "result"], registry=r
        )
        self.dry_run = Gauge(
            "assets_authz_dry_run", "1 when dry-run mode is on.", registry=r
        )
        self.build_info = Gauge(
            "assets_authz_build_info", "Build information.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        for result in ("allow", "deny"):
            self.check_duration.labels(result=result)
        for what in ("config", "policy", "store"):
            for result in ("success", "failure"):
                self.reloads.labels(what=what, result=result)
