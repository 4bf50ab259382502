"""The example configuration loads, keeps its state in git-ignored var/; the policies apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import load_config
from sidecar.roles.effective import readable_in_workspace, type_level
from sidecar.store.model import Snapshot
from sidecar.store.policy import load_policy, parse_policy
from sidecar.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
K8S_CONFIGMAP = REPO / "deploy" / "kubernetes" / "configmap.yaml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLES / "config.yaml")
    assert (config.listen.grpc, config.listen.http, config.listen.explain) == (
        "127.0.0.1:9191", "127.0.0.1:9192", "",
    )
    assert config.store_path == REPO / "var" / "demo" / "state.db"
    assert config.policy_file == EXAMPLES / "policy.yaml"
    (issuer,) = config.oauth.issuers
    assert issuer.issuer == "http://127.0.0.1:9193"
    assert issuer.jwks_uri == "http://127.0.0.1:9193/.well-known/jwks.json"
    assert issuer.audiences == ("https://api.example.test",)
    assert issuer.algorithms == ("RS256", "ES256")
    assert config.connect.enabled and not config.dry_run


def test_demo_state_is_git_ignored() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/var/" in ignored


def _k8s_policy() -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(
        yaml.safe_load(K8S_CONFIGMAP.read_text())["data"]["policy.yaml"]
    )
    return policy


POLICIES = {
    "examples/policy.yaml": lambda: yaml.safe_load((EXAMPLES / "policy.yaml").read_text()),
    "kubernetes configmap": _k8s_policy,
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_is_accepted_by_apply(name: str) -> None:
    policy = parse_policy(POLICIES[name](), source=name, base=EXAMPLES)
    assert policy.schemas


def test_demo_policy_has_what_the_demo_shows() -> None:
    policy = POLICIES["examples/policy.yaml"]()
    schemas = {s["id"]: s for s in policy["schemas"]}
    assert schemas["1"]["key"] == "ITSM" and schemas["2"]["key"] == "HR"
    itsm_types = {t["id"]: t for t in schemas["1"]["object_types"]}
    assert itsm_types["10"]["name"] == "Laptop" and "developer" in itsm_types["10"]["roles"]
    assert itsm_types["11"]["name"] == "Server"
    assert schemas["1"]["import_sources"]
    objects = {o["id"]: o["type"] for o in policy["objects"]}
    assert objects["88"] == "10" and objects["89"] == "11"
    assert {"id": "501", "type": "10"} in policy["attributes"]
    (installation,) = policy["connect_installations"]
    assert installation == {
        "client_key": "jira:abc-123",
        "app_key": "com.example.reporting",
        "shared_secret_env": "REPORTING_SHARED_SECRET",
        "scopes": ["READ", "ACT_AS_USER"],
        "account_id": "app-reporting",
    }
    # Different roles across the two schemas, so readable-schema headers differ per user.
    assert schemas["1"]["roles"] != schemas["2"]["roles"]
    assert all(u["email"] for u in policy["users"])


# The role narrative at the top of examples/policy.yaml, checked against the real role code.
NARRATIVE = [
    ("acc-ann", "10", "manager"),
    ("acc-bob", "10", "developer"),
    ("acc-dan", "10", "user"),
    ("acc-dan", "11", "developer"),
    ("acc-eve", "10", "user"),
    ("acc-eve", "20", "user"),
    ("acc-eve", "21", None),
    ("acc-ivy", "20", "developer"),
    ("acc-ivy", "21", "user"),
    ("acc-hana", "21", "manager"),
    ("acc-ann", "20", "viewer"),
    ("acc-admin", "20", "admin"),
    ("connect:com.example.reporting", "11", "viewer"),
]


@pytest.fixture(scope="module")
def demo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    store = SqliteStore(tmp_path_factory.mktemp("demo") / "state.db")
    store.apply(load_policy(EXAMPLES / "policy.yaml"), dry_run=False)
    return store.load_snapshot()


def _identities(account: str) -> frozenset[str]:
    """Groups are expanded into role holders when the snapshot is built: the id is enough."""
    return frozenset({account})


@pytest.mark.parametrize(("account", "type_id", "level"), NARRATIVE)
def test_demo_policy_roles_are_as_documented(
    account: str, type_id: str, level: str | None, demo_snapshot: Snapshot
) -> None:
    object_type = demo_snapshot.object_types[type_id]
    assert type_level(_identities(account), object_type, demo_snapshot) == level


def test_demo_readable_lists_differ_per_user(demo_snapshot: Snapshot) -> None:
    def readable(account: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        found = readable_in_workspace(_identities(account), "ws-1", demo_snapshot)
        return found.schemas, found.types

    assert readable("acc-ann") == (("1", "2"), ())
    assert readable("acc-bob") == (("1",), ())
    assert readable("acc-eve") == (("1", "2"), ("20",))
