"""The Envoy configurations validate with the real binary and keep the settings we rely on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.testing.envoy import DEMO_TEMPLATE, find_envoy, render_demo_config

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "deploy" / "envoy" / "envoy.yaml"
FRONT_PROXY = REPO / "deploy" / "envoy" / "front-proxy.yaml"
K8S_ENVOY = REPO / "deploy" / "kubernetes" / "configmap-envoy.yaml"
EXT_AUTHZ = "envoy.filters.http.ext_authz"


def validate(config_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.yaml"
    path.write_text(config_text, encoding="utf-8")
    return subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path),
         "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def k8s_envoy_text() -> str:
    doc = yaml.safe_load(K8S_ENVOY.read_text(encoding="utf-8"))
    text: str = doc["data"]["envoy.yaml"]
    return text


CONFIGS = {
    "production": lambda: PRODUCTION.read_text(encoding="utf-8"),
    "demo template": lambda: render_demo_config(10000, 10001, 10002, 10003),
    "kubernetes configmap": k8s_envoy_text,
    "front proxy": lambda: FRONT_PROXY.read_text(encoding="utf-8"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_envoy_validates(name: str, tmp_path: Path) -> None:
    result = validate(CONFIGS[name](), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_front_proxy_is_the_first_hop_and_buffers_bodies_only_where_needed() -> None:
    config = yaml.safe_load(FRONT_PROXY.read_text())
    hcm = _hcm(config)
    assert hcm["use_remote_address"] is True and hcm["xff_num_trusted_hops"] == 0
    assert hcm["preserve_external_request_id"] is False
    ext = _ext_authz(config)
    assert ext["failure_mode_allow"] is False and ext["status_on_error"] == {"code": 503}
    assert body_routes_match_the_operations_that_read_the_body(body_routes(config))
    (upstream,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "assets_api"]
    tls = upstream["transport_socket"]["typed_config"]
    assert tls["sni"] == "assets-api.internal"
    (san,) = tls["common_tls_context"]["combined_validation_context"][
        "default_validation_context"]["match_typed_subject_alt_names"]
    assert san["matcher"] == {"exact": tls["sni"]}


def test_every_envoy_config_in_deploy_is_validated() -> None:
    """A new Envoy config under deploy/ cannot slip past `envoy --mode validate`."""
    found = {
        path.relative_to(REPO).as_posix() for path in (REPO / "deploy").rglob("*.y*ml")
        if "static_resources" in path.read_text(encoding="utf-8")
    }
    assert found == {
        "deploy/envoy/envoy.yaml", "deploy/envoy/front-proxy.yaml",
        "deploy/kubernetes/configmap-envoy.yaml",
    }
    assert len(CONFIGS) == len(found) + 1  # and the demo template


BODY = {"max_request_bytes": 65536, "allow_partial_message": True, "pack_as_bytes": True}


def body_routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The routes that buffer the body for the check: the filter buffers it, every other route
    turns that off (per-route `with_request_body` alone does not buffer in Envoy 1.40)."""
    assert _ext_authz(config)["with_request_body"] == BODY
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    buffered = []
    for route in routes:
        per_route = route.get("typed_per_filter_config", {}).get(EXT_AUTHZ)
        if per_route is None:
            buffered.append(route)
        else:
            assert per_route["check_settings"] == {"disable_request_body_buffering": True}
    return buffered


def body_routes_match_the_operations_that_read_the_body(routes: list[dict[str, Any]]) -> bool:
    """The routes' path regexes and method matches select exactly the body-target operations."""
    from sidecar.operations.table import ROUTES, TargetKind

    matchers = []
    for route in routes:
        (method,) = [h for h in route["match"]["headers"] if h["name"] == ":method"]
        matchers.append((re.compile(route["match"]["safe_regex"]["regex"]),
                         re.compile(method["string_match"]["safe_regex"]["regex"])))
    body_kinds = {TargetKind.BODY_TYPE, TargetKind.BODY_SCHEMA, TargetKind.CONFIG_WRITE}
    checked = 0
    for prefix in ("/jsm/assets/workspace/ws-1/v1", "/gateway/api/jsm/assets/workspace/w/v1"):
        for spec in ROUTES:
            path = prefix + re.sub(r"\{\w*\}", "42", spec.pattern).replace("/**", "/x")
            methods = ["GET", "POST", "PUT", "DELETE"] if spec.method == "*" else [spec.method]
            for m in methods:
                buffered = any(p.fullmatch(path) and mr.fullmatch(m) for p, mr in matchers)
                assert buffered == (spec.operation.target in body_kinds), (m, path)
                checked += buffered
    return checked == 2 * 5


def test_validation_catches_a_broken_config(tmp_path: Path) -> None:
    broken = render_demo_config(10000, 10001, 10002, 10003).replace(
        "failure_mode_allow: false", "failure_mode_allows: false"
    )
    result = validate(broken, tmp_path)
    assert result.returncode != 0
    assert "failure_mode_allows" in result.stdout + result.stderr


