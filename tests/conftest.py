"""Shared fixtures: a seeded world and a real sidecar serving it over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.testing.running import SidecarThread

from .world import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("world"))
    yield w
    w.stop()


@pytest.fixture(scope="session")
def sidecar(world: World) -> Iterator[SidecarThread]:
    with SidecarThread(world.config) as running:
        yield running


@pytest.fixture
def fresh_world(tmp_path: Path) -> Iterator[World]:
    """A world of its own, for tests that change config or store."""
    w = build_world(tmp_path / "world")
    yield w
    w.stop()
