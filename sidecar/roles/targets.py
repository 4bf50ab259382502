"""Target resolution: which workspace, schema, type or import source an operation acts on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sidecar.authn.principal import Principal
from sidecar.decision import Deny, Reason
from sidecar.operations.router import Managed, Route
from sidecar.operations.table import OperationMatch, TargetKind
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot

OBJECT_TYPE_FIELD = "objectTypeId"
OBJECT_SCHEMA_FIELD = "objectSchemaId"


@dataclass(frozen=True)
class Target:
    """A resolved target. `kind` is WORKSPACE, SCHEMA, TYPE, OBJECT, ATTRIBUTE or IMPORT_SOURCE;
    OBJECT and ATTRIBUTE targets carry their type (and schema) for the role check."""

    kind: TargetKind
    workspace_id: str
    schema_id: str | None = None
    type_id: str | None = None
    import_source_id: str | None = None
    object_id: str | None = None
    attribute_id: str | None = None

    def describe(self) -> str:
        """A short text for traces and logs (ids only)."""
        parts = [f"workspace {self.workspace_id}"]
        for label, value in (
            ("schema", self.schema_id),
            ("type", self.type_id),
            ("object", self.object_id),
            ("attribute", self.attribute_id),
            ("import source", self.import_source_id),
        ):
            if value is not None:
                parts.append(f"{label} {value}")
        return ", ".join(parts)


class UnknownTarget(Deny):
    """`unknown_target` because an id is missing from the snapshot's index.

    `kind` and `ident` say what was looked up, so a caller with a live resolver can ask the
    upstream about it and retry with a fuller snapshot.
    """

    def __init__(self, kind: TargetKind, ident: str) -> None:
        super().__init__(Reason.UNKNOWN_TARGET, f"unknown {kind.value} {ident!r}")
        self.kind = kind
        self.ident = ident


def resolve_target(
    match: OperationMatch,
    route: Route,
    request: HttpRequest,
    snapshot: Snapshot,
    principal: Principal | None = None,
) -> Target:
    """Resolve the operation's target, or raise Deny (bad_request, unknown_target).

    `principal` is needed only for imports-info, whose target is the token's import source.
    """
    operation = match.operation
    kind = operation.target
    if kind is TargetKind.IMPORTS_INFO:
        own = principal.import_source_id if principal is not None else None
        if own is None:
            raise Deny(Reason.UNKNOWN_TARGET, "imports-info without a bound import source")
        return _import_source(own, None, snapshot)
    if not isinstance(route, Managed):
        raise Deny(Reason.INTERNAL_ERROR, f"{operation.name} routed outside a base path")
    workspace = route.workspace_id
    if workspace not in snapshot.workspaces:
        raise Deny(Reason.UNKNOWN_TARGET, f"unknown workspace {workspace!r}")
    if kind is TargetKind.WORKSPACE:
        return Target(TargetKind.WORKSPACE, workspace)
    if kind is TargetKind.SCHEMA:
        return _schema(match.param(operation.target_param), workspace, snapshot)
    if kind is TargetKind.TYPE:
        target = _type(match.param(operation.target_param), workspace, snapshot)
        if operation.attribute_param is not None:
            _check_attribute_of(match.param(operation.attribute_param), target, snapshot)
        return target
    if kind is TargetKind.OBJECT:
        return _object(match.param(operation.target_param), workspace, snapshot)
    if kind is TargetKind.ATTRIBUTE:
        return _attribute(match.param(operation.target_param), workspace, snapshot)
    if kind is TargetKind.IMPORT_SOURCE:
        return _import_source(match.param(operation.target_param), workspace, snapshot)
    if kind is TargetKind.BODY_TYPE:
        return _type(_required_id(request, OBJECT_TYPE_FIELD), workspace, snapshot)
    if kind is TargetKind.BODY_SCHEMA:
        return _schema(_required_id(request, OBJECT_SCHEMA_FIELD), workspace, snapshot)
    if kind is TargetKind.CONFIG_READ:
        values = request.query_values(OBJECT_SCHEMA_FIELD)
        if len(values) > 1:
            raise Deny(Reason.BAD_REQUEST, f"repeated query parameter {OBJECT_SCHEMA_FIELD}")
        if values:
            return _schema(values[0], workspace, snapshot)
        return Target(TargetKind.WORKSPACE, workspace)
    if kind is TargetKind.CONFIG_WRITE:
        schema_id = _optional_id(request, OBJECT_SCHEMA_FIELD)
        if schema_id is not None:
            return _schema(schema_id, workspace, snapshot)
        return Target(TargetKind.WORKSPACE, workspace)
    raise Deny(Reason.INTERNAL_ERROR, f"no resolution for target kind {kind.value}")


def _schema(schema_id: str, workspace: str, snapshot: Snapshot) -> Target:
    schema = snapshot.schemas.get(schema_id)
    if schema is None:
        raise UnknownTarget(TargetKind.SCHEMA, schema_id)
    if schema.workspace != workspace:
        raise Deny(Reason.UNKNOWN_TARGET, f"schema {schema_id!r} is in another workspace")
    return Target(TargetKind.SCHEMA, workspace, schema_id=schema_id)


def _type(
    type_id: str,
    workspace: str,
    snapshot: Snapshot,
    *,
    kind: TargetKind = TargetKind.TYPE,
    object_id: str | None = None,
    attribute_id: str | None = None,
) -> Target:
    object_type = snapshot.object_types.get(type_id)
    if object_type is None:
        raise UnknownTarget(TargetKind.TYPE, type_id)
    schema = snapshot.schemas.get(object_type.schema_id)
    if schema is None:
        raise UnknownTarget(TargetKind.SCHEMA, object_type.schema_id)
    if schema.workspace != workspace:
        raise Deny(Reason.UNKNOWN_TARGET, f"object type {type_id!r} is in another workspace")
    return Target(
        kind,
        workspace,
        schema_id=schema.id,
        type_id=type_id,
        object_id=object_id,
        attribute_id=attribute_id,
    )


def _object(object_id: str, workspace: str, snapshot: Snapshot) -> Target:
    type_id = snapshot.objects.get(object_id)
    if type_id is None:
        raise UnknownTarget(TargetKind.OBJECT, object_id)
    return _type(type_id, workspace, snapshot, kind=TargetKind.OBJECT, object_id=object_id)


def _attribute(attribute_id: str, workspace: str, snapshot: Snapshot) -> Target:
    type_id = snapshot.attributes.get(attribute_id)
    if type_id is None:
        raise UnknownTarget(TargetKind.ATTRIBUTE, attribute_id)
    return _type(
        type_id, workspace, snapshot, kind=TargetKind.ATTRIBUTE, attribute_id=attribute_id
    )


def _check_attribute_of(attribute_id: str, target: Target, snapshot: Snapshot) -> None:
    # The table's target is the type in the path; an attribute known to belong to another
    # type must not be reachable through a type the caller happens to manage.
    owner = snapshot.attributes.get(attribute_id)
    if owner is not None and owner != target.type_id:
        raise Deny(
            Reason.UNKNOWN_TARGET, f"attribute {attribute_id!r} is not of type {target.type_id!r}"
        )


def _import_source(source_id: str, workspace: str | None, snapshot: Snapshot) -> Target:
    source = snapshot.import_sources.get(source_id)
    if source is None:
        raise UnknownTarget(TargetKind.IMPORT_SOURCE, source_id)
    schema = snapshot.schemas.get(source.schema_id)
    if schema is None:
        raise UnknownTarget(TargetKind.SCHEMA, source.schema_id)
    if workspace is not None and schema.workspace != workspace:
        raise Deny(Reason.UNKNOWN_TARGET, f"import source {source_id!r} is in another workspace")
    return Target(
        TargetKind.IMPORT_SOURCE, schema.workspace, schema_id=schema.id, import_source_id=source_id
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Parsers disagree on which duplicate wins; the upstream must not see another id.
            raise ValueError("duplicate key in JSON object")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _body_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or Deny(bad_request)."""
    if request.body is None:
        raise Deny(Reason.BAD_REQUEST, "the operation needs the request body (with_request_body)")
    if request.body_partial:
        raise Deny(Reason.BAD_REQUEST, "the request body was truncated (partial body)")
    try:
        data = json.loads(
            request.body.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Deny(Reason.BAD_REQUEST, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Deny(Reason.BAD_REQUEST, "the request body is not a JSON object")
    return data


def _required_id(request: HttpRequest, name: str) -> str:
    """A required id field of the JSON body."""
    body = _body_object(request)
    if name not in body:
        raise Deny(Reason.BAD_REQUEST, f"the request body has no {name}")
    return _as_id(body[name], name)


def _optional_id(request: HttpRequest, name: str) -> str | None:
    """An optional id field of the JSON body; absent or null gives None."""
    value = _body_object(request).get(name)
    return None if value is None else _as_id(value, name)


def _as_id(value: Any, name: str) -> str:
    """Ids are JSON strings or integers (never a bool, float, null or anything else)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Deny(Reason.BAD_REQUEST, f"{name} in the request body must be a string or integer")
    return str(value)