def test_kubernetes_configmap_embeds_the_production_config() -> None:
    assert yaml.safe_load(k8s_envoy_text()) == yaml.safe_load(PRODUCTION.read_text()), (
        "deploy/kubernetes/configmap-envoy.yaml drifted from deploy/envoy/envoy.yaml"
    )


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    typed: dict[str, Any] = hcm["typed_config"]
    return typed


def _ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    filters = _hcm(config)["http_filters"]
    assert filters[0]["name"] == EXT_AUTHZ, "ext_authz must run first"
    assert filters[-1]["name"] == "envoy.filters.http.router"
    typed: dict[str, Any] = filters[0]["typed_config"]
    return typed


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == name
    )
    return found


PARSED = {
    "production": (lambda: yaml.safe_load(PRODUCTION.read_text()), "0.25s"),
    "demo template": (lambda: yaml.safe_load(render_demo_config(1, 2, 3, 4)), "1s"),
}


@pytest.mark.parametrize("name", list(PARSED))
def test_ext_authz_fails_closed_with_body_and_health_checks(name: str) -> None:
    load, timeout = PARSED[name]
    config = load()
    ext = _ext_authz(config)
    assert ext["transport_api_version"] == "V3"
    assert ext["grpc_service"] == {
        "envoy_grpc": {"cluster_name": "assets_authz"}, "timeout": timeout,
    }
    assert ext["failure_mode_allow"] is False
    assert ext["status_on_error"] == {"code": 503}
    assert body_routes_match_the_operations_that_read_the_body(body_routes(config))
    assert ext["include_peer_certificate"] is True
    assert ext.get("clear_route_cache", False) is False

    hcm = _hcm(config)
    assert hcm["normalize_path"] is False and hcm["merge_slashes"] is False
    assert hcm["path_with_escaped_slashes_action"] == "KEEP_UNCHANGED"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == (
        "REJECT_REQUEST"
    )

    authz = _cluster(config, "assets_authz")
    options = authz["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    (check,) = authz["health_checks"]
    assert check["grpc_health_check"] == {"service_name": "envoy.service.auth.v3.Authorization"}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_no_route_skips_the_check() -> None:
    for load, _ in PARSED.values():
        routes = _hcm(load())["route_config"]["virtual_hosts"][0]["routes"]
        for route in routes:
            per_filter = route.get("typed_per_filter_config", {}).get(EXT_AUTHZ, {})
            assert not per_filter.get("disabled"), route


def test_access_log_reads_the_ext_authz_metadata_namespace() -> None:
    hcm = _hcm(yaml.safe_load(PRODUCTION.read_text()))
    (log,) = hcm["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    authz_fields = [v for v in fields.values() if f"DYNAMIC_METADATA({EXT_AUTHZ}:" in v]
    assert len(authz_fields) >= 5
    assert "decision_id" in " ".join(authz_fields)
    # NQ = without the query string, which may hold a Connect token (`?jwt=`).
    assert fields["path"] == "%PATH(NQ)%"
    assert all("%REQ(:PATH)%" not in v for v in fields.values())


def test_demo_template_routes() -> None:
    text = render_demo_config(11, 12, 13, 14)
    assert "${" not in text
    config = yaml.safe_load(text)
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    body = body_routes(config)
    direct, by_header, catch_all = [r for r in routes if r not in body]
    assert routes.index(by_header) > max(map(routes.index, body))  # body routes come first
    twins = [r for r in body if {"name": "x-bench-direct", "present_match": True}
             in r["match"]["headers"]]
    assert len(twins) * 2 == len(body)
    assert all(r["direct_response"] == direct["direct_response"] for r in twins)
    assert all(r["route"] == catch_all["route"] for r in body if r not in twins)
    assert direct["match"] == {"path": "/bench/direct"}
    assert by_header["match"] == {
        "prefix": "/", "headers": [{"name": "x-bench-direct", "present_match": True}],
    }
    assert direct["direct_response"] == by_header["direct_response"]
    assert direct["direct_response"]["status"] == 200
    assert catch_all["match"] == {"prefix": "/"}
    assert catch_all["route"] == {"cluster": "upstream", "timeout": "10s"}
    ports = {
        "listen": config["static_resources"]["listeners"][0]["address"],
        "admin": config["admin"]["address"],
        "authz": _cluster(config, "assets_authz")["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"],
        "upstream": _cluster(config, "upstream")["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"],
    }
    assert {k: v["socket_address"]["port_value"] for k, v in ports.items()} == {
        "listen": 11, "admin": 12, "authz": 13, "upstream": 14,
    }
    assert {v["socket_address"]["address"] for v in ports.values()} == {"127.0.0.1"}


@pytest.mark.parametrize("ports", [(-1, 0, 0, 0), (0, 0, 0, 65536)])
def test_render_refuses_bad_ports(ports: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="not a TCP port"):
        render_demo_config(*ports)


def test_template_placeholders_are_exactly_the_four_ports() -> None:
    names = set(re.findall(r"\$\{(\w+)\}", DEMO_TEMPLATE.read_text()))
    assert names == {"LISTEN_PORT", "ADMIN_PORT", "AUTHZ_PORT", "UPSTREAM_PORT"}
