"""Effective roles: schema roles, the object-type override rule, and what an account can read."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.store.model import RANK, SCHEMA_LEVELS, TYPE_LEVELS, ObjectType, Schema, Snapshot

ADMIN = "admin"
VIEWER = "viewer"


def is_admin(identities: frozenset[str], snapshot: Snapshot) -> bool:
    return not identities.isdisjoint(snapshot.admins)


def _held_schema_level(identities: frozenset[str], schema: Schema) -> str | None:
    """The highest role the schema's own holders give (no admin, no type roles)."""
    for level in SCHEMA_LEVELS:  # highest first
        holders = schema.roles.get(level)
        if holders is not None and holders.includes(identities):
            return level
    return None


def _held_type_level(identities: frozenset[str], object_type: ObjectType) -> str | None:
    """The highest role the type's own holders give."""
    for level in TYPE_LEVELS:  # highest first
        holders = object_type.roles.get(level)
        if holders is not None and holders.includes(identities):
            return level
    return None


def _at_least(level: str | None, minimum: str) -> bool:
    return level is not None and RANK[level] >= RANK[minimum]


def schema_level(identities: frozenset[str], schema: Schema, snapshot: Snapshot) -> str | None:
    """The account's role on the schema itself: "admin" for admins, else its schema role."""
    if is_admin(identities, snapshot):
        return ADMIN
    return _held_schema_level(identities, schema)


def type_level(
    identities: frozenset[str], object_type: ObjectType, snapshot: Snapshot
) -> str | None:
    """The account's effective role on an object type (assets-model.md section 1).

    For each level L (manager, developer, user), highest first: when the type has holders for
    L, the account has L only as a type holder of L or higher; otherwise it has L as a schema
    holder of L or higher or a type holder of L or higher. Any schema role gives at least
    viewer; admins are "admin".
    """
    if is_admin(identities, snapshot):
        return ADMIN
    schema = snapshot.schemas.get(object_type.schema_id)
    on_schema = _held_schema_level(identities, schema) if schema is not None else None
    on_type = _held_type_level(identities, object_type)
    for level in TYPE_LEVELS:
        if object_type.roles.get(level):
            if _at_least(on_type, level):
                return level
        elif _at_least(on_schema, level) or _at_least(on_type, level):
            return level
    return VIEWER if on_schema is not None else None


def has_type_role(identities: frozenset[str], object_type: ObjectType) -> bool:
    """Whether the account is a holder of any role on the type itself."""
    return _held_type_level(identities, object_type) is not None


def id_sort_key(identifier: str) -> tuple[int, int, str]:
    """Ascending order for ids: all-digit ids numerically first, then the rest by code point."""
    if identifier.isascii() and identifier.isdigit():
        return (0, int(identifier), identifier)
    return (1, 0, identifier)


@dataclass(frozen=True)
class Readable:
    """What an account can read in one workspace (for the readable-schemas/types headers).

    `schemas`: every schema the account can read, through a schema role or through a role on
    one of its types. `types`: the types the account reads through a type role in a schema
    where it holds no schema role. So an object of type T in schema S is readable exactly when
    T is in `types`, or S is in `schemas` and no type of S is in `types` (a schema role reads
    every type of its schema). Both ascending by `id_sort_key`.
    """

    schemas: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def anything(self) -> bool:
        return bool(self.schemas)


def readable_in_workspace(
    identities: frozenset[str], workspace_id: str, snapshot: Snapshot
) -> Readable:
    """Compute `Readable` for a non-admin account (admins read everything: "*")."""
    in_workspace = {s.id: s for s in snapshot.schemas.values() if s.workspace == workspace_id}
    by_schema_role = {
        sid for sid, schema in in_workspace.items()
        if _held_schema_level(identities, schema) is not None
    }
    through_types: set[str] = set()
    types: set[str] = set()
    for object_type in snapshot.object_types.values():
        sid = object_type.schema_id
        if sid in in_workspace and has_type_role(identities, object_type):
            through_types.add(sid)
            if sid not in by_schema_role:
                types.add(object_type.id)
    return Readable(
        schemas=tuple(sorted(by_schema_role | through_types, key=id_sort_key)),
        types=tuple(sorted(types, key=id_sort_key)),
    )


def reads_schema_through_types(
    identities: frozenset[str], schema_id: str, snapshot: Snapshot
) -> bool:
    """Whether the account holds a role on any object type of the schema."""
    return any(
        t.schema_id == schema_id and has_type_role(identities, t)
        for t in snapshot.object_types.values()
    )
