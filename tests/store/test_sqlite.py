"""The SQLite store: schema and migrations, apply (add/change/remove/dry-run/atomic), snapshots."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.store import sqlite as sqlite_module
from sidecar.store.model import Holders
from sidecar.store.policy import Policy, load_policy, parse_policy
from sidecar.store.sqlite import SCHEMA_VERSION, SqliteStore, StoreError, preview_apply

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = FIXTURES / "policy.yaml"
SOURCE = "5d6c2a0e-0000-4000-8000-000000000001"

EXAMPLE_CHANGES = [
    "+ workspace ws-1",
    "+ group all-staff (3 members)",
    "+ group assets-admins (1 member)",
    "+ group helpdesk (2 members)",
    "+ user acc-ann",
    "~ admins: +group:assets-admins",
    "+ connect installation jira:abc-123 (com.example.reporting)",
    "+ schema 1 (ITSM)",
    "+ object type 10 (Laptop) in schema 1",
    "+ object type 11 (Server) in schema 1",
    f"+ import source {SOURCE} in schema 1",
    "+ object 88 (type 10)",
    "+ attribute 501 (type 10)",
]


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "data" / "state.db")


def example_data() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def changed_policy() -> Policy:
    data = example_data()
    data["groups"]["helpdesk"] = ["acc-ann", "acc-eve"]
    data["users"][0]["email"] = "ann@new.test"
    data["admins"]["users"] = ["acc-root"]
    data["connect_installations"][0]["scopes"] = ["READ", "WRITE", "ACT_AS_USER"]
    schema = data["schemas"][0]
    schema["key"] = "OPS1"
    schema["roles"]["developer"] = {"users": ["acc-eve"]}
    schema["object_types"] = [
        {"id": "10", "name": "Laptop"},
        {"id": "12", "name": "Phone", "roles": {"manager": {"groups": ["helpdesk"]}}},
    ]
    data["objects"] = [{"id": "89", "type": "10"}]
    data["attributes"] = [{"id": "501", "type": "12"}]
    return parse_policy(data)


def test_a_new_store_is_created_with_its_schema_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    store = SqliteStore(path)
    assert store.path == path.resolve()
    assert store.generation() == 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert store.key_path == path.with_name("state.db.key")
    assert len(store.token_key) == 32
    probe = store._open()
    try:
        assert probe.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    finally:
        probe.close()


def test_reopening_keeps_data_and_key(store: SqliteStore) -> None:
    store.apply(load_policy(EXAMPLE), dry_run=False)
    again = SqliteStore(store.path)
    assert again.token_key == store.token_key
    assert again.generation() == 1
    assert again.load_snapshot().schemas.keys() == {"1"}


def test_a_store_from_a_newer_build_is_refused(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this build supports"):
        SqliteStore(store.path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteStore(path)


def test_a_vanished_store_is_an_error_never_a_fresh_empty_one(store: SqliteStore) -> None:
    store.path.unlink()
    with pytest.raises(StoreError):
        store.generation()
    with pytest.raises(StoreError):
        store.load_snapshot()
    assert not store.path.exists()


def test_apply_adds_everything_then_changes_nothing(store: SqliteStore) -> None:
    policy = load_policy(EXAMPLE)
    assert store.apply(policy, dry_run=False) == EXAMPLE_CHANGES
    assert store.generation() == 1
    assert store.apply(policy, dry_run=False) == []
    assert store.generation() == 1
    assert store.apply(load_policy(EXAMPLE), dry_run=True) == []


def test_dry_run_reports_the_same_changes_and_writes_nothing(store: SqliteStore) -> None:
    policy = load_policy(EXAMPLE)
    assert store.apply(policy, dry_run=True) == EXAMPLE_CHANGES
    assert store.generation() == 0
    snapshot = store.load_snapshot()
    assert not snapshot.schemas and not snapshot.workspaces
    assert preview_apply(policy) == EXAMPLE_CHANGES


def test_apply_changes_exactly_what_differs(store: SqliteStore) -> None:
    store.apply(load_policy(EXAMPLE), dry_run=False)
    policy = changed_policy()
    expected = [
        "~ group helpdesk: +acc-eve -acc-bob",
        "~ user acc-ann email: ann@example.test -> ann@new.test",
        "~ admins: +user:acc-root",
        "~ connect installation jira:abc-123 scopes: ACT_AS_USER READ -> ACT_AS_USER READ WRITE",
        "~ schema 1 key: ITSM -> OPS1",
        "~ schema 1 roles.developer: +user:acc-eve -group:helpdesk",
        "+ object type 12 (Phone) in schema 1",
        "- object type 11 (Server) in schema 1",
        "~ object type 10 roles.developer: -user:acc-bob",
        "+ object 89 (type 10)",
        "- object 88 (type 10)",
        "~ attribute 501 type: 10 -> 12",
    ]
    assert store.apply(policy, dry_run=True) == expected
    assert store.generation() == 1
    assert store.apply(policy, dry_run=False) == expected
    assert store.generation() == 2
    assert store.apply(policy, dry_run=False) == []

    snap = store.load_snapshot()
    assert snap.groups["helpdesk"] == frozenset({"acc-ann", "acc-eve"})
    assert snap.users == {"acc-ann": "ann@new.test"}
    assert snap.admins == frozenset({"acc-admin", "acc-root"})
    assert snap.installations["jira:abc-123"].scopes == frozenset({"READ", "WRITE", "ACT_AS_USER"})
    assert snap.schemas["1"].key == "OPS1"
    assert snap.schemas["1"].roles["developer"] == Holders(frozenset({"acc-eve"}))
    assert snap.object_types.keys() == {"10", "12"}
    assert not snap.object_types["10"].roles["developer"]
    assert snap.object_types["12"].roles["manager"] == Holders(frozenset({"acc-ann", "acc-eve"}))
    assert dict(snap.objects) == {"89": "10"}
    assert dict(snap.attributes) == {"501": "12"}


def test_apply_removes_everything_the_policy_no_longer_has_but_keeps_tokens(
    store: SqliteStore,
) -> None:
    store.apply(load_policy(EXAMPLE), dry_run=False)
    record, _ = store.mint_api("acc-ann", None, None, "keep me", now=1000.0)
    assert store.apply(parse_policy({}), dry_run=False) == [
        "- workspace ws-1",
        "- group all-staff",
        "- group assets-admins",
        "- group helpdesk",
        "- user acc-ann",
        "~ admins: -group:assets-admins",
        "- connect installation jira:abc-123 (com.example.reporting)",
        "- schema 1 (ITSM)",
        "- object type 10 (Laptop) in schema 1",
        "- object type 11 (Server) in schema 1",
        f"- import source {SOURCE} in schema 1",
        "- object 88 (type 10)",
        "- attribute 501 (type 10)",
    ]
    snap = store.load_snapshot()
    assert not (snap.workspaces or snap.groups or snap.users or snap.admins or snap.schemas)
    assert not (snap.object_types or snap.objects or snap.attributes or snap.import_sources)
    assert not snap.installations
    assert list(snap.tokens) == [record.id]
    conn = sqlite3.connect(store.path)
    try:
        for table in ("role_holders", "group_members", "admins"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)
    finally:
        conn.close()


def test_a_failing_apply_leaves_nothing_half_done(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.apply(load_policy(EXAMPLE), dry_run=False)
    before = store.load_snapshot()
    real = sqlite_module._sync_table
    calls: list[str] = []

    def failing(conn: sqlite3.Connection, table: Any, old: Any, new: Any) -> None:
        calls.append(table.name)
        if table.name == "objects":  # after groups, users, schemas, types and roles were written
            raise RuntimeError("disk on fire")
        real(conn, table, old, new)

    monkeypatch.setattr(sqlite_module, "_sync_table", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.apply(changed_policy(), dry_run=False)
    assert "schemas" in calls and "role_holders" in calls
    monkeypatch.undo()
    assert store.generation() == before.generation
    after = store.load_snapshot()
    assert after == before


def test_snapshot_expands_groups_and_admins_and_keeps_type_overrides(store: SqliteStore) -> None:
    data = example_data()
    data["users"].append({"account_id": "acc-bob", "email": "Bob@Example.TEST"})
    data["admins"] = {"groups": ["assets-admins"], "users": ["acc-root"],
                      "apps": ["oauth:ops-client"]}
    store.apply(parse_policy(data), dry_run=False)
    snap = store.load_snapshot()

    assert snap.generation == 1
    assert snap.token_key == store.token_key
    assert snap.workspaces == frozenset({"ws-1"})
    assert snap.admins == frozenset({"acc-admin", "acc-root", "oauth:ops-client"})
    assert snap.users == {"acc-ann": "ann@example.test", "acc-bob": "bob@example.test"}
    assert snap.groups["all-staff"] == frozenset({"acc-ann", "acc-bob", "acc-eve"})

    schema = snap.schemas["1"]
    assert (schema.id, schema.workspace, schema.key) == ("1", "ws-1", "ITSM")
    assert dict(schema.roles) == {
        "manager": Holders(frozenset({"acc-ann"})),
        "developer": Holders(frozenset({"acc-ann", "acc-bob"})),
        "user": Holders(frozenset({"acc-ann", "acc-bob", "acc-eve"})),
        "viewer": Holders(frozenset({"connect:com.example.reporting"})),
    }
    laptop, server = snap.object_types["10"], snap.object_types["11"]
    assert (laptop.schema_id, laptop.name) == ("1", "Laptop")
    assert dict(laptop.roles) == {
        "manager": Holders(),
        "developer": Holders(frozenset({"acc-bob"})),
        "user": Holders(),
    }
    assert not any(server.roles.values())
    assert snap.import_sources[SOURCE].schema_id == "1"
    assert dict(snap.objects) == {"88": "10"}
    assert dict(snap.attributes) == {"501": "10"}
    inst = snap.installations["jira:abc-123"]
    assert (inst.app_key, inst.account_id) == ("com.example.reporting", "app-reporting")
    assert inst.scopes == frozenset({"READ", "ACT_AS_USER"})
    assert (inst.shared_secret_env, inst.shared_secret_file) == ("REPORTING_SHARED_SECRET", None)
    assert "token_key" not in repr(snap)
    with pytest.raises(TypeError):
        snap.objects["99"] = "10"  # type: ignore[index]


def test_group_membership_changes_reach_every_role_that_names_the_group(
    store: SqliteStore,
) -> None:
    store.apply(load_policy(EXAMPLE), dry_run=False)
    data = example_data()
    data["groups"]["all-staff"] = ["acc-zoe"]
    assert store.apply(parse_policy(data), dry_run=False) == [
        "~ group all-staff: +acc-zoe -acc-ann -acc-bob -acc-eve"
    ]
    assert store.load_snapshot().schemas["1"].roles["user"] == Holders(frozenset({"acc-zoe"}))


def test_bulk_policy_applies(store: SqliteStore) -> None:
    changes = store.apply(load_policy(FIXTURES / "bulk-policy.yaml"), dry_run=False)
    assert "+ object 90 (type 10)" in changes
    assert "+ attribute 502 (type 11)" in changes
    snap = store.load_snapshot()
    assert dict(snap.objects) == {"88": "10", "89": "11", "90": "10"}


def test_another_handle_sees_every_write(store: SqliteStore) -> None:
    other = SqliteStore(store.path)
    store.apply(load_policy(EXAMPLE), dry_run=False)
    assert other.generation() == 1
    store.mint_container(SOURCE, None, "", now=1.0)
    assert other.generation() == 2
    assert len(other.load_snapshot().tokens) == 1
