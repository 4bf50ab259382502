"""docs/metrics.md describes exactly the metrics the sidecar registers, with their label values.

The truth comes from the code: the families, types and label names that
`sidecar.metrics.Metrics` registers on a fresh registry, and, for closed label sets, the values
the code can produce (the enums they are taken from, the series created at start, and the
string literals the source passes to `.labels(...)` or to the callbacks that feed it).
"""

from __future__ import annotations

import ast
import math
import re
from collections import defaultdict
from dataclasses import fields

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from sidecar.authn.credentials import CredentialKind
from sidecar.authn.principal import AuthType
from sidecar.decision import Decision, Reason
from sidecar.metrics import Metrics

from .markdown import REPO, code, documents, read, spans, table

SIDECAR = REPO / "sidecar"
DOC = "metrics.md"

DECISIONS = "assets_authz_decisions_total"
ATTEMPTS = "assets_authz_auth_attempts_total"
JWKS_FETCHES = "assets_authz_jwks_fetches_total"
RELOADS = "assets_authz_reloads_total"
CACHE = "assets_authz_cache_requests_total"

# Labels whose values come from the configuration or the build, not from the code.
OPEN = {
    (JWKS_FETCHES, "issuer"),
    ("assets_authz_jwks_keys", "issuer"),
    ("assets_authz_jwks_last_success_age_seconds", "issuer"),
    ("assets_authz_jwks_stale_served_total", "issuer"),
    ("assets_authz_build_info", "version"),
}

# Callbacks that carry a label value from where it is decided to a `.labels(result=result)`
# call elsewhere: (file under sidecar/, function name) -> the label they fill.
CALLBACKS = {
    ("pipeline.py", "_count_auth"): (ATTEMPTS, "result"),
    ("authn/jwks.py", "_report"): (JWKS_FETCHES, "result"),
    ("authn/oauth.py", "_count"): (CACHE, "result"),
    ("resolver.py", "_count"): (CACHE, "result"),
    ("store/refresher.py", "_notify"): (RELOADS, "result"),
}


def exposition_name(family_name: str, kind: str) -> str:
    return f"{family_name}_total" if kind == "counter" else family_name


class Registered:
    """What `Metrics` registers: name -> (type, label names), and the series it creates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.families: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.initial: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.buckets: dict[str, list[float]] = defaultdict(list)  # histogram -> bounds
        for family in self.registry.collect():
            collector = self.registry._names_to_collectors[family.name]
            assert isinstance(collector, MetricWrapperBase), family.name
            name = exposition_name(family.name, family.type)
            self.families[name] = (family.type, tuple(collector._labelnames))
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                for label, value in sample.labels.items():
                    if label == "le":
                        if float(value) not in self.buckets[name]:
                            self.buckets[name].append(float(value))
                    else:
                        self.initial[(name, label)].add(value)
        # Metrics attribute -> exposition name, for reading `.labels(...)` calls in the source.
        self.by_attribute = {
            attr: exposition_name(value._name, value._type)
            for attr, value in vars(self.metrics).items()
            if isinstance(value, MetricWrapperBase)
        }

    def series_names(self) -> set[str]:
        names: set[str] = set()
        for name, (kind, _) in self.families.items():
            names.add(name)
            base = name.removesuffix("_total")
            if kind in ("counter", "histogram"):
                names.add(f"{base}_created")
            if kind == "histogram":
                names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        return names


@pytest.fixture(scope="module")
def registered() -> Registered:
    return Registered()


@pytest.fixture(scope="module")
def literals(registered: Registered) -> dict[tuple[str, str], set[str]]:
    return source_literals(registered.by_attribute)


@pytest.fixture(scope="module")
def closed(
    registered: Registered, literals: dict[tuple[str, str], set[str]]
) -> dict[tuple[str, str], set[str]]:
    return code_values(registered, literals)


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def source_literals(by_attribute: dict[str, str]) -> dict[tuple[str, str], set[str]]:
    """String literals the sidecar's source hands to metric labels."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    callbacks_seen: set[tuple[str, str]] = set()
    callback_files = {file for file, _ in CALLBACKS}
    for path in sorted(SIDECAR.rglob("*.py")):
        relative = path.relative_to(SIDECAR).as_posix()
        text = path.read_text(encoding="utf-8")
        if ".labels(" not in text and relative not in callback_files:
            continue  # parsing only what can matter keeps this test fast
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name == "labels"
                and isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Attribute)
                and func.value.attr in by_attribute
            ):
                metric = by_attribute[func.value.attr]
                for keyword in node.keywords:
                    if keyword.arg is not None:
                        found[(metric, keyword.arg)] |= _strings(keyword.value)
            elif name is not None and (relative, name) in CALLBACKS:
                callbacks_seen.add((relative, name))
                for arg in node.args:
                    found[CALLBACKS[(relative, name)]] |= _strings(arg)
    missing = set(CALLBACKS) - callbacks_seen
    assert not missing, f"callbacks no longer called (update CALLBACKS in this test): {missing}"
    return found


