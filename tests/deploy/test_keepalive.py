"""The sidecar Envoy configs ping the sidecar, and never faster than the sidecar accepts pings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.server import GRPC_SERVER_OPTIONS
from sidecar.testing.envoy import render_demo_config

from .test_envoy_validate import CONFIGS, _cluster

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
SIDECAR_CONFIGS = ["production", "demo template", "kubernetes configmap", "front proxy"]


def keepalive(config: dict[str, Any]) -> dict[str, str]:
    authz = _cluster(config, "assets_authz")
    http2 = authz["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"][
        "http2_protocol_options"
    ]
    settings: dict[str, str] = http2["connection_keepalive"]
    return settings


def seconds(duration: str) -> float:
    assert duration.endswith("s") and not duration.endswith("ms"), duration
    return float(duration[:-1])


@pytest.mark.parametrize("name", SIDECAR_CONFIGS)
def test_authz_cluster_keepalive_is_accepted_by_the_sidecar(name: str) -> None:
    settings = keepalive(yaml.safe_load(CONFIGS[name]()))
    options = dict(GRPC_SERVER_OPTIONS)
    floor = options["grpc.http2.min_recv_ping_interval_without_data_ms"] / 1000
    assert seconds(settings["interval"]) >= floor
    assert 0 < seconds(settings["timeout"]) < seconds(settings["interval"])
    # Pings between Checks are the normal case, and an early one must not end the connection.
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_ping_strikes"] == 0


def test_render_can_shorten_the_keepalive_interval_only() -> None:
    default = yaml.safe_load(render_demo_config(1, 2, 3, 4))
    short = yaml.safe_load(render_demo_config(1, 2, 3, 4, keepalive_interval_seconds=1.5))
    assert keepalive(short) == {**keepalive(default), "interval": "1.5s"}
    keepalive(short)["interval"] = keepalive(default)["interval"]
    assert short == default
    with pytest.raises(ValueError, match="not positive"):
        render_demo_config(1, 2, 3, 4, keepalive_interval_seconds=0)
