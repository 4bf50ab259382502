"""Envoy's HTTP/2 connection to the sidecar lives through keepalive pings and idle gaps.

Envoy pings the ext_authz connection every `connection_keepalive.interval`, busy or idle. With
gRPC core's default ping policy the sidecar answered GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)
in the first idle gap: Envoy counted `upstream_cx_close_notify` and opened a new connection
after every gap (and a Check in flight when the GOAWAY lands is failed). Here Envoy pings every
second through two 5 s gaps (the old policy sent its GOAWAY at the 4th ping of a gap, at most
4.6 s in) and its own cluster stats must show one connection, never closed, every Check
answered. Without the keepalive entries of GRPC_SERVER_OPTIONS this test fails with
`upstream_cx_close_notify: 2, upstream_cx_destroy: 2` and `upstream_cx_total: 3`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from sidecar.testing.envoy import AUTHZ_CLUSTER, EnvoyProcess, render_demo_config
from sidecar.testing.running import SidecarThread

from ..world import World
from .cases import BASE, Case, identity, run_case
from .client import Gateway

PING_SECONDS = 1.0
IDLE_SECONDS = 5.0  # 4 pings take at most 4.6 s (Envoy adds up to 15 % jitter to each)
PING_ACK_BYTES = 17  # HTTP/2 PING ACK frame: 9-byte header + 8-byte payload
CLUSTER = f"cluster.{AUTHZ_CLUSTER}."

ALLOW = Case("allowed", "GET", f"{BASE}/object/88", lambda w: w.basic("acc-ann"),
             identity=identity("api-token", "user", account="acc-ann", role="manager"))
DENY = Case("denied", "GET", f"{BASE}/object/88", status=401, reason="missing_credential")


@pytest.fixture
def pinging_envoy(sidecar: SidecarThread, echo_upstream: int) -> Iterator[EnvoyProcess]:
    """One worker (one ext_authz connection pool) pinging the sidecar every second."""
    config = render_demo_config(
        0, 0, sidecar.serving.grpc_port, echo_upstream, keepalive_interval_seconds=PING_SECONDS
    )
    with EnvoyProcess(config, concurrency=1) as envoy:
        yield envoy


def cluster_stats(envoy: EnvoyProcess) -> dict[str, int]:
    return {
        name.removeprefix(CLUSTER): value
        for name, value in envoy.stats("^" + re.escape(CLUSTER)).items()
    }


def test_keepalive_pings_and_idle_gaps_never_close_the_connection(
    pinging_envoy: EnvoyProcess, world: World
) -> None:
    gateway = Gateway(pinging_envoy.listener_port())
    sent = 0

    def burst(count: int, pause: float = 0.0) -> None:
        nonlocal sent
        for i in range(count):
            run_case(gateway, world, ALLOW if i % 2 == 0 else DENY)
            sent += 1
            time.sleep(pause)

    def idle() -> None:
        before = cluster_stats(pinging_envoy)
        time.sleep(IDLE_SECONDS)
        after = cluster_stats(pinging_envoy)
        assert after["upstream_rq_total"] == before["upstream_rq_total"], "not idle"
        # Only PING ACKs arrive on an idle connection (health checks use their own): the
        # sidecar did answer Envoy's pings, so the test is not passing for want of them.
        acked = after["upstream_cx_rx_bytes_total"] - before["upstream_cx_rx_bytes_total"]
        assert acked >= 3 * PING_ACK_BYTES, f"only {acked} bytes in {IDLE_SECONDS} s idle"

    burst(20)
    idle()
    burst(10, pause=0.25)  # Checks in flight while pings arrive
    idle()
    burst(20)

    stats = cluster_stats(pinging_envoy)
    problems = {
        name: stats[name]
        for name in (
            "upstream_cx_close_notify",  # GOAWAY (or `connection: close`) from the sidecar
            "upstream_cx_destroy",  # any close, by either side
            "upstream_cx_destroy_remote",
            "upstream_cx_destroy_with_active_rq",
            "upstream_cx_protocol_error",
            "http2.keepalive_timeout",  # a ping went unanswered
            "http2.rx_reset",
            "http2.tx_reset",
            "upstream_rq_rx_reset",
            "upstream_rq_tx_reset",
            "upstream_rq_timeout",
            "upstream_rq_cancelled",
        )
        if stats[name]
    }
    connections = {k: stats[k] for k in ("upstream_cx_total", "upstream_cx_active")}
    assert problems == {}, f"{problems} {connections}"
    assert connections == {"upstream_cx_total": 1, "upstream_cx_active": 1}
    assert stats["upstream_rq_total"] == stats["upstream_rq_completed"] == sent, stats
    assert stats["internal.upstream_rq_200"] == sent, stats
    authz = pinging_envoy.stats(r"^http\.demo\.ext_authz\.")
    assert authz["http.demo.ext_authz.ok"] + authz["http.demo.ext_authz.denied"] == sent, authz
    assert authz["http.demo.ext_authz.error"] == 0, authz
    assert authz["http.demo.ext_authz.failure_mode_allowed"] == 0, authz
