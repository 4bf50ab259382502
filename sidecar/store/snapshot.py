"""The store's policy content as plain rows: built from a policy, diffed, turned into a Snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from sidecar.store.model import (
    SCHEMA_LEVELS,
    TYPE_LEVELS,
    Holders,
    ImportSource,
    Installation,
    ObjectType,
    Schema,
    Snapshot,
    TokenRecord,
)
from sidecar.store.policy import Policy, RoleHolders

USER, GROUP, APP = "user", "group", "app"
SCHEMA_TARGET, TYPE_TARGET = "schema", "type"


class SchemaRow(NamedTuple):
    workspace: str
    key: str


class TypeRow(NamedTuple):
    schema_id: str
    name: str


class InstallationRow(NamedTuple):
    app_key: str
    account_id: str
    scopes: str  # space-separated, sorted
    secret_env: str | None
    secret_file: str | None


class RoleRow(NamedTuple):
    target_kind: str  # "schema" | "type"
    target_id: str
    level: str
    holder_kind: str  # "user" | "group" | "app"
    holder: str


Row = TypeVar("Row", bound=tuple[object, ...] | str)


class Holder(NamedTuple):
    kind: str  # "user" | "group" | "app"
    name: str


@dataclass
class State:
    """Everything `apply` manages, normalised (groups unexpanded); tokens are not part of it."""

    workspaces: set[str] = field(default_factory=set)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # account id -> email as written
    admins: set[Holder] = field(default_factory=set)
    schemas: dict[str, SchemaRow] = field(default_factory=dict)
    object_types: dict[str, TypeRow] = field(default_factory=dict)
    roles: set[RoleRow] = field(default_factory=set)
    import_sources: dict[str, str] = field(default_factory=dict)  # id -> schema id
    objects: dict[str, str] = field(default_factory=dict)  # id -> type id
    attributes: dict[str, str] = field(default_factory=dict)  # id -> type id
    installations: dict[str, InstallationRow] = field(default_factory=dict)


def _holders(holders: RoleHolders) -> set[Holder]:
    return (
        {Holder(USER, u) for u in holders.users}
        | {Holder(GROUP, g) for g in holders.groups}
        | {Holder(APP, a) for a in holders.apps}
    )


def _role_rows(kind: str, target: str, roles: Mapping[str, RoleHolders]) -> set[RoleRow]:
    return {
        RoleRow(kind, target, level, h.kind, h.name)
        for level, holders in roles.items()
        for h in _holders(holders)
    }


def state_from_policy(policy: Policy) -> State:
    """The desired state a validated policy describes."""
    state = State(
        workspaces=set(policy.workspaces),
        groups={name: frozenset(members) for name, members in policy.groups.items()},
        users={u.account_id: u.email for u in policy.users},
        admins=_holders(policy.admins),
        objects=dict(policy.objects),
        attributes=dict(policy.attributes),
    )
    for schema in policy.schemas:
        state.schemas[schema.id] = SchemaRow(schema.workspace, schema.key)
        state.roles |= _role_rows(SCHEMA_TARGET, schema.id, schema.roles)
        for object_type in schema.object_types:
            state.object_types[object_type.id] = TypeRow(schema.id, object_type.name)
            state.roles |= _role_rows(TYPE_TARGET, object_type.id, object_type.roles)
        for source in schema.import_sources:
            state.import_sources[source] = schema.id
    for inst in policy.installations:
        state.installations[inst.client_key] = InstallationRow(
            inst.app_key, inst.account_id, " ".join(sorted(inst.scopes)),
            inst.shared_secret_env, inst.shared_secret_file,
        )
    return state


def _set_change(added: Iterable[str], removed: Iterable[str]) -> str:
    return " ".join([f"+{a}" for a in sorted(added)] + [f"-{r}" for r in sorted(removed)])


def _holders_text(holders: Iterable[Holder]) -> list[str]:
    return [f"{h.kind}:{h.name}" for h in holders]


def _show(value: object) -> str:
    return "(none)" if value is None else str(value)


def _keyed(
    old: Mapping[str, Row],
    new: Mapping[str, Row],
    what: str,
    describe: Callable[[Row], str],
    names: tuple[str, ...],
    out: list[str],
) -> None:
    """Added, changed (field by field) and removed entries of one id -> row mapping."""
    for key in sorted(new.keys() - old.keys()):
        out.append(f"+ {what} {key}{describe(new[key])}")
    for key in sorted(new.keys() & old.keys()):
        before, after = old[key], new[key]
        if before == after:
            continue
        b = before if isinstance(before, tuple) else (before,)
        a = after if isinstance(after, tuple) else (after,)
        out.extend(
            f"~ {what} {key} {name}: {_show(x)} -> {_show(y)}"
            for name, x, y in zip(names, b, a, strict=True)
            if x != y
        )
    for key in sorted(old.keys() - new.keys()):
        out.append(f"- {what} {key}{describe(old[key])}")


def _role_changes(
    old: State, new: State, kind: str, kept: Iterable[str], label: str, out: list[str]
) -> None:
    def by_target(state: State) -> dict[tuple[str, str], set[Holder]]:
        grouped: dict[tuple[str, str], set[Holder]] = {}
        for row in state.roles:
            if row.target_kind == kind:
                grouped.setdefault((row.target_id, row.level), set()).add(
                    Holder(row.holder_kind, row.holder)
                )
        return grouped

    before, after = by_target(old), by_target(new)
    kept_ids = set(kept)
    for target, level in sorted(before.keys() | after.keys()):
        if target not in kept_ids:
            continue
        o, n = before.get((target, level), set()), after.get((target, level), set())
        if o != n:
            change = _set_change(_holders_text(n - o), _holders_text(o - n))
            out.append(f"~ {label} {target} roles.{level}: {change}")


def diff_states(old: State, new: State) -> list[str]:
    """Human-readable changes that turn `old` into `new` (empty when they are equal)."""
    out: list[str] = []
    for ws in sorted(new.workspaces - old.workspaces):
        out.append(f"+ workspace {ws}")
    for ws in sorted(old.workspaces - new.workspaces):
        out.append(f"- workspace {ws}")
    for name in sorted(new.groups.keys() - old.groups.keys()):
        count = len(new.groups[name])
        out.append(f"+ group {name} ({count} member{'' if count == 1 else 's'})")
    for name in sorted(new.groups.keys() & old.groups.keys()):
        if old.groups[name] != new.groups[name]:
            change = _set_change(new.groups[name] - old.groups[name],
                                 old.groups[name] - new.groups[name])
            out.append(f"~ group {name}: {change}")
    for name in sorted(old.groups.keys() - new.groups.keys()):
        out.append(f"- group {name}")
    _keyed(old.users, new.users, "user", lambda _v: "", ("email",), out)
    if old.admins != new.admins:
        change = _set_change(_holders_text(new.admins - old.admins),
                             _holders_text(old.admins - new.admins))
        out.append(f"~ admins: {change}")
    _keyed(
        old.installations, new.installations, "connect installation",
        lambda v: f" ({v.app_key})", InstallationRow._fields, out,
    )
    _keyed(old.schemas, new.schemas, "schema", lambda v: f" ({v.key})", SchemaRow._fields, out)
    _role_changes(old, new, SCHEMA_TARGET, old.schemas.keys() & new.schemas.keys(), "schema", out)
    _keyed(
        old.object_types, new.object_types, "object type",
        lambda v: f" ({v.name}) in schema {v.schema_id}", TypeRow._fields, out,
    )
    _role_changes(
        old, new, TYPE_TARGET, old.object_types.keys() & new.object_types.keys(),
        "object type", out,
    )
    _keyed(
        old.import_sources, new.import_sources, "import source",
        lambda v: f" in schema {v}", ("schema",), out,
    )
    _keyed(old.objects, new.objects, "object", lambda v: f" (type {v})", ("type",), out)
    _keyed(old.attributes, new.attributes, "attribute", lambda v: f" (type {v})", ("type",), out)
    return out


def _expand(holders: Iterable[Holder], groups: Mapping[str, frozenset[str]]) -> frozenset[str]:
    identities: set[str] = set()
    for holder in holders:
        if holder.kind == GROUP:
            identities |= groups.get(holder.name, frozenset())
        else:
            identities.add(holder.name)
    return frozenset(identities)


def build_snapshot(
    state: State, tokens: Mapping[str, TokenRecord], *, generation: int, token_key: bytes
) -> Snapshot:
    """The immutable Snapshot of one generation: groups expanded, emails lower-cased."""
    holders: dict[tuple[str, str, str], set[Holder]] = {}
    for row in state.roles:
        holders.setdefault((row.target_kind, row.target_id, row.level), set()).add(
            Holder(row.holder_kind, row.holder)
        )

    def roles(kind: str, target: str, levels: tuple[str, ...]) -> Mapping[str, Holders]:
        return MappingProxyType({
            level: Holders(_expand(holders.get((kind, target, level), ()), state.groups))
            for level in levels
        })

    return Snapshot(
        generation=generation,
        workspaces=frozenset(state.workspaces),
        admins=_expand(state.admins, state.groups),
        groups=MappingProxyType(dict(state.groups)),
        users=MappingProxyType({a: e.lower() for a, e in state.users.items()}),
        schemas=MappingProxyType({
            sid: Schema(sid, row.workspace, row.key, roles(SCHEMA_TARGET, sid, SCHEMA_LEVELS))
            for sid, row in state.schemas.items()
        }),
        object_types=MappingProxyType({
            tid: ObjectType(tid, row.schema_id, row.name, roles(TYPE_TARGET, tid, TYPE_LEVELS))
            for tid, row in state.object_types.items()
        }),
        objects=MappingProxyType(dict(state.objects)),
        attributes=MappingProxyType(dict(state.attributes)),
        import_sources=MappingProxyType({
            iid: ImportSource(iid, schema_id) for iid, schema_id in state.import_sources.items()
        }),
        installations=MappingProxyType({
            key: Installation(
                client_key=key,
                app_key=row.app_key,
                scopes=frozenset(row.scopes.split()),
                account_id=row.account_id,
                shared_secret_env=row.secret_env,
                shared_secret_file=row.secret_file,
            )
            for key, row in state.installations.items()
        }),
        tokens=MappingProxyType(dict(tokens)),
        token_key=token_key,
    )
