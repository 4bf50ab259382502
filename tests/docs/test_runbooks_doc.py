"""docs/runbooks.md has exactly one section per alert of the Prometheus rules, and alerts that
name a runbook point at their own section."""

from __future__ import annotations

import functools
from typing import Any

import yaml

from .markdown import REPO, anchor, headings, read

RULES = REPO / "deploy" / "prometheus" / "prometheus-rules.yaml"
DOC = "runbooks.md"
RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook")


@functools.cache
def alerts() -> dict[str, dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(RULES.read_text(encoding="utf-8"), Loader=loader)  # a safe loader
    found: dict[str, dict[str, Any]] = {}
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
                found[rule["alert"]] = rule
    return found


def sections() -> list[str]:
    return [title for level, title in headings(read(DOC)) if level == 2]


def test_the_rules_file_has_alerts() -> None:
    assert len(alerts()) >= 5


def test_one_section_per_alert() -> None:
    titles = sections()
    assert len(titles) == len(set(titles)), "a runbook section appears twice"
    missing = sorted(set(alerts()) - set(titles))
    extra = sorted(set(titles) - set(alerts()))
    assert not missing, f"alerts without a runbook section in docs/runbooks.md: {missing}"
    assert not extra, f"runbook sections for alerts the rules file does not define: {extra}"


def test_sections_follow_the_same_layout() -> None:
    text = read(DOC)
    for title in sections():
        body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Meaning.**", "**Likely causes", "**Confirm.**", "**Act.**"):
            assert part in body, f"{title}: no {part}"


def test_every_alert_has_a_runbook_url() -> None:
    for name, rule in alerts().items():
        url = str((rule.get("annotations") or {}).get("runbook_url", ""))
        assert url.startswith("https://"), f"{name} has no absolute runbook_url"


def test_runbook_annotations_point_at_their_section() -> None:
    for name, rule in alerts().items():
        annotations = rule.get("annotations") or {}
        for key in RUNBOOK_ANNOTATIONS:
            if key not in annotations:
                continue
            target, _, fragment = str(annotations[key]).partition("#")
            assert target.endswith("docs/runbooks.md"), (name, key, annotations[key])
            assert fragment == anchor(name), (name, key, annotations[key])
