"""The operation table (assets-model.md section 3), compiled once into a segment trie."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class TargetKind(enum.StrEnum):
    """What an operation acts on, and so how its target is resolved.

    The first six are also the kinds of a resolved `sidecar.roles.targets.Target`; the others
    only appear in the table and resolve to one of the first six.
    """

    WORKSPACE = "workspace"
    SCHEMA = "schema"  # path parameter `target_param` is a schema id
    TYPE = "type"  # path parameter `target_param` is an object type id
    OBJECT = "object"  # path parameter `target_param` is an object id → its type
    ATTRIBUTE = "attribute"  # path parameter `target_param` is an attribute id → its type
    IMPORT_SOURCE = "import_source"  # path parameter `target_param` is an import source id
    BODY_TYPE = "body_type"  # object type from the JSON body's `objectTypeId`
    BODY_SCHEMA = "body_schema"  # schema from the JSON body's `objectSchemaId`
    CONFIG_READ = "config_read"  # the schema of query `objectSchemaId`, else the workspace
    CONFIG_WRITE = "config_write"  # the schema of body `objectSchemaId`, else the workspace
    IMPORTS_INFO = "imports_info"  # the import source the container token is bound to


class MatchStatus(enum.Enum):
    NONE = "none"  # no such path
    METHOD_MISMATCH = "method_mismatch"  # the path exists, not with this method
    FULL = "full"


@dataclass(frozen=True)
class Operation:
    """One row of the table, for one route (rows of one name may differ, see config.global).

    `min_role` is a level name ("viewer".."admin"), "any" (any authenticated account) or
    "container" (container tokens only). On a WORKSPACE target "viewer" means "viewer somewhere
    in the workspace"; a CONFIG_WRITE target that resolves to the workspace needs "admin".
    `lists_readable` asks layer 3 for the readable-schemas list, `lists_types` also for the
    readable-object-types list. `attribute_param` names a path parameter holding an attribute
    of the target type (checked to belong to that type when the attribute is known).
    """

    name: str
    oauth_scope: str | None
    connect_scope: str  # "READ" | "WRITE" | "DELETE" | "ADMIN"
    min_role: str
    target: TargetKind
    lists_readable: bool = False
    lists_types: bool = False
    target_param: str = "id"
    attribute_param: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    """One method and path pattern of the table, relative to a base path.

    Method "*" is any method. A pattern ending in "/**" covers its prefix and everything
    below it; a more specific route with the request's method wins over it.
    """

    method: str
    pattern: str
    operation: Operation


@dataclass(frozen=True)
class OperationMatch:
    """An operation found for a request, with its path parameters (decoded segments)."""

    operation: Operation
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pattern: str = ""

    def param(self, name: str) -> str:
        return self.params[name]


@dataclass(frozen=True)
class TableMatch:
    status: MatchStatus
    match: OperationMatch | None = None
    allowed_methods: tuple[str, ...] = ()


_OBJ = "cmdb-object:jira"
_SCH = "cmdb-schema:jira"
_TYP = "cmdb-type:jira"
_ATT = "cmdb-attribute:jira"
_CFG = "cmdb-config:jira"
_IMPORT = "import:import-configuration:cmdb"

_K = TargetKind
OBJECT_READ = Operation("object.read", f"read:{_OBJ}", "READ", "viewer", _K.OBJECT)
OBJECT_UPDATE = Operation("object.update", f"write:{_OBJ}", "WRITE", "developer", _K.OBJECT)
OBJECT_DELETE = Operation("object.delete", f"delete:{_OBJ}", "DELETE", "manager", _K.OBJECT)
OBJECT_CREATE = Operation("object.create", f"write:{_OBJ}", "WRITE", "developer", _K.BODY_TYPE)
OBJECT_SEARCH = Operation(
    "object.search", f"read:{_OBJ}", "READ", "viewer", _K.WORKSPACE,
    lists_readable=True, lists_types=True,
)
SCHEMA_LIST = Operation(
    "schema.list", f"read:{_SCH}", "READ", "viewer", _K.WORKSPACE, lists_readable=True
)
SCHEMA_CREATE = Operation("schema.create", f"write:{_SCH}", "ADMIN", "admin", _K.WORKSPACE)
SCHEMA_READ = Operation("schema.read", f"read:{_SCH}", "READ", "viewer", _K.SCHEMA)
SCHEMA_UPDATE = Operation("schema.update", f"write:{_SCH}", "WRITE", "manager", _K.SCHEMA)
SCHEMA_DELETE = Operation("schema.delete", f"delete:{_SCH}", "ADMIN", "admin", _K.SCHEMA)
TYPE_READ = Operation("type.read", f"read:{_TYP}", "READ", "viewer", _K.TYPE)
TYPE_CREATE = Operation("type.create", f"write:{_TYP}", "WRITE", "manager", _K.BODY_SCHEMA)
TYPE_UPDATE = Operation("type.update", f"write:{_TYP}", "WRITE", "manager", _K.TYPE)
TYPE_DELETE = Operation("type.delete", f"delete:{_TYP}", "DELETE", "manager", _K.TYPE)
ATTRIBUTE_CREATE = Operation(
    "attribute.create", f"write:{_ATT}", "WRITE", "manager", _K.TYPE, target_param="objectTypeId"
)
ATTRIBUTE_UPDATE = Operation(
    "attribute.update", f"write:{_ATT}", "WRITE", "manager", _K.TYPE,
    target_param="objectTypeId", attribute_param="id",
)
ATTRIBUTE_DELETE = Operation(
    "attribute.delete", f"delete:{_ATT}", "DELETE", "manager", _K.ATTRIBUTE
)
ICON_READ = Operation("icon.read", "read:cmdb-icon:jira", "READ", "any", _K.WORKSPACE)
CONFIG_READ = Operation("config.read", f"read:{_CFG}", "READ", "viewer", _K.CONFIG_READ)
CONFIG_WRITE = Operation("config.write", f"write:{_CFG}", "WRITE", "manager", _K.CONFIG_WRITE)
CONFIG_DELETE = Operation("config.delete", f"delete:{_CFG}", "DELETE", "admin", _K.WORKSPACE)
CONFIG_GLOBAL_READ = Operation("config.global", f"read:{_CFG}", "ADMIN", "admin", _K.WORKSPACE)
CONFIG_GLOBAL_SCHEMA_READ = Operation(
    "config.global", f"read:{_CFG}", "ADMIN", "manager", _K.SCHEMA
)
CONFIG_GLOBAL_SCHEMA_WRITE = Operation(
    "config.global", f"write:{_CFG}", "ADMIN", "manager", _K.SCHEMA
)
IMPORT_RUN = Operation("import.run", _IMPORT, "WRITE", "manager", _K.IMPORT_SOURCE)
IMPORTSOURCE_USE = Operation("importsource.use", _IMPORT, "WRITE", "manager", _K.IMPORT_SOURCE)
IMPORTSOURCE_TOKEN = Operation(
    "importsource.token", _IMPORT, "WRITE", "manager", _K.IMPORT_SOURCE
)
# Reached only through `api.imports_info_path`; no OAuth scope, and no other credential kind
# gets past layer 2, so its Connect scope is the strictest one for completeness.
IMPORTS_INFO = Operation("imports.info", None, "ADMIN", "container", _K.IMPORTS_INFO)

_R = RouteSpec
ROUTES: tuple[RouteSpec, ...] = (
    _R("GET", "/object/{id}", OBJECT_READ),
    _R("GET", "/object/{id}/attributes", OBJECT_READ),
    _R("GET", "/object/{id}/history", OBJECT_READ),
    _R("GET", "/object/{id}/referenceinfo", OBJECT_READ),
    _R("GET", "/objectconnectedtickets/{id}/tickets", OBJECT_READ),
    _R("PUT", "/object/{id}", OBJECT_UPDATE),
    _R("DELETE", "/object/{id}", OBJECT_DELETE),
    _R("POST", "/object/create", OBJECT_CREATE),
    _R("POST", "/object/aql", OBJECT_SEARCH),
    _R("POST", "/object/aql/totalcount", OBJECT_SEARCH),
    _R("POST", "/object/navlist/aql", OBJECT_SEARCH),
    _R("POST", "/object/navlist/iql", OBJECT_SEARCH),
    _R("GET", "/aql/objects", OBJECT_SEARCH),
    _R("GET", "/iql/objects", OBJECT_SEARCH),
    _R("GET", "/objectschema/list", SCHEMA_LIST),
    _R("POST", "/objectschema/create", SCHEMA_CREATE),
    _R("GET", "/objectschema/{id}", SCHEMA_READ),
    _R("GET", "/objectschema/{id}/attributes", SCHEMA_READ),
    _R("GET", "/objectschema/{id}/objecttypes", SCHEMA_READ),
    _R("GET", "/objectschema/{id}/objecttypes/flat", SCHEMA_READ),
    _R("PUT", "/objectschema/{id}", SCHEMA_UPDATE),
    _R("DELETE", "/objectschema/{id}", SCHEMA_DELETE),
    _R("GET", "/objecttype/{id}", TYPE_READ),
    _R("GET", "/objecttype/{id}/attributes", TYPE_READ),
    _R("POST", "/objecttype/create", TYPE_CREATE),
    _R("PUT", "/objecttype/{id}", TYPE_UPDATE),
    _R("POST", "/objecttype/{id}/position", TYPE_UPDATE),
    _R("DELETE", "/objecttype/{id}", TYPE_DELETE),
    _R("POST", "/objecttypeattribute/{objectTypeId}", ATTRIBUTE_CREATE),
    _R("PUT", "/objecttypeattribute/{objectTypeId}/{id}", ATTRIBUTE_UPDATE),
    _R("DELETE", "/objecttypeattribute/{id}", ATTRIBUTE_DELETE),
    _R("GET", "/icon/global", ICON_READ),
    _R("GET", "/icon/{id}", ICON_READ),
    _R("GET", "/icon/{id}/icon.png", ICON_READ),
    _R("GET", "/config/statustype", CONFIG_READ),
    _R("GET", "/config/statustype/{id}", CONFIG_READ),
    _R("GET", "/config/referencetype", CONFIG_READ),
    _R("POST", "/config/statustype", CONFIG_WRITE),
    _R("PUT", "/config/statustype/{id}", CONFIG_WRITE),
    _R("POST", "/config/referencetype", CONFIG_WRITE),
    _R("DELETE", "/config/statustype/{id}", CONFIG_DELETE),
    _R("GET", "/global/config", CONFIG_GLOBAL_READ),
    _R("GET", "/global/config/objectschema/{id}", CONFIG_GLOBAL_SCHEMA_READ),
    _R("POST", "/global/config/objectschema/{id}/property", CONFIG_GLOBAL_SCHEMA_WRITE),
    _R("POST", "/import/start/{id}", IMPORT_RUN),
    _R("GET", "/progress/category/imports/{id}", IMPORT_RUN),
    _R("*", "/importsource/{id}/**", IMPORTSOURCE_USE),
    _R("POST", "/importsource/{id}/token", IMPORTSOURCE_TOKEN),
)


@dataclass(frozen=True)
class _Handler:
    operation: Operation
    param_names: tuple[str, ...]
    pattern: str

    def bind(self, values: list[str]) -> OperationMatch:
        params = dict(zip(self.param_names, values, strict=False))
        return OperationMatch(self.operation, MappingProxyType(params), self.pattern)


class _Node:
    """A trie node; built once by OperationTable and never changed afterwards."""

    __slots__ = ("handlers", "literals", "param", "subtree")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.handlers: dict[str, _Handler] = {}  # method -> handler
        self.subtree: _Handler | None = None  # any method, this node and below


def _fold(segment: str) -> str:
    # Literals match case-insensitively: an upstream that routes `/OBJECT/1` like `/object/1`
    # must not let such a spelling slip past the table (the worst case is a stricter check).
    return segment.casefold()


class OperationTable:
    """Method + relative path segments → operation, with a NONE / METHOD_MISMATCH / FULL match.

    Literal segments take precedence over parameters, without backtracking: `GET
    /object/create` is a method mismatch on `/object/create`, never an object named "create".
    """

    def __init__(self, routes: Iterable[RouteSpec]) -> None:
        self._root = _Node()
        self.routes = tuple(routes)
        for spec in self.routes:
            self._add(spec)

    def _add(self, spec: RouteSpec) -> None:
        pattern = spec.pattern
        subtree = pattern.endswith("/**")
        body = pattern[: -len("/**")] if subtree else pattern
        if not body.startswith("/") or body.endswith("/") or "//" in body:
            raise ValueError(f"invalid route pattern {pattern!r}")
        node = self._root
        names: list[str] = []
        for seg in body[1:].split("/"):
            if seg.startswith("{") and seg.endswith("}"):
                names.append(seg[1:-1])
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.literals.setdefault(_fold(seg), _Node())
        handler = _Handler(spec.operation, tuple(names), pattern)
        if subtree:
            if spec.method != "*" or node.subtree is not None:
                raise ValueError(f"invalid or duplicate subtree route {pattern!r}")
            node.subtree = handler
            return
        if spec.method in node.handlers or not spec.method.isalpha():
            raise ValueError(f"invalid or duplicate route {spec.method} {pattern!r}")
        node.handlers[spec.method] = handler

    def match(self, method: str, segments: tuple[str, ...]) -> TableMatch:
        """Find the operation for `method` on relative `segments` (decoded, non-empty)."""
        node = self._root
        values: list[str] = []
        covering = node.subtree
        for seg in segments:
            child = node.literals.get(_fold(seg))
            if child is None and node.param is not None and seg:
                values.append(seg)
                child = node.param
            if child is None:
                return self._fallback(covering, values, ())
            node = child
            covering = node.subtree or covering
        handler = node.handlers.get(method)
        if handler is not None:
            return TableMatch(MatchStatus.FULL, handler.bind(values))
        return self._fallback(covering, values, tuple(node.handlers))

    @staticmethod
    def _fallback(
        covering: _Handler | None, values: list[str], allowed: tuple[str, ...]
    ) -> TableMatch:
        if covering is not None:
            return TableMatch(MatchStatus.FULL, covering.bind(values))
        if allowed:
            return TableMatch(MatchStatus.METHOD_MISMATCH, allowed_methods=allowed)
        return TableMatch(MatchStatus.NONE)

TABLE = OperationTable(ROUTES)
