"""Policy parsing and validation: the example file, bulk files, and every kind of problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.store.policy import PolicyError, RoleHolders, load_policy, parse_policy

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = FIXTURES / "policy.yaml"


def example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def test_example_policy_parses_into_frozen_values() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.source == str(EXAMPLE)
    assert policy.workspaces == ("ws-1",)
    assert policy.groups["helpdesk"] == ("acc-ann", "acc-bob")
    assert [(u.account_id, u.email) for u in policy.users] == [("acc-ann", "ann@example.test")]
    assert policy.admins == RoleHolders(groups=("assets-admins",))
    (schema,) = policy.schemas
    assert (schema.id, schema.workspace, schema.key) == ("1", "ws-1", "ITSM")
    assert schema.roles["manager"] == RoleHolders(users=("acc-ann",))
    assert schema.roles["viewer"] == RoleHolders(apps=("connect:com.example.reporting",))
    assert [(t.id, t.name) for t in schema.object_types] == [("10", "Laptop"), ("11", "Server")]
    assert schema.object_types[0].roles["developer"] == RoleHolders(users=("acc-bob",))
    assert schema.import_sources == ("5d6c2a0e-0000-4000-8000-000000000001",)
    assert dict(policy.objects) == {"88": "10"}
    assert dict(policy.attributes) == {"501": "10"}
    (inst,) = policy.installations
    assert inst.client_key == "jira:abc-123"
    assert inst.app_key == "com.example.reporting"
    assert inst.scopes == frozenset({"READ", "ACT_AS_USER"})
    assert inst.account_id == "app-reporting"
    assert (inst.shared_secret_env, inst.shared_secret_file) == ("REPORTING_SHARED_SECRET", None)
    assert policy.files == (str(EXAMPLE.resolve()),)
    with pytest.raises(AttributeError):
        policy.workspaces = ()  # type: ignore[misc]


def test_integer_ids_keep_their_source_text(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "workspaces: [{id: 7}]\n"
        "schemas: [{id: 010, workspace: 7, key: K, object_types: [{id: 2024-01-01, name: D}]}]\n"
        "objects: [{id: 88, type: 2024-01-01}]\n"
    )
    policy = load_policy(path)
    assert policy.workspaces == ("7",)
    assert policy.schemas[0].id == "010"
    assert policy.schemas[0].object_types[0].id == "2024-01-01"
    assert dict(policy.objects) == {"88": "2024-01-01"}


def test_python_ints_are_normalised_to_strings() -> None:
    data = {"workspaces": [{"id": 1}], "schemas": [{"id": 2, "workspace": 1, "key": "K"}]}
    policy = parse_policy(data)
    assert policy.workspaces == ("1",)
    assert policy.schemas[0].id == "2"


def test_bulk_objects_and_attributes_from_csv_and_jsonl() -> None:
    path = FIXTURES / "bulk-policy.yaml"
    policy = load_policy(path)
    assert dict(policy.objects) == {"88": "10", "89": "11", "90": "10"}
    assert dict(policy.attributes) == {"501": "10", "502": "11"}
    assert policy.files == (
        str(path.resolve()),
        str((FIXTURES / "objects.csv").resolve()),
        str((FIXTURES / "attributes.jsonl").resolve()),
    )


def test_secret_file_is_resolved_against_the_policy_folder(tmp_path: Path) -> None:
    data = example()
    inst = data["connect_installations"][0]
    del inst["shared_secret_env"]
    inst["shared_secret_file"] = "secrets/reporting"
    inst["scopes"] = ["read", "Write"]
    policy = parse_policy(data, base=tmp_path)
    assert policy.installations[0].shared_secret_file == str(tmp_path / "secrets" / "reporting")
    assert policy.installations[0].scopes == frozenset({"READ", "WRITE"})


Mutation = Callable[[dict[str, Any]], object]


def _schema(d: dict[str, Any]) -> dict[str, Any]:
    schema = d["schemas"][0]
    assert isinstance(schema, dict)
    return schema


def _inst(d: dict[str, Any]) -> dict[str, Any]:
    inst = d["connect_installations"][0]
    assert isinstance(inst, dict)
    return inst


def _add_schema(d: dict[str, Any], **fields: Any) -> None:
    d["schemas"].append({"id": "2", "workspace": "ws-1", "key": "OPS", **fields})


CASES: list[tuple[str, Mutation, list[str]]] = [
    ("unknown top-level key", lambda d: d.update(rules=[]), ["rules: unknown key"]),
    (
        "unknown schema key",
        lambda d: _schema(d).update(owner="x"),
        ["schemas[0].owner: unknown key"],
    ),
    (
        "unknown group in a schema role",
        lambda d: _schema(d)["roles"]["developer"].update(groups=["x"]),
        ["schemas[0].roles.developer.groups: unknown group 'x'"],
    ),
    (
        "unknown group in a type role",
        lambda d: _schema(d)["object_types"][0]["roles"]["developer"].update(groups=["ops"]),
        ["schemas[0].object_types[0].roles.developer.groups: unknown group 'ops'"],
    ),
    (
        "unknown group in admins",
        lambda d: d["admins"].update(groups=["root"]),
        ["admins.groups: unknown group 'root'"],
    ),
    (
        "unknown key in admins",
        lambda d: d["admins"].update(everyone=True),
        ["admins.everyone: unknown key"],
    ),
    (
        "unknown schema role level",
        lambda d: _schema(d)["roles"].update(admin={"users": ["acc-x"]}),
        ["schemas[0].roles.admin: unknown role level "
         "(expected one of: manager, developer, user, viewer)"],
    ),
    (
        "no viewer level on a type",
        lambda d: _schema(d)["object_types"][0]["roles"].update(viewer={"users": ["acc-x"]}),
        ["schemas[0].object_types[0].roles.viewer: unknown role level "
         "(expected one of: manager, developer, user)"],
    ),
    (
        "unknown key in a role",
        lambda d: _schema(d)["roles"]["manager"].update(roles=["x"]),
        ["schemas[0].roles.manager.roles: unknown key"],
    ),
    (
        "app holder of an unknown kind",
        lambda d: _schema(d)["roles"]["viewer"].update(apps=["github:x"]),
        ["schemas[0].roles.viewer.apps: 'github:x' must be connect:<app_key> or oauth:<client_id>"],
    ),
    (
        "app listed as a user",
        lambda d: _schema(d)["roles"]["manager"].update(users=["oauth:client-1"]),
        ["schemas[0].roles.manager.users: 'oauth:client-1' is an app: list it under apps"],
    ),
    (
        "undeclared workspace",
        lambda d: _schema(d).update(workspace="ws-9"),
        ["schemas[0].workspace: unknown workspace 'ws-9' (declare it under workspaces)"],
    ),
    (
        "missing schema key",
        lambda d: _schema(d).pop("key"),
        ["schemas[0].key: is required"],
    ),
    (
        "missing type name",
        lambda d: _schema(d)["object_types"][1].pop("name"),
        ["schemas[0].object_types[1].name: is required"],
    ),
    (
        "float id",
        lambda d: _schema(d).update(id=1.5),
        ["schemas[0].id: must be a string or an integer, not 1.5"],
    ),
    (
        "boolean id",
        lambda d: d["objects"][0].update(id=True),
        ["objects[0].id: must be a string or an integer, not True"],
    ),
    (
        "id with a slash",
        lambda d: d["objects"][0].update(id="8/8"),
        ["objects[0].id: invalid id '8/8' (empty, or contains whitespace, ',' or '/')"],
    ),
    (
        "empty id",
        lambda d: d["workspaces"].append({"id": ""}),
        ["workspaces[1].id: invalid id '' (empty, or contains whitespace, ',' or '/')"],
    ),
    (
        "duplicate workspace",
        lambda d: d["workspaces"].append({"id": "ws-1"}),
        ["workspaces[1].id: duplicate workspace 'ws-1'"],
    ),
    (
        "duplicate schema id",
        lambda d: d["schemas"].append(copy.deepcopy({**_schema(d), "object_types": [],
                                                     "import_sources": []})),
        ["schemas[1].id: duplicate schema '1'"],
    ),
    (
        "duplicate object type across schemas",
        lambda d: _add_schema(d, object_types=[{"id": "10", "name": "Again"}]),
        ["schemas[1].object_types[0].id: duplicate object type '10'"],
    ),
    (
        "duplicate import source",
        lambda d: _add_schema(d, import_sources=[{"id": "5d6c2a0e-0000-4000-8000-000000000001"}]),
        ["schemas[1].import_sources[0].id: duplicate import source "
         "'5d6c2a0e-0000-4000-8000-000000000001'"],
    ),
    (
        "object of an unknown type",
        lambda d: d["objects"].append({"id": "89", "type": "99"}),
        ["objects[1].type: unknown object type '99'"],
    ),
    (
        "attribute of an unknown type",
        lambda d: d["attributes"][0].update(type=12),
        ["attributes[0].type: unknown object type '12'"],
    ),
    (
        "duplicate object",
        lambda d: d["objects"].append({"id": 88, "type": "11"}),
        ["objects[1].id: duplicate id '88'"],
    ),
    (
        "object entry with an unknown key",
        lambda d: d["objects"][0].update(schema="1"),
        ["objects[0].schema: unknown key"],
    ),
    (
        "objects neither a list nor a file",
        lambda d: d.update(objects={"88": "10"}),
        ["objects: must be a list"],
    ),
    (
        "inline shared secret",
        lambda d: _inst(d).update(shared_secret="hunter2"),
        ["connect_installations[0].shared_secret: inline secrets are not allowed; use "
         "shared_secret_env or shared_secret_file"],
    ),
    (
        "both secret sources",
        lambda d: _inst(d).update(shared_secret_file="s.txt"),
        ["connect_installations[0]: needs exactly one of shared_secret_env and "
         "shared_secret_file"],
    ),
    (
        "no secret source",
        lambda d: _inst(d).pop("shared_secret_env"),
        ["connect_installations[0]: needs exactly one of shared_secret_env and "
         "shared_secret_file"],
    ),
    (
        "bad environment variable name",
        lambda d: _inst(d).update(shared_secret_env="MY-SECRET"),
        ["connect_installations[0].shared_secret_env: not an environment variable name: "
         "'MY-SECRET'"],
    ),
    (
        "unknown Connect scope",
        lambda d: _inst(d).update(scopes=["READ", "FLY"]),
        ["connect_installations[0].scopes: unknown scope 'FLY' "
         "(expected ACT_AS_USER, ADMIN, DELETE, READ, WRITE)"],
    ),
    (
        "installation without account",
        lambda d: _inst(d).pop("account_id"),
        ["connect_installations[0].account_id: is required"],
    ),
    (
        "duplicate client key",
        lambda d: d["connect_installations"].append(copy.deepcopy(_inst(d))),
        ["connect_installations[1].client_key: duplicate client key 'jira:abc-123'"],
    ),
    (
        "user with a bad email",
        lambda d: d["users"][0].update(email="ann"),
        ["users[0].email: not an email address: 'ann'"],
    ),
    (
        "duplicate user",
        lambda d: d["users"].append({"account_id": "acc-ann", "email": "ann2@example.test"}),
        ["users[1].account_id: duplicate account 'acc-ann'"],
    ),
    (
        "duplicate email (case-insensitive)",
        lambda d: d["users"].append({"account_id": "acc-x", "email": "ANN@example.test"}),
        ["users[1].email: duplicate email 'ann@example.test'"],
    ),
    (
        "groups as a list",
        lambda d: d.update(groups=["helpdesk"]),
        ["groups: must be a mapping of group name to account ids",
         "admins.groups: unknown group 'assets-admins'",
         "schemas[0].roles.developer.groups: unknown group 'helpdesk'",
         "schemas[0].roles.user.groups: unknown group 'all-staff'"],
    ),
    (
        "group member with a space",
        lambda d: d["groups"]["helpdesk"].append("acc x"),
        ["groups.helpdesk: invalid id 'acc x' (empty, or contains whitespace or ',')"],
    ),
    (
        "workspace entry not a mapping",
        lambda d: d.update(workspaces=["ws-1"]),
        ["workspaces[0]: must be a mapping",
         "schemas[0].workspace: unknown workspace 'ws-1' (declare it under workspaces)"],
    ),
    (
        "every problem at once",
        lambda d: (d.update(extra=1), _schema(d).update(key=""), d["objects"][0].update(type="x")),
        ["extra: unknown key", "schemas[0].key: must be a non-empty string",
         "objects[0].type: unknown object type 'x'"],
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_problems(mutate: Mutation, expected: list[str], tmp_path: Path) -> None:
    data = example()
    mutate(data)
    with pytest.raises(PolicyError) as info:
        parse_policy(data, source="p.yaml", base=tmp_path)
    assert info.value.problems == expected
    assert info.value.source == "p.yaml"
    assert str(info.value).startswith("p.yaml: ")


def test_inline_secret_value_never_appears_in_the_error() -> None:
    data = example()
    _inst(data)["shared_secret"] = "hunter2"
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert "hunter2" not in str(info.value)


FILE_CASES: list[tuple[str, str, str, list[str]]] = [
    ("bad header", "o.csv", "object,type\n88,10\n",
     ["objects: 'o.csv' line 1: the header must be 'id,type'"]),
    ("wrong column count", "o.csv", "id,type\n88,10,x\n89,10\n",
     ["objects[o.csv:2]: expected 2 columns (id,type), found 3"]),
    ("unknown type in a CSV row", "o.csv", "id,type\n88,10\n89,12\n",
     ["objects[o.csv:3].type: unknown object type '12'"]),
    ("duplicate id in a CSV", "o.csv", "id,type\n88,10\n88,10\n",
     ["objects[o.csv:3].id: duplicate id '88'"]),
    ("JSONL line not JSON", "o.jsonl", '{"id": "88", "type": "10"}\nnope\n',
     ["objects[o.jsonl:2]: not a JSON object"]),
    ("JSONL line not an object", "o.jsonl", '["88", "10"]\n',
     ["objects[o.jsonl:1]: must be a mapping"]),
    ("JSONL row with an unknown key", "o.ndjson", '{"id": "88", "type": "10", "x": 1}\n',
     ["objects[o.ndjson:1].x: unknown key"]),
    ("unsupported extension", "o.txt", "88 10\n",
     ["objects: 'o.txt': bulk files must be .csv (id,type) or .jsonl"]),
]


@pytest.mark.parametrize(
    ("name", "content", "expected"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bulk_file_problems(name: str, content: str, expected: list[str], tmp_path: Path) -> None:
    (tmp_path / name).write_text(content)
    data = example()
    data["objects"] = name
    with pytest.raises(PolicyError) as info:
        parse_policy(data, base=tmp_path)
    assert info.value.problems == expected


def test_missing_bulk_file(tmp_path: Path) -> None:
    data = example()
    data["attributes"] = "nowhere.csv"
    with pytest.raises(PolicyError) as info:
        parse_policy(data, base=tmp_path)
    assert info.value.problems == [
        "attributes: cannot read 'nowhere.csv': No such file or directory"
    ]


@pytest.mark.parametrize("row", ["{i},99", "{i},10,extra"], ids=["bad type", "bad columns"])
def test_bulk_file_problems_are_capped(tmp_path: Path, row: str) -> None:
    rows = "".join(row.format(i=i) + "\n" for i in range(100))
    (tmp_path / "o.csv").write_text("id,type\n" + rows)
    data = example()
    data["objects"] = "o.csv"
    with pytest.raises(PolicyError) as info:
        parse_policy(data, base=tmp_path)
    assert len(info.value.problems) == 21
    assert info.value.problems[-1] == "objects: 80 more rows not checked after 20 problems"


YAML_CASES: list[tuple[str, str, list[str]]] = [
    ("duplicate key", "workspaces: []\nworkspaces: []\n", ["line 2: duplicate key 'workspaces'"]),
    (
        "not YAML",
        "workspaces: [\n",
        ["line 2: expected the node content, but found '<stream end>'"],
    ),
    ("empty", "# nothing\n", ["top level: the file is empty"]),
    ("not a mapping", "- a\n- b\n", ["top level: must be a mapping"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES]
)
def test_yaml_level_problems(text: str, expected: list[str], tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.problems == expected
    assert info.value.source == str(path)


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert info.value.problems == ["cannot read: No such file or directory"]


def test_an_empty_mapping_is_a_valid_empty_policy() -> None:
    policy = parse_policy({})
    assert policy.schemas == () and policy.workspaces == () and dict(policy.objects) == {}


def test_a_connect_app_may_hold_roles_before_it_is_installed(tmp_path: Path) -> None:
    data = example()
    _schema(data)["roles"]["viewer"]["apps"] = ["connect:com.not-installed-yet"]
    policy = parse_policy(data, source="p.yaml", base=tmp_path)
    assert "connect:com.not-installed-yet" in policy.schemas[0].roles["viewer"].apps
