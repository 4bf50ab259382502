"""The declarative policy file (product.md section 5): parsed and validated into frozen values.

Every problem is collected with its key path (`schemas[0].roles.developer.groups: unknown group
'x'`) and raised at once as a PolicyError. Ids may be written as YAML strings or integers; the
YAML loader keeps integers' source text, so `id: 010` is the id "010", never 8.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from sidecar.paths import as_mounted
from sidecar.store.bulk import Row, bulk_rows
from sidecar.store.model import SCHEMA_LEVELS, TYPE_LEVELS
from sidecar.yamlio import UniqueKeyLoader, yaml_problem

CONNECT_SCOPES: frozenset[str] = frozenset({"READ", "WRITE", "DELETE", "ADMIN", "ACT_AS_USER"})
APP_PREFIXES = ("connect:", "oauth:")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_ID_CHARS = re.compile(r"[\s,/\x00-\x1f\x7f]")
_BAD_ACCOUNT_CHARS = re.compile(r"[\s,\x00-\x1f\x7f]")
_MAX_FILE_PROBLEMS = 20
_TOP_KEYS = frozenset(
    {"workspaces", "groups", "users", "admins", "schemas", "objects", "attributes",
     "connect_installations"}
)


class PolicyError(Exception):
    """The policy is invalid; `problems` lists every problem with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class RoleHolders:
    """The holders named for one role level (groups unexpanded)."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()  # connect:<app_key> | oauth:<client_id>


@dataclass(frozen=True)
class UserSpec:
    account_id: str
    email: str


@dataclass(frozen=True)
class ObjectTypeSpec:
    id: str
    name: str
    roles: Mapping[str, RoleHolders]


@dataclass(frozen=True)
class SchemaSpec:
    id: str
    workspace: str
    key: str
    roles: Mapping[str, RoleHolders]
    object_types: tuple[ObjectTypeSpec, ...] = ()
    import_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallationSpec:
    client_key: str
    app_key: str
    account_id: str
    scopes: frozenset[str]
    shared_secret_env: str | None = None
    shared_secret_file: str | None = None  # absolute (resolved against the policy's folder)


@dataclass(frozen=True)
class Policy:
    """The desired state of the store."""

    source: str
    workspaces: tuple[str, ...] = ()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    users: tuple[UserSpec, ...] = ()
    admins: RoleHolders = RoleHolders()
    schemas: tuple[SchemaSpec, ...] = ()
    objects: Mapping[str, str] = field(default_factory=dict)  # object id -> type id
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute id -> type id
    installations: tuple[InstallationSpec, ...] = ()
    files: tuple[str, ...] = ()  # the policy file and the bulk files it named (absolute)


class _Loader(UniqueKeyLoader):
    """Refuses duplicate keys, and keeps integers and dates as their text."""


def _scalar_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _scalar_text)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_text)


class _Checker:
    """Collects problems while walking the document."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[str] = []
        self.files: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(
        self, value: Any, where: str, allowed: set[str], required: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.add(where, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.add(f"{where}.{key}", "unknown key")
        for key in required:
            if value.get(key) is None:
                self.add(f"{where}.{key}", "is required")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(where, "must be a list")
            return []
        return value

    def text(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(where, "must be a non-empty string")
            return None
        return value

    def ident(self, value: Any, where: str, *, account: bool = False) -> str | None:
        """An id written as a string or an integer, normalised to a string."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.add(where, f"must be a string or an integer, not {value!r}")
            return None
        text = str(value)
        bad = _BAD_ACCOUNT_CHARS if account else _BAD_ID_CHARS
        if not text or bad.search(text):
            allowed = "whitespace or ','" if account else "whitespace, ',' or '/'"
            self.add(where, f"invalid id {text!r} (empty, or contains {allowed})")
            return None
        return text


def parse_policy(data: Any, *, source: str = "<policy>", base: Path | None = None) -> Policy:
    """Validate a parsed policy document; raise PolicyError listing every problem."""
    c = _Checker(base or Path.cwd())
    if not isinstance(data, dict):
        raise PolicyError(source, ["top level: must be a mapping"])
    top = data
    for key in top:
        if key not in _TOP_KEYS:
            c.add(str(key), "unknown key")

    workspaces = _workspaces(c, top.get("workspaces"))
    groups = _groups(c, top.get("groups"))
    users = _users(c, top.get("users"))
    installations = _installations(c, top.get("connect_installations"))
    admins = RoleHolders()
    if top.get("admins") is not None:
        admin_map = c.mapping(top["admins"], "admins", {"users", "groups", "apps"})
        if admin_map is not None:
            admins = _holders(c, admin_map, "admins", groups)
    type_ids: set[str] = set()
    schemas = _schemas(c, top.get("schemas"), set(workspaces), groups, type_ids)
    objects = _bindings(c, top.get("objects"), "objects", type_ids)
    attributes = _bindings(c, top.get("attributes"), "attributes", type_ids)
    if c.problems:
        raise PolicyError(source, c.problems)
    return Policy(
        source=source,
        workspaces=tuple(workspaces),
        groups=MappingProxyType(groups),
        users=tuple(users),
        admins=admins,
        schemas=tuple(schemas),
        objects=MappingProxyType(objects),
        attributes=MappingProxyType(attributes),
        installations=tuple(installations),
        files=tuple(c.files),
    )


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file (bulk files it names are relative to its folder)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise PolicyError(str(p), [f"cannot read: {reason}"]) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise PolicyError(str(p), [yaml_problem(exc)]) from None
    if data is None:
        raise PolicyError(str(p), ["top level: the file is empty"])
    policy = parse_policy(data, source=str(p), base=as_mounted(p).parent)
    return replace(policy, files=(str(as_mounted(p)), *policy.files))


def _unique(c: _Checker, seen: set[str], value: str, where: str, what: str) -> bool:
    if value in seen:
        c.add(where, f"duplicate {what} {value!r}")
        return False
    seen.add(value)
    return True


def _workspaces(c: _Checker, raw: Any) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(c.items(raw, "workspaces")):
        where = f"workspaces[{i}]"
        d = c.mapping(item, where, {"id"}, ("id",))
        ws = c.ident(d.get("id"), f"{where}.id") if d else None
        if ws is not None and _unique(c, seen, ws, f"{where}.id", "workspace"):
            out.append(ws)
    return out


def _groups(c: _Checker, raw: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        c.add("groups", "must be a mapping of group name to account ids")
        return out
    for name, members in raw.items():
        where = f"groups.{name}"
        if not isinstance(name, str) or not name.strip():
            c.add(where, "group names must be non-empty strings")
            continue
        ids = [c.ident(m, where, account=True) for m in c.items(members, where)]
        out[name] = tuple(dict.fromkeys(m for m in ids if m is not None))
    return out


def _users(c: _Checker, raw: Any) -> list[UserSpec]:
    out: list[UserSpec] = []
    seen: set[str] = set()
    emails: set[str] = set()
    for i, item in enumerate(c.items(raw, "users")):
        where = f"users[{i}]"
        d = c.mapping(item, where, {"account_id", "email"}, ("account_id", "email"))
        if d is None:
            continue
        account = c.ident(d.get("account_id"), f"{where}.account_id", account=True)
        email = c.text(d.get("email"), f"{where}.email")
        if email is not None and (email.count("@") != 1 or _BAD_ACCOUNT_CHARS.search(email)):
            c.add(f"{where}.email", f"not an email address: {email!r}")
            email = None
        if account is not None and account.startswith(APP_PREFIXES):
            c.add(f"{where}.account_id", "app holders are not users")
            account = None
        if account is None or email is None:
            continue
        unique_account = _unique(c, seen, account, f"{where}.account_id", "account")
        if _unique(c, emails, email.lower(), f"{where}.email", "email") and unique_account:
            out.append(UserSpec(account, email))
    return out


def _holders(
    c: _Checker, d: dict[str, Any], where: str, groups: Mapping[str, Any]
) -> RoleHolders:
    users: list[str] = []
    for raw in c.items(d.get("users"), f"{where}.users"):
        account = c.ident(raw, f"{where}.users", account=True)
        if account is not None and account.startswith(APP_PREFIXES):
            c.add(f"{where}.users", f"{account!r} is an app: list it under apps")
        elif account is not None:
            users.append(account)
    names: list[str] = []
    for raw in c.items(d.get("groups"), f"{where}.groups"):
        if not isinstance(raw, str) or raw not in groups:
            c.add(f"{where}.groups", f"unknown group {raw!r}")
        else:
            names.append(raw)
    apps: list[str] = []
    for raw in c.items(d.get("apps"), f"{where}.apps"):
        app = c.ident(raw, f"{where}.apps", account=True)
        if app is None:
            continue
        prefix, _, name = app.partition(":")
        if f"{prefix}:" not in APP_PREFIXES or not name:
            c.add(f"{where}.apps", f"{app!r} must be connect:<app_key> or oauth:<client_id>")
        else:  # a Connect app may get roles before it is installed: it just matches nobody yet
            apps.append(app)
    return RoleHolders(
        tuple(dict.fromkeys(users)), tuple(dict.fromkeys(names)), tuple(dict.fromkeys(apps))
    )


def _roles(
    c: _Checker,
    raw: Any,
    where: str,
    levels: tuple[str, ...],
    groups: Mapping[str, Any],
) -> Mapping[str, RoleHolders]:
    out: dict[str, RoleHolders] = {}
    if raw is None:
        return MappingProxyType(out)
    if not isinstance(raw, dict):
        c.add(where, "must be a mapping of role level to holders")
        return MappingProxyType(out)
    for level, holders in raw.items():
        at = f"{where}.{level}"
        if level not in levels:
            c.add(at, f"unknown role level (expected one of: {', '.join(levels)})")
            continue
        d = c.mapping(holders if holders is not None else {}, at, {"users", "groups", "apps"})
        if d is not None:
            out[level] = _holders(c, d, at, groups)
    return MappingProxyType(out)


def _schemas(
    c: _Checker,
    raw: Any,
    workspaces: set[str],
    groups: Mapping[str, Any],
    type_ids: set[str],
) -> list[SchemaSpec]:
    """Schemas with their types and import sources; `type_ids` receives every type id seen
    (also in schemas with other problems, so references to them do not add noise)."""
    out: list[SchemaSpec] = []
    schema_ids: set[str] = set()
    source_ids: set[str] = set()
    for i, item in enumerate(c.items(raw, "schemas")):
        where = f"schemas[{i}]"
        d = c.mapping(
            item, where,
            {"id", "workspace", "key", "roles", "object_types", "import_sources"},
            ("id", "workspace", "key"),
        )
        if d is None:
            continue
        sid = c.ident(d.get("id"), f"{where}.id")
        ws = c.ident(d.get("workspace"), f"{where}.workspace")
        key = c.text(d.get("key"), f"{where}.key")
        if ws is not None and ws not in workspaces:
            c.add(f"{where}.workspace", f"unknown workspace {ws!r} (declare it under workspaces)")
        roles = _roles(c, d.get("roles"), f"{where}.roles", SCHEMA_LEVELS, groups)
        types: list[ObjectTypeSpec] = []
        for j, t in enumerate(c.items(d.get("object_types"), f"{where}.object_types")):
            at = f"{where}.object_types[{j}]"
            td = c.mapping(t, at, {"id", "name", "roles"}, ("id", "name"))
            if td is None:
                continue
            tid = c.ident(td.get("id"), f"{at}.id")
            name = c.text(td.get("name"), f"{at}.name")
            troles = _roles(c, td.get("roles"), f"{at}.roles", TYPE_LEVELS, groups)
            if tid is not None and _unique(c, type_ids, tid, f"{at}.id", "object type"):
                types.append(ObjectTypeSpec(tid, name or "", troles))
        sources: list[str] = []
        for j, s in enumerate(c.items(d.get("import_sources"), f"{where}.import_sources")):
            at = f"{where}.import_sources[{j}]"
            sd = c.mapping(s, at, {"id"}, ("id",))
            src = c.ident(sd.get("id"), f"{at}.id") if sd else None
            if src is not None and _unique(c, source_ids, src, f"{at}.id", "import source"):
                sources.append(src)
        if sid is None or ws is None or key is None:
            continue
        if _unique(c, schema_ids, sid, f"{where}.id", "schema"):
            out.append(SchemaSpec(sid, ws, key, roles, tuple(types), tuple(sources)))
    return out


def _installations(c: _Checker, raw: Any) -> list[InstallationSpec]:
    """Connect installations (secrets by reference only: env var or file, never inline)."""
    out: list[InstallationSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(c.items(raw, "connect_installations")):
        where = f"connect_installations[{i}]"
        if isinstance(item, dict) and "shared_secret" in item:
            c.add(
                f"{where}.shared_secret",
                "inline secrets are not allowed; use shared_secret_env or shared_secret_file",
            )
            item = {k: v for k, v in item.items() if k != "shared_secret"}
        d = c.mapping(
            item, where,
            {"client_key", "app_key", "shared_secret_env", "shared_secret_file", "scopes",
             "account_id"},
            ("client_key", "app_key", "account_id"),
        )
        if d is None:
            continue
        client_key = c.text(d.get("client_key"), f"{where}.client_key")
        app_key = c.text(d.get("app_key"), f"{where}.app_key")
        account = c.ident(d.get("account_id"), f"{where}.account_id", account=True)
        env = c.text(d.get("shared_secret_env"), f"{where}.shared_secret_env")
        file = c.text(d.get("shared_secret_file"), f"{where}.shared_secret_file")
        if env is not None and not _ENV_NAME.fullmatch(env):
            c.add(f"{where}.shared_secret_env", f"not an environment variable name: {env!r}")
        given = [k for k in ("shared_secret_env", "shared_secret_file") if d.get(k) is not None]
        if len(given) != 1:
            c.add(where, "needs exactly one of shared_secret_env and shared_secret_file")
        scopes: set[str] = set()
        for raw_scope in c.items(d.get("scopes"), f"{where}.scopes"):
            scope = raw_scope.upper() if isinstance(raw_scope, str) else raw_scope
            if scope not in CONNECT_SCOPES:
                c.add(
                    f"{where}.scopes",
                    f"unknown scope {raw_scope!r} (expected {', '.join(sorted(CONNECT_SCOPES))})",
                )
            else:
                scopes.add(scope)
        if client_key is None or app_key is None or account is None:
            continue
        if _unique(c, seen, client_key, f"{where}.client_key", "client key"):
            secret_file = str(as_mounted(c.base / file)) if file is not None else None
            out.append(
                InstallationSpec(client_key, app_key, account, frozenset(scopes), env, secret_file)
            )
    return out


def _bindings(c: _Checker, raw: Any, where: str, type_ids: set[str]) -> dict[str, str]:
    """`objects:` / `attributes:`: id -> object type, inline or from a CSV/JSONL file."""
    out: dict[str, str] = {}
    if isinstance(raw, str):
        path = as_mounted(c.base / raw)
        c.files.append(str(path))
        rows: Iterable[Row] = bulk_rows(path, raw, where)
    else:
        rows = (Row(f"{where}[{i}]", item) for i, item in enumerate(c.items(raw, where)))
    unchecked = 0
    before = len(c.problems)
    for row in rows:
        if len(c.problems) - before >= _MAX_FILE_PROBLEMS:  # a bad file is not a report
            unchecked += 1
            continue
        if row.problem is not None:
            c.add(row.where, row.problem)
            continue
        d = c.mapping(row.value, row.where, {"id", "type"}, ("id", "type"))
        if d is None:
            continue
        item_id = c.ident(d.get("id"), f"{row.where}.id")
        type_id = c.ident(d.get("type"), f"{row.where}.type")
        if type_id is not None and type_id not in type_ids:
            c.add(f"{row.where}.type", f"unknown object type {type_id!r}")
        elif item_id is not None and type_id is not None:
            if item_id in out:
                c.add(f"{row.where}.id", f"duplicate id {item_id!r}")
            out[item_id] = type_id
    if unchecked:
        c.add(where, f"{unchecked} more rows not checked after {_MAX_FILE_PROBLEMS} problems")
    return out
