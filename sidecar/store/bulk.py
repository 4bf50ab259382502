"""Rows of the bulk `objects:` / `attributes:` files a policy may name: CSV or JSONL."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

SUFFIXES = (".csv", ".jsonl", ".ndjson")


class Row(NamedTuple):
    """One row (`value` is the `{id, type}` mapping to validate) or one `problem` at `where`."""

    where: str
    value: Any = None
    problem: str | None = None


def bulk_rows(path: Path, name: str, where: str) -> Iterator[Row]:
    """Read `path` (named `name` in the policy) row by row; problems come as rows too."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        yield Row(where, problem=f"{name!r}: bulk files must be .csv (id,type) or .jsonl")
        return
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        yield Row(where, problem=f"cannot read {name!r}: {exc.strerror}")
        return
    with handle:
        try:
            if suffix == ".csv":
                yield from _csv_rows(handle, name, where)
            else:
                yield from _jsonl_rows(handle, name, where)
        except UnicodeDecodeError:
            yield Row(where, problem=f"{name!r} is not UTF-8")
        except csv.Error as exc:
            yield Row(where, problem=f"{name!r}: not valid CSV ({exc})")


def _csv_rows(handle: TextIO, name: str, where: str) -> Iterator[Row]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != ["id", "type"]:
        yield Row(where, problem=f"{name!r} line 1: the header must be 'id,type'")
        return
    for row in reader:
        at = f"{where}[{name}:{reader.line_num}]"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            yield Row(at, problem=f"expected 2 columns (id,type), found {len(row)}")
        else:
            yield Row(at, {"id": row[0].strip(), "type": row[1].strip()})


def _jsonl_rows(handle: TextIO, name: str, where: str) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        at = f"{where}[{name}:{number}]"
        try:
            yield Row(at, json.loads(line))
        except ValueError:
            yield Row(at, problem="not a JSON object")
