"""Fixtures for end-to-end tests through a real Envoy: an echo upstream, an Envoy factory, and
one session-wide Envoy (`gateway`) in front of the session sidecar and the echo upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sidecar.testing.echo import start_echo, stop_echo
from sidecar.testing.envoy import EnvoyProcess, render_demo_config
from sidecar.testing.running import SidecarThread

from .client import Gateway

StartEnvoy = Callable[[int, int], EnvoyProcess]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e needs the real Envoy: mark it so `-m "not e2e"` skips it."""
    for item in items:
        if "/tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[int]:
    """Port of an HTTP/1.1 echo server on 127.0.0.1 shared by the whole session."""
    server, port = start_echo()
    yield port
    stop_echo(server)


@pytest.fixture
def start_envoy() -> Iterator[StartEnvoy]:
    """Factory: start_envoy(authz_port, upstream_port) -> a ready Envoy on the demo template.

    The listener and admin ports are picked by Envoy (read them with `listener_port()` and
    `admin_port`); every Envoy started is stopped when the test ends. The call blocks until
    Envoy is ready: from an async test, run it with `asyncio.to_thread`.
    """
    started: list[EnvoyProcess] = []

    def start(authz_port: int, upstream_port: int) -> EnvoyProcess:
        envoy = EnvoyProcess(render_demo_config(0, 0, authz_port, upstream_port))
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


@pytest.fixture(scope="session")
def gateway(sidecar: SidecarThread, echo_upstream: int) -> Iterator[Gateway]:
    """One real Envoy for the session, in front of the session `sidecar` and the echo upstream."""
    with EnvoyProcess(
        render_demo_config(0, 0, sidecar.serving.grpc_port, echo_upstream)
    ) as envoy:
        yield Gateway(envoy.listener_port())
