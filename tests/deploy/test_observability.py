"""Alert rules and the Grafana dashboard use only the sidecar's metrics and labels (those of
product.md section 7 and the documented additions), and cover what operators must hear about."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.decision import Reason

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "prometheus-rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "assets-authz-dashboard.json"

# product.md section 7: name -> (type, labels)
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "assets_authz_decisions_total": ("counter", frozenset({"result", "reason", "auth_type"})),
    "assets_authz_check_duration_seconds": ("histogram", frozenset({"result"})),
    "assets_authz_auth_attempts_total": ("counter", frozenset({"kind", "result"})),
    "assets_authz_jwks_fetches_total": ("counter", frozenset({"issuer", "result"})),
    "assets_authz_jwks_keys": ("gauge", frozenset({"issuer"})),
    "assets_authz_jwks_last_success_age_seconds": ("gauge", frozenset({"issuer"})),
    "assets_authz_reloads_total": ("counter", frozenset({"what", "result"})),
    "assets_authz_config_generation": ("gauge", frozenset()),
    "assets_authz_cache_requests_total": ("counter", frozenset({"cache", "result"})),
    "assets_authz_dry_run": ("gauge", frozenset()),
    "assets_authz_build_info": ("gauge", frozenset({"version"})),
}
# Added beyond section 7 (the spec allows more; docs/metrics.md documents them).
ADDED: dict[str, tuple[str, frozenset[str]]] = {
    "assets_authz_jwks_stale_served_total": ("counter", frozenset({"issuer"})),
    "assets_authz_store_snapshot_age_seconds": ("gauge", frozenset()),
    "assets_authz_connect_secrets_unavailable": ("gauge", frozenset()),
}
METRICS = {**CONTRACT, **ADDED}
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})  # added by the scrape
# Series Prometheus itself writes per target; a query on them must pick our job.
SCRAPE_SERIES = frozenset({"up"})


def series_names() -> dict[str, tuple[str, frozenset[str]]]:
    """Every series name a query may select: histograms expose _bucket/_sum/_count."""
    names: dict[str, tuple[str, frozenset[str]]] = {}
    for name, (kind, labels) in METRICS.items():
        if kind == "histogram":
            names[name + "_bucket"] = (name, labels | {"le"})
            names[name + "_sum"] = (name, labels)
            names[name + "_count"] = (name, labels)
        else:
            names[name] = (name, labels)
    for name in SCRAPE_SERIES:
        names[name] = (name, frozenset())
    return names


SERIES = series_names()
# Values the contract fixes for some labels (per metric family).
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("assets_authz_decisions_total", "result"): frozenset({"allow", "deny"}),
    ("assets_authz_decisions_total", "reason"): frozenset(r.value for r in Reason),
    ("assets_authz_check_duration_seconds", "result"): frozenset({"allow", "deny"}),
    ("assets_authz_reloads_total", "result"): frozenset({"success", "failure"}),
    ("assets_authz_reloads_total", "what"): frozenset({"config", "policy", "store"}),
    ("assets_authz_cache_requests_total", "result"): frozenset({"hit", "miss"}),
}

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
})
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (bare or with a `{...}` matcher list)."""
    stripped = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # ranges, including $__rate_interval
    stripped = _GROUPING.sub(" ", stripped)
    stripped = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", stripped)
    return {m for m in _IDENT.findall(stripped) if m not in _KEYWORDS}


def matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(series name, label, operator, value) for every label matcher in the expression."""
    for selector in _SELECTOR.finditer(expr):
        for label, op, value in _MATCHER.findall(selector.group(2)):
            yield selector.group(1) or "", label, op, value


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for _, labels in _GROUPING.findall(expr)
        for label in labels.split(",")
        if label.strip()
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ("absent(assets_authz_build_info)", {"assets_authz_build_info"}),
        ('sum by (reason) (rate(assets_authz_decisions_total{result="deny"}[5m])) or vector(0)',
         {"assets_authz_decisions_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket{job=~\"$job\"}[$__rate_interval])))",
         {"x_bucket"}),
        ("a / on(job) group_left(version) b offset 5m > 1e3", {"a", "b"}),
        ('{__name__="sneaky"}', set()),
    ],
)
def test_metric_name_parser(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def check_expr(expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric in {expr!r}"
    unknown = names - SERIES.keys()
    assert not unknown, f"{sorted(unknown)} are not metrics the sidecar exports: {expr!r}"
    assert "__name__" not in expr
    allowed_labels = TARGET_LABELS.union(*(SERIES[n][1] for n in names))
    extra = grouping_labels(expr) - allowed_labels
    assert not extra, f"grouping by unknown labels {sorted(extra)}: {expr!r}"
    for name in names & SCRAPE_SERIES:
        assert re.search(rf'\b{name}\{{[^}}]*\bjob=~?"assets-authz', expr), (
            f"{name} must select the assets-authz job: {expr!r}"
        )
    for series, label, op, value in matchers(expr):
        assert series in SERIES, f"matcher on {series!r} in {expr!r}"
        family, labels = SERIES[series]
        assert label in labels | TARGET_LABELS, f"{series} has no label {label!r}"
        fixed = LABEL_VALUES.get((family, label))
        if fixed is not None and not value.startswith("$"):
            values = set(value.split("|")) if op in ("=~", "!~") else {value}
            assert values <= fixed, f"{series}{{{label}}}: {sorted(values - fixed)} not allowed"


def rules() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in data["groups"] for r in g["rules"]}


def rule_exprs() -> list[tuple[str, str]]:
    return [(name, rule["expr"]) for name, rule in rules().items()]


def dashboard_exprs() -> list[tuple[str, str]]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append((where, value))
                else:
                    walk(value, node.get("title", where) if isinstance(node.get("title"), str)
                         else where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(data["panels"], "panels")
    return found


@pytest.mark.parametrize(("alert", "expr"), rule_exprs(), ids=[a for a, _ in rule_exprs()])
def test_rule_uses_contract_metrics(alert: str, expr: str) -> None:
    check_expr(expr)


@pytest.mark.parametrize(("panel", "expr"), dashboard_exprs())
def test_dashboard_uses_contract_metrics(panel: str, expr: str) -> None:
    check_expr(expr)


def test_rules_are_complete_alerts() -> None:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in data["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_rules_cover_what_operators_must_hear_about() -> None:
    text = " ".join(expr for _, expr in rule_exprs())
    for needle in [
        'up{job=~"assets-authz.*"} == 0',  # any single dead replica
        "absent(assets_authz_build_info",  # no replica at all
        'reason="internal_error"',
        "dependency_unavailable",
        "assets_authz_jwks_last_success_age_seconds",
        "assets_authz_jwks_stale_served_total",  # issuer down, stale keys in use
        'assets_authz_reloads_total{what=~"config|policy", result="failure"}',
        'assets_authz_reloads_total{what="store", result="failure"}',
        "assets_authz_store_snapshot_age_seconds",
        "assets_authz_connect_secrets_unavailable",
        "assets_authz_dry_run",
        "histogram_quantile(0.99",
        "assets_authz_check_duration_seconds_bucket",
    ]:
        assert needle in text, needle


def _selects(expr: str, metric: str, label: str, value: str) -> bool:
    """Whether some selector of `metric` in `expr` can match series with label=value."""
    selectors = [m for s, m in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr) if s == metric]
    if not selectors:
        return metric in metric_names(expr)  # bare: matches every value

    def admits(matcher_list: str) -> bool:
        for name, op, pattern in _MATCHER.findall(matcher_list):
            if name == label:
                hit = re.fullmatch(pattern, value) is not None if "~" in op else pattern == value
                if hit == op.startswith("!"):
                    return False
        return True

    return any(admits(m) for m in selectors)


def test_check_config_advice_only_on_file_reloads() -> None:
    """A failed store poll is no bad file: an alert that says check-config must exclude it."""
    for name, rule in rules().items():
        annotations = " ".join(str(v) for v in rule["annotations"].values())
        if "check-config" in annotations and "assets_authz_reloads_total" in rule["expr"]:
            assert not _selects(rule["expr"], "assets_authz_reloads_total", "what", "store"), name


def test_readyz_is_never_said_to_cover_the_resolver() -> None:
    for name, rule in rules().items():
        for sentence in re.split(r"(?<=\.)\s", " ".join(rule["annotations"].values())):
            if "/readyz" in sentence and "resolver" in sentence:
                assert re.search(r"\b(does not|doesn't|never|not cover)\b", sentence), (
                    name, sentence
                )


def test_no_keys_alert_also_fires_when_the_keys_are_past_the_stale_bound() -> None:
    # assets_authz_jwks_keys stays > 0 when the keys go stale: the age must be used as well.
    expr = rules()["AssetsAuthzJwksNoKeys"]["expr"]
    assert "assets_authz_jwks_keys" in expr
    assert "assets_authz_jwks_last_success_age_seconds" in expr


def test_dashboard_shape() -> None:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = data["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ["reason", "latency", "jwks", "reload", "generation", "dry run",
                  "served stale", "snapshot age", "connect secrets"]:
        assert topic in titles, topic
    exprs = " ".join(e for _, e in dashboard_exprs())
    assert "sum by (reason)" in exprs
    assert "histogram_quantile(0.999" in exprs
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["job"]["query"]["query"] == "label_values(assets_authz_build_info, job)"
