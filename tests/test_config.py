"""Configuration: typed, validated once, every problem reported with its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ConfigError, load_config, parse_config

MINIMAL: dict[str, Any] = {
    "listen": {"grpc": "127.0.0.1:9191", "http": "127.0.0.1:9192"},
    "store": "sqlite:///state.db",
}


def with_(**extra: Any) -> dict[str, Any]:
    return {**MINIMAL, **extra}


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL, base=tmp_path)
    assert cfg.store_path == tmp_path / "state.db"
    assert cfg.store_stale_max_seconds == 300
    assert cfg.api.outside_base_paths == "deny"
    assert cfg.api.imports_info_path == "/jsm/assets/v1/imports/info"
    assert cfg.connect.enabled and cfg.api_tokens_enabled and cfg.container_tokens_enabled
    assert cfg.response.header_prefix == "x-assets-" and cfg.response.remove_authorization
    assert cfg.dry_run is False and cfg.oauth.issuers == ()


def test_absolute_sqlite_url(tmp_path: Path) -> None:
    cfg = parse_config(with_(store="sqlite:////var/lib/x/state.db"), base=tmp_path)
    assert cfg.store_path == Path("/var/lib/x/state.db")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (with_(surprise=1), "surprise: unknown key"),
        (with_(listen={"grpc": "127.0.0.1:9191"}), "listen.http: is required"),
        ({"store": "sqlite:///x.db"}, "listen: is required"),
        (with_(listen={"grpc": "nope", "http": "127.0.0.1:1"}), "listen.grpc: invalid value"),
        (
            with_(listen={**MINIMAL["listen"], "explain": "0.0.0.0:9"}),
            "listen.explain: must be a loopback",
        ),
        (
            with_(listen={"grpc": "127.0.0.1:9191", "http": "127.0.0.1:9191"}),
            "listen.http: 127.0.0.1:9191 is also listen.grpc",
        ),
        (
            with_(listen={"grpc": "0.0.0.0:9191", "http": "127.0.0.1:9192",
                          "explain": "127.0.0.1:9191"}),
            "listen.explain: 127.0.0.1:9191 is also listen.grpc",
        ),
        (with_(store="mysql://x"), "store: unsupported store URL"),
        (with_(store="postgresql://u@h/db"), "store: postgresql stores are not supported"),
        (with_(log={"allow_sample_rate": 2}), "log.allow_sample_rate"),
        (with_(api={"outside_base_paths": "maybe"}), "api.outside_base_paths: invalid value"),
        (with_(api={"base_paths": ["/a/v1"]}), "api.base_paths[0]: must contain {workspaceId}"),
        (with_(api={"base_paths": ["/a/{workspaceId}/"]}), "api.base_paths[0]: must start"),
        (with_(oauth={"issuers": [{"issuer": "https://i"}]}), "needs jwks_uri or discovery"),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "http://example.test/j"}]}),
            "jwks_uri: must be https",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j",
                                      "algorithms": ["HS256"]}]}),
            "'HS256' not allowed",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j",
                                      "algorithms": ["none"]}]}),
            "'none' not allowed",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j",
                                      "jwks_refresh_seconds": 600, "jwks_stale_max_seconds": 60}]}),
            "jwks_stale_max_seconds: must be at least",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j"},
                                     {"issuer": "https://i", "jwks_uri": "https://i/k"}]}),
            "oauth.issuers[1].issuer: duplicate",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j",
                                      "jwks_refresh_seconds": 0}]}),
            "oauth.issuers[0].jwks_refresh_seconds: must be at least 1",
        ),
        (
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": "https://i/j",
                                      "unknown_kid_refetch_seconds": 0}]}),
            "oauth.issuers[0].unknown_kid_refetch_seconds: must be at least 0.1",
        ),
        (with_(connect={"leeway_seconds": -1}), "connect.leeway_seconds: invalid value"),
        (with_(connect={"qsh_strip_prefixes": ["jira"]}), "connect.qsh_strip_prefixes[0]"),
        (with_(api_tokens={"enabled": "yes"}), "api_tokens.enabled: invalid value"),
        (with_(dry_run="true"), "dry_run: invalid value"),
        (with_(policy_file="missing.yaml"), "policy_file:"),
    ],
)
def test_problems_name_their_key(data: dict[str, Any], problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, base=tmp_path)
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"a": 1, "b": 2, "store": 3}, base=tmp_path)
    assert len(exc.value.problems) >= 4


def test_loopback_http_jwks_is_accepted(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "127.5.6.7", "localhost", "[::1]"):
        cfg = parse_config(
            with_(oauth={"issuers": [{"issuer": "https://i", "jwks_uri": f"http://{host}:1/j"}]}),
            base=tmp_path,
        )
        assert cfg.oauth.issuers[0].jwks_uri.startswith("http://")


def test_load_config_reports_yaml_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listen:\n  grpc: [\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems[0].startswith("line ")
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("nested", [False, True])
def test_a_key_given_twice_is_refused_not_silently_overridden(tmp_path: Path, nested: bool) -> None:
    path = tmp_path / "c.yaml"
    text = "listen: {grpc: '127.0.0.1:1', http: '127.0.0.1:2'}\nstore: sqlite:///s.db\n"
    text += ("log:\n  allow_sample_rate: 0.5\n  allow_sample_rate: 1\n" if nested
             else "dry_run: false\ndry_run: true\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    key = "allow_sample_rate" if nested else "dry_run"
    assert exc.value.problems == [f"line {5 if nested else 4}: duplicate key {key!r}"]


@pytest.mark.parametrize("content", [b"\xff\xfe", b"listen: {grpc: '127.0.0.1:1'}\n\xff"])
def test_load_config_refuses_non_utf8(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "not valid UTF-8" in exc.value.problems[0]


def test_load_config_resolves_relative_store(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir()
    path.write_text("listen: {grpc: '127.0.0.1:1', http: '127.0.0.1:2'}\nstore: sqlite:///../s.db\n")
    cfg = load_config(path)
    assert cfg.store_path == tmp_path / "s.db"
    assert cfg.path == path


def test_an_issuer_without_audiences_is_valid_but_warned_about(tmp_path: Path) -> None:
    from sidecar.config import config_warnings

    issuers = [{"issuer": "https://a", "jwks_uri": "https://a/j", "audiences": ["api"]},
               {"issuer": "https://b", "jwks_uri": "https://b/j"}]
    config = parse_config(with_(oauth={"issuers": issuers}), base=tmp_path)
    (warning,) = config_warnings(config)
    assert warning.startswith("oauth.issuers[1] (https://b): no audiences")
    assert config_warnings(parse_config(MINIMAL, base=tmp_path)) == []


def test_listeners_on_port_zero_or_other_hosts_do_not_collide(tmp_path: Path) -> None:
    for listen in ({"grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "explain": "127.0.0.1:0"},
                   {"grpc": "127.0.0.2:9191", "http": "127.0.0.1:9191"}):
        assert parse_config(with_(listen=listen), base=tmp_path).listen.grpc == listen["grpc"]
