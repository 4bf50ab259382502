"""Reading the operator documents in docs/: tables, code, headings and anchors."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"`([^`]+)`")


def documents() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The text with fenced code blocks blanked out (line count kept)."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def code(text: str) -> list[str]:
    """Every fenced code block, then every inline code span (a span's line breaks are spaces)."""
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    return blocks + [" ".join(m.group(1).split("\n")) for m in _SPAN.finditer(prose(text))]


def spans(cell: str) -> list[str]:
    """The inline code spans of a piece of text (a table cell)."""
    return [m.group(1) for m in _SPAN.finditer(cell)]


def _cells(line: str) -> list[str]:
    """Split one table row on `|`, except inside code spans."""
    cells, current, in_code = [], [], False
    for ch in line.strip().strip("|"):
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    cells.append("".join(current).strip())
    return cells


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table outside code blocks, as rows keyed by the header cells."""
    found: list[list[dict[str, str]]] = []
    lines = prose(text).splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]), strict=True)))
                i += 1
            found.append(rows)
        else:
            i += 1
    return found


def table(text: str, *columns: str) -> list[dict[str, str]]:
    """The one table whose header starts with `columns`."""
    matches = [t for t in tables(text) if t and list(t[0])[: len(columns)] == list(columns)]
    assert len(matches) == 1, f"expected one table with columns {columns}, found {len(matches)}"
    return matches[0]


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every ATX heading outside code blocks."""
    return [
        (len(m.group(1)), m.group(2).strip())
        for m in re.finditer(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*$", prose(text), re.MULTILINE)
    ]


def anchor(title: str) -> str:
    """The anchor GitHub generates for a heading."""
    text = title.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {anchor(title) for _, title in headings(text)}