def code_values(
    reg: Registered, literals: dict[tuple[str, str], set[str]]
) -> dict[tuple[str, str], set[str]]:
    """Every value each closed label can take, according to the code."""
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, initial in reg.initial.items():
        values[key] |= initial
    for key, found in literals.items():
        values[key] |= found
    results = {Decision(allowed=b, decision_id="").result for b in (True, False)}
    default_auth_type = next(f.default for f in fields(Decision) if f.name == "auth_type")
    values[(DECISIONS, "result")] |= results
    values[("assets_authz_check_duration_seconds", "result")] |= results
    values[(DECISIONS, "reason")] |= {r.value for r in Reason}
    values[(DECISIONS, "auth_type")] |= {a.value for a in AuthType} | {str(default_auth_type)}
    values[(ATTEMPTS, "kind")] |= {k.value for k in CredentialKind}
    return {key: v for key, v in values.items() if key not in OPEN}


def test_families_match_the_registry(registered: Registered) -> None:
    rows = table(read(DOC), "metric", "type", "labels")
    documented: dict[str, tuple[str, tuple[str, ...]]] = {}
    for row in rows:
        (name,) = spans(row["metric"])
        assert name not in documented, f"{name} documented twice"
        documented[name] = (row["type"].strip(), tuple(spans(row["labels"])))
    undocumented = sorted(set(registered.families) - set(documented))
    gone = sorted(set(documented) - set(registered.families))
    assert not undocumented, f"metrics registered but not in docs/metrics.md: {undocumented}"
    assert not gone, f"metrics in docs/metrics.md that the code no longer registers: {gone}"
    for name, (kind, labels) in registered.families.items():
        assert documented[name] == (kind, labels), name


def test_every_label_has_its_value_set(
    registered: Registered, closed: dict[tuple[str, str], set[str]]
) -> None:
    rows = table(read(DOC), "metric", "label", "set", "values")
    documented = {(spans(r["metric"])[0], spans(r["label"])[0]): r for r in rows}
    expected = {
        (name, label) for name, (_, labels) in registered.families.items() for label in labels
    }
    assert set(documented) == expected
    unclassified = expected - set(closed) - OPEN
    assert not unclassified, f"labels neither open nor derived from the code: {unclassified}"
    for key, row in documented.items():
        if key in OPEN:
            assert row["set"] == "open", key
        else:
            assert row["set"] == "closed", key
            assert set(spans(row["values"])) == closed[key], key


def test_reason_values_are_the_reason_enum_plus_the_allow_label(
    closed: dict[tuple[str, str], set[str]],
) -> None:
    # The closed-set test above already covers this; this states the contract plainly.
    reasons = closed[(DECISIONS, "reason")]
    assert {r.value for r in Reason} < reasons
    assert len(reasons - {r.value for r in Reason}) == 1  # the allow label ("ok")


def test_histogram_buckets_are_documented(registered: Registered) -> None:
    match = re.search(r"^Buckets \(seconds\): `([^`]+)`", read(DOC), re.MULTILINE)
    assert match, "docs/metrics.md lost its 'Buckets (seconds): `...`' line"
    documented = [math.inf if v.strip() == "+Inf" else float(v) for v in match[1].split(",")]
    assert documented == registered.buckets["assets_authz_check_duration_seconds"]


def test_every_metric_name_in_the_docs_exists(registered: Registered) -> None:
    known = registered.series_names()
    for doc in documents():
        for name in set(re.findall(r"\bassets_authz_[a-z0-9_]+", doc.read_text("utf-8"))):
            assert name in known, f"{doc.name} names {name}, which the sidecar does not export"


def test_example_queries_only_use_known_labels(registered: Registered) -> None:
    """Label matchers in the PromQL examples name labels the metric has (or the scrape adds)."""
    scrape_labels = {"job", "instance", "namespace", "pod", "le"}
    labels_of = {
        name: set(registered.families[_family_of(name, registered)][1])
        for name in registered.series_names()
    }
    for doc in documents():
        for block in code(doc.read_text("utf-8")):
            for name, matchers in re.findall(r"\b(assets_authz_[a-z0-9_]+)\{([^}]*)\}", block):
                for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                    assert label in labels_of[name] | scrape_labels, (doc.name, name, label)


def _family_of(series: str, reg: Registered) -> str:
    for suffix in ("", "_bucket", "_sum", "_count", "_created"):
        base = series.removesuffix(suffix) if suffix else series
        for candidate in (base, f"{base}_total"):
            if candidate in reg.families:
                return candidate
    raise AssertionError(series)


def test_source_scan_sees_the_label_calls(literals: dict[tuple[str, str], set[str]]) -> None:
    """Guard the scanner itself: it must find the literals we know are there."""
    assert {"config", "policy"} <= literals[(RELOADS, "what")]
    assert {"oauth_verified", "resolver"} <= literals[(CACHE, "cache")]
    assert {"success", "failure"} <= literals[(ATTEMPTS, "result")]
