"""Effective roles: the object-type override rule, schema roles and readable lists."""

from __future__ import annotations

import pytest

from sidecar.roles.effective import (
    id_sort_key,
    readable_in_workspace,
    reads_schema_through_types,
    schema_level,
    type_level,
)

from .helpers import object_type, schema, snapshot


def test_the_documented_example_john_frank_katy() -> None:
    """John is a schema developer; Frank and Katy are made developers of type T."""
    snap = snapshot(
        schemas=[schema("1", "ws", {"developer": ["john"]})],
        types=[
            object_type("T", "1", {"developer": ["frank", "katy"]}),
            object_type("U", "1"),
        ],
    )
    t, u = snap.object_types["T"], snap.object_types["U"]
    john, frank, katy = frozenset({"john"}), frozenset({"frank"}), frozenset({"katy"})
    assert type_level(john, t, snap) == "user"  # no longer creates or edits objects of T
    assert type_level(john, u, snap) == "developer"  # keeps developer on the other types
    assert type_level(frank, t, snap) == "developer"
    assert type_level(katy, t, snap) == "developer"
    assert type_level(frank, u, snap) is None  # roles are not inherited between types
    assert schema_level(john, snap.schemas["1"], snap) == "developer"
    assert schema_level(frank, snap.schemas["1"], snap) is None


LEVELS = (None, "viewer", "user", "developer", "manager")

# Override at `override` (holders: "other", and the account when `member`); the account holds
# schema level `held`. Expected effective type level, written out from the rule by hand.
OVERRIDE_CASES: list[tuple[str, bool, str | None, str | None]] = [
    # developer overridden
    ("developer", False, None, None),
    ("developer", False, "viewer", "viewer"),
    ("developer", False, "user", "user"),
    ("developer", False, "developer", "user"),
    ("developer", False, "manager", "manager"),
    ("developer", True, None, "developer"),
    ("developer", True, "viewer", "developer"),
    ("developer", True, "user", "developer"),
    ("developer", True, "developer", "developer"),
    ("developer", True, "manager", "manager"),
    # manager overridden
    ("manager", False, None, None),
    ("manager", False, "viewer", "viewer"),
    ("manager", False, "user", "user"),
    ("manager", False, "developer", "developer"),
    ("manager", False, "manager", "developer"),
    ("manager", True, None, "manager"),
    ("manager", True, "viewer", "manager"),
    ("manager", True, "manager", "manager"),
    # user overridden
    ("user", False, None, None),
    ("user", False, "viewer", "viewer"),
    ("user", False, "user", "viewer"),
    ("user", False, "developer", "developer"),
    ("user", False, "manager", "manager"),
    ("user", True, None, "user"),
    ("user", True, "viewer", "user"),
    ("user", True, "developer", "developer"),
]


@pytest.mark.parametrize(("override", "member", "held", "expected"), OVERRIDE_CASES)
def test_override_rule(
    override: str, member: bool, held: str | None, expected: str | None
) -> None:
    type_holders = ["other", "acc"] if member else ["other"]
    snap = snapshot(
        schemas=[schema("1", "ws", {held: ["acc"]} if held else {})],
        types=[object_type("T", "1", {override: type_holders})],
    )
    assert type_level(frozenset({"acc"}), snap.object_types["T"], snap) == expected


@pytest.mark.parametrize("held", LEVELS)
def test_without_overrides_the_schema_role_applies_to_every_type(held: str | None) -> None:
    snap = snapshot(
        schemas=[schema("1", "ws", {held: ["acc"]} if held else {})],
        types=[object_type("T", "1")],
    )
    assert type_level(frozenset({"acc"}), snap.object_types["T"], snap) == held


