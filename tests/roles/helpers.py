"""Small builders for snapshots, principals and requests used by the layer-3 tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.request import HttpRequest, build_request
from sidecar.store.model import Holders, ImportSource, ObjectType, Schema, Snapshot

BASE = "/jsm/assets/workspace/{ws}/v1"

RoleMap = Mapping[str, Iterable[str]]  # level -> identities


def holders(ids: Iterable[str]) -> Holders:
    return Holders(frozenset(ids))


def schema(sid: str, workspace: str, roles: RoleMap | None = None, key: str = "") -> Schema:
    return Schema(
        sid, workspace, key or f"S{sid}", {lvl: holders(ids) for lvl, ids in (roles or {}).items()}
    )


def object_type(tid: str, schema_id: str, roles: RoleMap | None = None) -> ObjectType:
    return ObjectType(
        tid, schema_id, f"T{tid}", {lvl: holders(ids) for lvl, ids in (roles or {}).items()}
    )


def snapshot(
    *,
    schemas: Iterable[Schema] = (),
    types: Iterable[ObjectType] = (),
    objects: Mapping[str, str] | None = None,
    attributes: Mapping[str, str] | None = None,
    import_sources: Mapping[str, str] | None = None,
    admins: Iterable[str] = (),
    workspaces: Iterable[str] | None = None,
) -> Snapshot:
    """A snapshot; workspaces default to those of the schemas."""
    schema_list = list(schemas)
    return Snapshot(
        generation=1,
        workspaces=frozenset(
            workspaces if workspaces is not None else {s.workspace for s in schema_list}
        ),
        admins=frozenset(admins),
        schemas={s.id: s for s in schema_list},
        object_types={t.id: t for t in types},
        objects=dict(objects or {}),
        attributes=dict(attributes or {}),
        import_sources={i: ImportSource(i, s) for i, s in (import_sources or {}).items()},
    )


def world(
    *,
    schema_roles: RoleMap | None = None,
    type_roles: RoleMap | None = None,
    admins: Iterable[str] = (),
    other_type_roles: RoleMap | None = None,
) -> Snapshot:
    """Two workspaces: ws-1 (schema 1: types 10 and 11) and ws-2 (schema 2: type 20).

    Object 88 and attribute 501 are of type 10, object 89 and attribute 502 of type 11,
    object 99 and attribute 601 of type 20; import sources is-1 (schema 1) and is-2 (schema 2).
    `type_roles` go on type 10, `other_type_roles` on type 11.
    """
    return snapshot(
        schemas=[schema("1", "ws-1", schema_roles), schema("2", "ws-2", {"manager": ["mgr-2"]})],
        types=[
            object_type("10", "1", type_roles),
            object_type("11", "1", other_type_roles),
            object_type("20", "2"),
        ],
        objects={"88": "10", "89": "11", "99": "20"},
        attributes={"501": "10", "502": "11", "601": "20"},
        import_sources={"is-1": "1", "is-2": "2"},
        admins=admins,
        workspaces=["ws-1", "ws-2", "ws-empty"],
    )


def user(account_id: str = "acc", *extra: str, scopes: Iterable[str] | None = None) -> Principal:
    """A user acting through an API token (unscoped unless `scopes` is given)."""
    return Principal(
        auth_type=AuthType.API_TOKEN,
        kind=PrincipalKind.USER,
        account_id=account_id,
        identities=frozenset({account_id, *extra}),
        scopes=frozenset(scopes) if scopes is not None else None,
    )


def container(import_source_id: str) -> Principal:
    return Principal(
        auth_type=AuthType.CONTAINER_TOKEN,
        kind=PrincipalKind.CONTAINER,
        account_id=None,
        identities=frozenset(),
        import_source_id=import_source_id,
    )


def request(
    method: str,
    path: str,
    *,
    ws: str = "ws-1",
    body: Any = None,
    raw_body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpRequest:
    """A request under the default base path; `body` is JSON-encoded, `raw_body` sent as is."""
    data = raw_body if raw_body is not None else (
        json.dumps(body).encode() if body is not None else None
    )
    return build_request(
        method=method, target=BASE.format(ws=ws) + path, headers=dict(headers or {}), body=data
    )
