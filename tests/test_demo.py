"""The demo seeding behind `make run`: the example config and policy load, tokens work."""

from __future__ import annotations

import shutil
from pathlib import Path

from sidecar.config import load_config
from sidecar.demo import DEMO_LABEL, _seed
from sidecar.store.tokens import parse_token

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def test_seed_mints_fresh_demo_tokens_and_revokes_the_previous_ones(tmp_path: Path) -> None:
    folder = tmp_path / "deploy" / "examples"
    shutil.copytree(EXAMPLES, folder)
    config = load_config(folder / "config.yaml")
    assert config.store_path == (tmp_path / "var" / "demo" / "state.db").resolve()
    store, first = _seed(config)
    assert {"ann", "dan", "eve-read", "container"} <= set(first)
    assert all(parse_token(first[k]) for k in ("ann", "dan", "eve-read", "container"))
    _, second = _seed(config)
    assert second["ann"] != first["ann"]
    demo = [t for t in store.list_tokens() if t.label == DEMO_LABEL]
    live = [t for t in demo if not t.revoked and not t.superseded]
    assert len(live) == 4  # only this run's tokens stay usable