@pytest.mark.parametrize(
    ("type_roles", "held", "expected"),
    [
        # a type holder of a higher level also has the overridden lower level
        ({"manager": ["acc"], "developer": ["other"]}, None, "manager"),
        ({"manager": ["other"], "developer": ["acc"]}, "manager", "developer"),
        ({"manager": ["other"], "developer": ["other"], "user": ["other"]}, "manager", "viewer"),
        ({"manager": ["other"], "developer": ["other"], "user": ["acc"]}, "manager", "user"),
        # a type role without an override at that level
        ({"user": ["acc"]}, "developer", "developer"),
        ({"developer": ["acc"], "manager": ["other"]}, "manager", "developer"),
        # empty holders are no override
        ({"developer": []}, "developer", "developer"),
    ],
)
def test_several_overrides(
    type_roles: dict[str, list[str]], held: str | None, expected: str | None
) -> None:
    snap = snapshot(
        schemas=[schema("1", "ws", {held: ["acc"]} if held else {})],
        types=[object_type("T", "1", type_roles)],
    )
    assert type_level(frozenset({"acc"}), snap.object_types["T"], snap) == expected


def test_any_identity_of_the_account_counts() -> None:
    snap = snapshot(
        schemas=[schema("1", "ws", {"viewer": ["connect:app"], "manager": ["member-of-group"]})],
        types=[object_type("T", "1", {"developer": ["oauth:client"]})],
    )
    t = snap.object_types["T"]
    assert type_level(frozenset({"app-account", "connect:app"}), t, snap) == "viewer"
    assert type_level(frozenset({"oauth:client"}), t, snap) == "developer"
    assert type_level(frozenset({"member-of-group"}), t, snap) == "manager"


def test_admins_are_admin_everywhere() -> None:
    snap = snapshot(
        schemas=[schema("1", "ws")],
        types=[object_type("T", "1", {"manager": ["other"]})],
        admins=["boss"],
    )
    assert type_level(frozenset({"boss"}), snap.object_types["T"], snap) == "admin"
    assert schema_level(frozenset({"boss"}), snap.schemas["1"], snap) == "admin"
    assert type_level(frozenset({"nobody"}), snap.object_types["T"], snap) is None


def test_the_highest_schema_role_wins() -> None:
    snap = snapshot(schemas=[schema("1", "ws", {"viewer": ["acc"], "manager": ["acc"]})])
    assert schema_level(frozenset({"acc"}), snap.schemas["1"], snap) == "manager"


def test_a_type_whose_schema_is_missing_uses_type_roles_only() -> None:
    snap = snapshot(types=[object_type("T", "gone", {"user": ["acc"]})])
    assert type_level(frozenset({"acc"}), snap.object_types["T"], snap) == "user"
    assert type_level(frozenset({"other"}), snap.object_types["T"], snap) is None


def test_readable_lists() -> None:
    snap = snapshot(
        schemas=[
            schema("2", "ws", {"viewer": ["acc"]}),
            schema("10", "ws", {"manager": ["other"]}),
            schema("9", "ws", {"user": ["acc"]}),
            schema("abc", "ws"),
            schema("3", "other-ws", {"manager": ["acc"]}),
        ],
        types=[
            object_type("100", "10", {"user": ["acc"]}),
            object_type("20", "10", {"developer": ["acc"]}),
            object_type("21", "10"),
            object_type("5", "2", {"manager": ["acc"]}),  # schema role already reads it
            object_type("7", "abc", {"user": ["acc"]}),
            object_type("8", "3", {"user": ["acc"]}),  # another workspace
        ],
    )
    readable = readable_in_workspace(frozenset({"acc"}), "ws", snap)
    assert readable.schemas == ("2", "9", "10", "abc")
    assert readable.types == ("7", "20", "100")
    assert readable.anything
    nothing = readable_in_workspace(frozenset({"nobody"}), "ws", snap)
    assert nothing.schemas == () and nothing.types == () and not nothing.anything
    assert reads_schema_through_types(frozenset({"acc"}), "10", snap)
    assert not reads_schema_through_types(frozenset({"other"}), "10", snap)


def test_id_sort_key_is_numeric_first_then_by_code_point() -> None:
    ids = ["b", "10", "2", "A", "007", "7", "1a", "٣"]
    assert sorted(ids, key=id_sort_key) == ["2", "007", "7", "10", "1a", "A", "b", "٣"]
