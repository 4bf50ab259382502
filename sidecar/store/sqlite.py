"""The embedded SQLite state store: schema and migrations, `apply`, minted tokens, snapshots.

Synchronous by design: the server calls it from a worker thread. Each call opens its own
connection (WAL mode, `busy_timeout`), so any number of processes (the server, the CLI) share
one file safely. A `meta.generation` counter is bumped by every write (apply, mint, revoke), in
the transaction that makes the change, so a running server notices changes with one cheap query
(it polls every second, see refresher.SnapshotSource: a change is served within about a second
plus one snapshot load).

Concurrency rules, each of which once failed or could fail with "database is locked":

- Every write transaction starts with BEGIN IMMEDIATE. A deferred transaction that reads and
  then writes must upgrade its lock, and SQLite does not wait (busy_timeout) for an upgrade: it
  fails at once when another process wrote in between. For the same reason the switch of a new
  file to WAL, which is such an upgrade, is retried here (`_use_wal`).
- The write lock is held briefly: opening an up-to-date store takes no write lock, and `apply`
  compares the policy with the store in a read transaction and takes the lock only to write the
  difference, so other writers (which wait at most busy_timeout) are not starved by a big bulk
  policy being read and compared.
- Read transactions (a generation poll, a snapshot load) are one short transaction on a
  connection that is closed at once, so no reader pins an old snapshot and blocks checkpoints.
- WAL size: each write ends with a PASSIVE checkpoint (never waits, never blocks readers), so
  the next write restarts the WAL from its start instead of appending to it (SQLite's own
  checkpoint waits for 1000 pages, 4 MiB), and `journal_size_limit` cuts a WAL grown by a big
  transaction back to `WAL_SIZE_LIMIT` when it restarts. So the WAL file stays within the
  larger of WAL_SIZE_LIMIT and the latest transactions (a checkpoint that overlapped a reader is
  completed by the next write), and is deleted when the last connection closes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.store.model import Snapshot, TokenRecord
from sidecar.store.policy import Policy
from sidecar.store.snapshot import (
    Holder,
    InstallationRow,
    RoleRow,
    SchemaRow,
    State,
    TypeRow,
    build_snapshot,
    diff_states,
    state_from_policy,
)
from sidecar.store.tokens import (
    API,
    API_TOKEN_SCOPES,
    CONTAINER,
    KeyFileError,
    format_token,
    hash_secret,
    is_token_id,
    key_path_for,
    load_or_create_key,
    new_secret,
    new_token_id,
)

_MAX_LABEL = 200
WAL_SIZE_LIMIT = 1 << 20  # bytes kept of the WAL file when it restarts (journal_size_limit)

# Forward-only migrations; the list index + 1 is the schema version they lead to.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (name, value) VALUES ('generation', 0)",
        "CREATE TABLE workspaces (id TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TABLE user_groups (name TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TABLE group_members (group_name TEXT NOT NULL, member TEXT NOT NULL,"
        " PRIMARY KEY (group_name, member)) WITHOUT ROWID",
        "CREATE TABLE users (account_id TEXT PRIMARY KEY, email TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE admins (holder_kind TEXT NOT NULL, holder TEXT NOT NULL,"
        " PRIMARY KEY (holder_kind, holder)) WITHOUT ROWID",
        "CREATE TABLE schemas (id TEXT PRIMARY KEY, workspace TEXT NOT NULL,"
        " schema_key TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE object_types (id TEXT PRIMARY KEY, schema_id TEXT NOT NULL,"
        " name TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE role_holders (target_kind TEXT NOT NULL, target_id TEXT NOT NULL,"
        " level TEXT NOT NULL, holder_kind TEXT NOT NULL, holder TEXT NOT NULL,"
        " PRIMARY KEY (target_kind, target_id, level, holder_kind, holder)) WITHOUT ROWID",
        "CREATE TABLE import_sources (id TEXT PRIMARY KEY, schema_id TEXT NOT NULL)"
        " WITHOUT ROWID",
        "CREATE TABLE objects (id TEXT PRIMARY KEY, type_id TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE attributes (id TEXT PRIMARY KEY, type_id TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE installations (client_key TEXT PRIMARY KEY, app_key TEXT NOT NULL,"
        " account_id TEXT NOT NULL, scopes TEXT NOT NULL, secret_env TEXT, secret_file TEXT)"
        " WITHOUT ROWID",
        "CREATE TABLE tokens (id TEXT PRIMARY KEY,"
        " kind TEXT NOT NULL CHECK (kind IN ('api', 'container')),"
        " secret_hash BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL,"
        " revoked_at REAL, superseded_at REAL, label TEXT NOT NULL DEFAULT '',"
        " account_id TEXT, scopes TEXT, import_source TEXT)",
        "CREATE INDEX tokens_by_import_source ON tokens (import_source)"
        " WHERE kind = 'container'",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(Exception):
    """The store cannot be opened or read (names the file; never holds a secret)."""


class TokenError(ValueError):
    """A mint request the user can fix: unknown account or import source, bad scope, etc."""


@dataclass(frozen=True)
class _Table:
    name: str
    key: tuple[str, ...]
    values: tuple[str, ...] = ()


_TABLES: tuple[_Table, ...] = (
    _Table("workspaces", ("id",)),
    _Table("user_groups", ("name",)),
    _Table("group_members", ("group_name", "member")),
    _Table("users", ("account_id",), ("email",)),
    _Table("admins", ("holder_kind", "holder")),
    _Table("schemas", ("id",), ("workspace", "schema_key")),
    _Table("object_types", ("id",), ("schema_id", "name")),
    _Table("role_holders", ("target_kind", "target_id", "level", "holder_kind", "holder")),
    _Table("import_sources", ("id",), ("schema_id",)),
    _Table("objects", ("id",), ("type_id",)),
    _Table("attributes", ("id",), ("type_id",)),
    _Table(
        "installations", ("client_key",),
        ("app_key", "account_id", "scopes", "secret_env", "secret_file"),
    ),
)

Rows = dict[tuple[Any, ...], tuple[Any, ...]]


def _rows_of(state: State) -> dict[str, Rows]:
    """The table rows (primary key -> other columns) that hold a State."""
    return {
        "workspaces": {(w,): () for w in state.workspaces},
        "user_groups": {(g,): () for g in state.groups},
        "group_members": {(g, m): () for g, ms in state.groups.items() for m in ms},
        "users": {(a,): (e,) for a, e in state.users.items()},
        "admins": {tuple(h): () for h in state.admins},
        "schemas": {(k,): tuple(v) for k, v in state.schemas.items()},
        "object_types": {(k,): tuple(v) for k, v in state.object_types.items()},
        "role_holders": {tuple(r): () for r in state.roles},
        "import_sources": {(k,): (v,) for k, v in state.import_sources.items()},
        "objects": {(k,): (v,) for k, v in state.objects.items()},
        "attributes": {(k,): (v,) for k, v in state.attributes.items()},
        "installations": {(k,): tuple(v) for k, v in state.installations.items()},
    }


def _state_of(rows: dict[str, Rows]) -> State:
    groups: dict[str, set[str]] = {g: set() for (g,) in rows["user_groups"]}
    for g, m in rows["group_members"]:
        groups.setdefault(g, set()).add(m)
    return State(
        workspaces={w for (w,) in rows["workspaces"]},
        groups={g: frozenset(ms) for g, ms in groups.items()},
        users={a: e for (a,), (e,) in rows["users"].items()},
        admins={Holder(*k) for k in rows["admins"]},
        schemas={k: SchemaRow(*v) for (k,), v in rows["schemas"].items()},
        object_types={k: TypeRow(*v) for (k,), v in rows["object_types"].items()},
        roles={RoleRow(*k) for k in rows["role_holders"]},
        import_sources={k: v for (k,), (v,) in rows["import_sources"].items()},
        objects={k: v for (k,), (v,) in rows["objects"].items()},
        attributes={k: v for (k,), (v,) in rows["attributes"].items()},
        installations={k: InstallationRow(*v) for (k,), v in rows["installations"].items()},
    )


def _read_rows(conn: sqlite3.Connection) -> dict[str, Rows]:
    out: dict[str, Rows] = {}
    for table in _TABLES:
        n = len(table.key)
        columns = ", ".join(table.key + table.values)
        cursor = conn.execute(f"SELECT {columns} FROM {table.name}")  # noqa: S608
        out[table.name] = {row[:n]: row[n:] for row in cursor}
    return out


def _sync_table(conn: sqlite3.Connection, table: _Table, old: Rows, new: Rows) -> None:
    """Make one table hold `new` instead of `old` with the fewest statements."""
    where = " AND ".join(f"{c} = ?" for c in table.key)
    removed = [k for k in old if k not in new]
    if removed:
        conn.executemany(f"DELETE FROM {table.name} WHERE {where}", removed)  # noqa: S608
    changed = [k + v for k, v in new.items() if old.get(k) != v]
    if changed:
        columns = table.key + table.values
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)})"  # noqa: S608
            f" VALUES ({', '.join('?' * len(columns))})"
        )
        if table.values:
            updates = ", ".join(f"{c} = excluded.{c}" for c in table.values)
            sql += f" ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
        conn.executemany(sql, changed)


_TOKEN_COLUMNS = (
    "id, kind, secret_hash, created_at, expires_at, revoked_at, superseded_at, label,"
    " account_id, scopes, import_source"
)


def _token_record(row: tuple[Any, ...]) -> TokenRecord:
    (token_id, kind, secret_hash, created_at, expires_at, revoked_at, superseded_at, label,
     account_id, scopes, import_source) = row
    return TokenRecord(
        id=token_id,
        kind=kind,
        secret_hash=bytes(secret_hash),
        created_at=created_at,
        expires_at=expires_at,
        revoked=revoked_at is not None,
        label=label,
        account_id=account_id,
        scopes=frozenset(json.loads(scopes)) if scopes is not None else None,
        import_source=import_source,
        superseded=superseded_at is not None,
    )


def _expiry(expires_days: float | None, now: float) -> float | None:
    if expires_days is None:
        return None
    if not math.isfinite(expires_days) or expires_days <= 0:
        raise TokenError("expires-days must be a positive number")
    return now + expires_days * 86400.0


def _check_label(label: str) -> None:
    if len(label) > _MAX_LABEL or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in label):
        raise TokenError(f"the label must be at most {_MAX_LABEL} printable characters")


def _check_scopes(scopes: list[str] | None) -> frozenset[str] | None:
    if scopes is None:
        return None
    if not scopes:
        raise TokenError("a scoped token needs at least one scope")
    unknown = sorted(set(scopes) - API_TOKEN_SCOPES)
    if unknown:
        raise TokenError(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(API_TOKEN_SCOPES))}"
        )
    return frozenset(scopes)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteStore:
    """The state store in one SQLite file, with its token key in `<file>.key` beside it."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path).resolve()
        self.key_path = key_path_for(self.path)
        self._busy_timeout_ms = busy_timeout_ms
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = self._open()
            try:
                self._use_wal(conn)
                has_tokens = self._prepare(conn)
            finally:
                conn.close()
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc.strerror}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        try:
            self._key = load_or_create_key(self.key_path, may_create=not has_tokens)
        except (KeyFileError, OSError) as exc:
            raise StoreError(str(exc)) from None

    @property
    def token_key(self) -> bytes:
        return self._key

    def _open(self) -> sqlite3.Connection:
        # mode=rw: once created, a vanished file is an error, never a fresh empty store.
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode=rw",
            uri=True,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode (a no-op read when it already is).

        On a new file the switch upgrades a read lock to a write lock, for which SQLite returns
        SQLITE_BUSY at once instead of waiting: two processes creating the store at the same
        moment (the server and an `apply`) would fail with "database is locked". Retry until
        busy_timeout instead.
        """
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _prepare(self, conn: sqlite3.Connection) -> bool:
        """Migrate when needed; return whether the store holds tokens.

        An up-to-date store is only read, so opening one (every CLI command) never queues for the
        write lock. Migrating takes it (BEGIN IMMEDIATE) and looks at the version again, so two
        processes migrating at once run each migration exactly once.
        """
        conn.execute("BEGIN")
        try:
            current = self._version(conn)
            if current == SCHEMA_VERSION:
                return self._has_tokens(conn)
        finally:
            conn.execute("COMMIT")
        self._check_version(current)
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._migrate(conn)
            has_tokens = self._has_tokens(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return has_tokens

    @staticmethod
    def _has_tokens(conn: sqlite3.Connection) -> bool:
        return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM tokens)").fetchone()[0])

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        row = conn.execute("SELECT version FROM schema_version").fetchone() if exists else None
        return int(row[0]) if row is not None else 0

    def _check_version(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {current} is newer than this build "
                f"supports ({SCHEMA_VERSION}); upgrade assets-authz"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        current = row[0] if row is not None else 0
        self._check_version(current)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version,))

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on its own connection, closed at the end; rolled back on any exception.

        Writes start with BEGIN IMMEDIATE (see the module docstring) and end with a PASSIVE
        checkpoint, which copies the WAL into the database without waiting for anyone, so the
        next write can restart the WAL instead of growing it.
        """
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if write:
                with suppress(sqlite3.Error):  # committed already; a checkpoint is housekeeping
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        finally:
            conn.close()

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")

    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()
        return int(row[0])

    def generation(self) -> int:
        """The change counter: differs whenever anything was written since the last read."""
        with self._session() as conn:
            return self._generation(conn)

    def load_snapshot(self) -> Snapshot:
        """The whole store as one consistent, immutable Snapshot."""
        with self._session() as conn:
            generation = self._generation(conn)
            state = _state_of(_read_rows(conn))
            rows = conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens").fetchall()  # noqa: S608
        tokens = [_token_record(r) for r in rows]
        return build_snapshot(
            state, {t.id: t for t in tokens}, generation=generation, token_key=self._key
        )

    def apply(self, policy: Policy, *, dry_run: bool) -> list[str]:
        """Make the store match the policy in one transaction; return the changes made.

        Tokens are never touched. Nothing is written when nothing changes or on `dry_run`.
        """
        desired = state_from_policy(policy)
        # Compare in a read transaction and hold the write lock only to write the difference:
        # every other writer waits (at most busy_timeout) while the lock is held.
        with self._session() as conn:
            seen = self._generation(conn)
            read_rows = _read_rows(conn)
        changes = diff_states(_state_of(read_rows), desired)
        if dry_run or not changes:
            return changes
        desired_rows = _rows_of(desired)
        with self._session(write=True) as conn:
            current_rows = read_rows
            if self._generation(conn) != seen:  # another write came first: read the rows again
                current_rows = _read_rows(conn)
                if current_rows == desired_rows:
                    return []
            for table in _TABLES:
                _sync_table(conn, table, current_rows[table.name], desired_rows[table.name])
            self._bump(conn)
        # The write in between was usually a token, which leaves these rows as they were.
        if current_rows is not read_rows and current_rows != read_rows:
            changes = diff_states(_state_of(current_rows), desired)
        return changes

    def mint_api(
        self,
        account_id: str,
        scopes: list[str] | None,
        expires_days: float | None,
        label: str,
        now: float,
    ) -> tuple[TokenRecord, str]:
        """Mint a user API token (unscoped when `scopes` is None); the text is shown once."""
        scope_set = _check_scopes(scopes)
        expires_at = _expiry(expires_days, now)
        _check_label(label)
        with self._session(write=True) as conn:
            known = conn.execute("SELECT 1 FROM users WHERE account_id = ?", (account_id,))
            if known.fetchone() is None:
                raise TokenError(
                    f"unknown account {account_id!r}: API tokens need a user with an email "
                    "under users in the policy"
                )
            return self._insert(
                conn, API, now, expires_at, label, account_id=account_id, scopes=scope_set
            )

    def mint_container(
        self, import_source: str, expires_days: float | None, label: str, now: float
    ) -> tuple[TokenRecord, str]:
        """Mint a container token for an import source; its earlier tokens are superseded."""
        expires_at = _expiry(expires_days, now)
        _check_label(label)
        with self._session(write=True) as conn:
            known = conn.execute("SELECT 1 FROM import_sources WHERE id = ?", (import_source,))
            if known.fetchone() is None:
                raise TokenError(f"unknown import source {import_source!r}")
            conn.execute(
                "UPDATE tokens SET superseded_at = ? WHERE kind = 'container'"
                " AND import_source = ? AND superseded_at IS NULL",
                (now, import_source),
            )
            return self._insert(
                conn, CONTAINER, now, expires_at, label, import_source=import_source
            )

    def _insert(
        self,
        conn: sqlite3.Connection,
        kind: str,
        now: float,
        expires_at: float | None,
        label: str,
        *,
        account_id: str | None = None,
        scopes: frozenset[str] | None = None,
        import_source: str | None = None,
    ) -> tuple[TokenRecord, str]:
        secret = new_secret()
        secret_hash = hash_secret(self._key, secret)
        scopes_json = json.dumps(sorted(scopes)) if scopes is not None else None
        for _ in range(5):  # 64-bit random ids: a collision is astronomically unlikely
            token_id = new_token_id()
            try:
                conn.execute(
                    "INSERT INTO tokens (id, kind, secret_hash, created_at, expires_at, label,"
                    " account_id, scopes, import_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (token_id, kind, secret_hash, now, expires_at, label, account_id,
                     scopes_json, import_source),
                )
            except sqlite3.IntegrityError:
                continue
            break
        else:
            raise StoreError(f"{self.path}: could not allocate a token id")
        self._bump(conn)
        record = TokenRecord(
            id=token_id, kind=kind, secret_hash=secret_hash, created_at=now,
            expires_at=expires_at, revoked=False, label=label, account_id=account_id,
            scopes=scopes, import_source=import_source,
        )
        return record, format_token(kind, token_id, secret)

    def list_tokens(self) -> list[TokenRecord]:
        """Every minted token, oldest first (hashes only)."""
        with self._session() as conn:
            rows = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"  # noqa: S608
            ).fetchall()
        return [_token_record(r) for r in rows]

    def revoke(self, token_id: str, *, now: float | None = None) -> bool:
        """Revoke one token; False when no token has this id (revoking twice is fine)."""
        if not is_token_id(token_id):
            return False
        with self._session(write=True) as conn:
            when = now if now is not None else time.time()
            updated = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (when, token_id),
            ).rowcount
            if updated:
                self._bump(conn)
                return True
            found = conn.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone()
            return found is not None


def preview_apply(policy: Policy) -> list[str]:
    """The changes `apply` would make to an empty store (dry run without creating one)."""
    return diff_states(State(), state_from_policy(policy))
