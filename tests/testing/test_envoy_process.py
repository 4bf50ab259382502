"""EnvoyProcess starts a real Envoy, reports its ports and stats, and cleans up after itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sidecar.testing import envoy as envoy_module
from sidecar.testing.envoy import (
    EnvoyNotFoundError,
    EnvoyProcess,
    EnvoyStartError,
    find_envoy,
    render_demo_config,
)

pytestmark = pytest.mark.e2e


def test_finds_the_venv_binary_first() -> None:
    binary = find_envoy()
    assert os.access(binary, os.X_OK)
    assert binary == Path(sys.executable).parent / "envoy"


def test_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(envoy_module.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(envoy_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvoyNotFoundError):
        find_envoy()


def test_start_stats_listener_and_stop() -> None:
    # Nothing listens on the authz/upstream ports: Envoy starts anyway (clusters are static).
    with EnvoyProcess(render_demo_config(0, 0, 1, 2)) as envoy:
        assert envoy.running()
        assert envoy.listener_port() == envoy.listener_port("demo") > 0
        assert envoy.admin_port > 0
        stats = envoy.stats(r"^http\.demo\.ext_authz\.")
        assert stats["http.demo.ext_authz.ok"] == 0
        assert set(stats) >= {"http.demo.ext_authz.denied", "http.demo.ext_authz.error"}
        with pytest.raises(KeyError):
            envoy.listener_port("nope")
        config_dir = envoy.config_path.parent
    assert not envoy.running()
    assert not config_dir.exists()
    envoy.stop()  # idempotent


def test_bad_config_fails_fast_with_envoy_s_words() -> None:
    broken = render_demo_config(0, 0, 1, 2).replace("stat_prefix: demo", "stat_prefixx: demo")
    with pytest.raises(EnvoyStartError, match="stat_prefixx"):
        EnvoyProcess(broken)


def test_with_a_base_id() -> None:
    with EnvoyProcess(render_demo_config(0, 0, 1, 2), base_id=os.getpid() % 10_000 + 100) as envoy:
        assert envoy.running()
