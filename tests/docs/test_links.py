"""Links, anchors and repository paths named in docs/*.md exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .markdown import REPO, anchors, code, documents, prose

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"^(?:deploy|docs|proto|sidecar|tests)/[\w./{}-]*$")
DOCS = documents()


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: link to missing {target}"
        if fragment:
            assert file.suffix == ".md", f"{doc.name}: anchor into a non-Markdown file: {target}"
            assert fragment in anchors(file.read_text(encoding="utf-8")), (
                f"{doc.name}: no heading for #{fragment} in {file.name}"
            )


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_repository_paths_exist(doc: Path) -> None:
    for snippet in code(doc.read_text(encoding="utf-8")):
        candidate = snippet.strip()
        if REPO_PATH.match(candidate):
            assert (REPO / candidate).exists(), f"{doc.name}: `{candidate}` does not exist"


def test_the_index_lists_every_document() -> None:
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(index))
    for doc in DOCS:
        if doc.name != "README.md":
            assert doc.name in linked, f"docs/README.md does not link {doc.name}"
