"""docs/configuration.md documents exactly the keys the configuration parser accepts.

The accepted keys, their defaults, whether they are required and how their values are read
are taken from the parser itself: `parse_config` is run once on a minimal document with a
`_Reader` that records every `section(where, allowed)` and every `get(where, key, kind,
default)` call. Nothing here is a hand-copied list of keys.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import sidecar.config as config_module
from sidecar.runtime import Runtime

from .markdown import read, spans, table

DOC = "configuration.md"

# The smallest document that visits every section, including one OAuth issuer.
PROBE = {
    "listen": {"grpc": "127.0.0.1:1", "http": "127.0.0.1:2"},
    "store": "sqlite:///probe.db",
    "oauth": {"issuers": [{"issuer": "https://issuer.example", "jwks_uri": "https://k.example/"}]},
}

# How the parser reads a value (the `kind` function's name) -> how the document names the type.
TYPE_WORDS = {
    "_str": "string",
    "_bool": "boolean",
    "_nonneg": "number",
    "_pos_int": "integer",
    "_str_list": "list of strings",
    "_address": "address",
}


@dataclass(frozen=True)
class Read:
    default: Any
    required: bool
    kind: str


@dataclass
class Schema:
    sections: dict[str, frozenset[str]]  # "" for the top level, "oauth.issuers[]" for list items
    reads: dict[str, Read]  # dotted key path -> how the parser reads it

    def leaves(self) -> set[str]:
        paths = {_join(where, key) for where, allowed in self.sections.items() for key in allowed}
        containers = set(self.sections) | {s.removesuffix("[]") for s in self.sections}
        return paths - containers


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _where(where: str) -> str:
    return re.sub(r"\[\d+\]", "[]", where)


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Schema]:
    recorded = Schema({}, {})
    base_reader = config_module._Reader

    class RecordingReader(base_reader):  # type: ignore[misc, valid-type]
        def section(self, data: Any, where: str, allowed: set[str]) -> dict[str, Any]:
            recorded.sections[_where(where)] = frozenset(allowed)
            return super().section(data, where, allowed)  # type: ignore[no-any-return]

        def get(
            self, data: dict[str, Any], where: str, key: str, kind: Callable[[Any], Any],
            default: Any, *, required: bool = False,
        ) -> Any:
            name = getattr(kind, "__name__", "")
            recorded.reads[_join(_where(where), key)] = Read(default, required, name)
            return super().get(data, where, key, kind, default, required=required)

    config_module._Reader = RecordingReader
    try:
        config_module.parse_config(PROBE, base=tmp_path_factory.mktemp("probe"))
    finally:
        config_module._Reader = base_reader
    assert recorded.sections, "the parser no longer uses _Reader.section: update this test"
    yield recorded


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    reload: str


def documented() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for row in table(read(DOC), "key", "type", "default", "reload", "meaning"):
        (key,) = spans(row["key"])
        assert key not in rows, f"{key} documented twice"
        rows[key] = Row(key, row["type"], row["default"], row["reload"])
    return rows


def _plain(value: Any) -> Any:
    """Parser defaults as YAML would write them (tuples are lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def test_documented_keys_are_the_accepted_keys(schema: Schema) -> None:
    accepted = schema.leaves()
    docs = set(documented())
    assert not accepted - docs, f"keys the parser accepts but the doc omits: {accepted - docs}"
    assert not docs - accepted, f"documented keys the parser refuses: {docs - accepted}"


def test_every_accepted_key_is_read(schema: Schema) -> None:
    assert schema.leaves() == set(schema.reads)


def test_defaults_and_required_keys_match_the_parser(schema: Schema) -> None:
    for key, row in documented().items():
        read_ = schema.reads[key]
        if read_.required:
            assert row.default == "required", key
            continue
        cells = spans(row.default)
        assert len(cells) == 1 and row.default == f"`{cells[0]}`", (key, row.default)
        assert yaml.safe_load(cells[0]) == _plain(read_.default), (key, cells[0], read_.default)


def test_types_match_how_the_parser_reads_values(schema: Schema) -> None:
    checked = 0
    for key, row in documented().items():
        word = TYPE_WORDS.get(schema.reads[key].kind)
        if word is not None:
            assert row.type.startswith(word), (key, row.type, word)
            checked += 1
    assert checked >= 25


def _field(node: ast.AST, *owner: str) -> str | None:
    """`X` when node is `<owner>.X` (owner given as attribute names, e.g. "self", "config")."""
    if not isinstance(node, ast.Attribute):
        return None
    value: ast.AST = node.value
    for name in reversed(owner[1:]):
        if not (isinstance(value, ast.Attribute) and value.attr == name):
            return None
        value = value.value
    return node.attr if isinstance(value, ast.Name) and value.id == owner[0] else None


def restart_only_sections() -> set[str]:
    """The Config fields `Runtime.reload_config` keeps: `new.X != self.config.X` comparisons."""
    tree = ast.parse(inspect.getsource(Runtime.reload_config).lstrip())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.NotEq)
        ):
            new, old = _field(node.left, "new"), _field(node.comparators[0], "self", "config")
            if new is not None and new == old:
                names.add(new)
    return names


def test_reload_column(schema: Schema) -> None:
    restart = restart_only_sections()
    assert restart, "Runtime.reload_config no longer compares new.<field>: update this test"
    for key, row in documented().items():
        assert row.reload in ("yes", "restart"), key
        if key.split(".")[0] in restart:
            assert row.reload == "restart", f"{key}: a reload cannot change it"


def test_the_example_configuration_sets_only_documented_keys() -> None:
    example = Path(config_module.__file__).parents[1] / "deploy" / "examples" / "config.yaml"
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    docs = set(documented())

    def paths(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from paths(value, _join(where, key))
        elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            for item in node:
                yield from paths(item, where + "[]")
        else:
            yield where

    assert set(paths(data, "")) <= docs
