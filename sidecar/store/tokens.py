"""Minted token format, keyed hashing and the per-store HMAC key file.

A token reads `<prefix><id>_<secret>`:

- the prefix names the kind (`aat_` for API tokens, `act_` for container tokens), so a leaked
  token is recognisable by secret scanners;
- the id is 16 lower-case hex characters: it is the row key, shown by `token list`, used by
  `token revoke`, and safe to log;
- the secret is 32 random bytes, URL-safe base64 without padding (43 characters).

The alphabet is `A-Z a-z 0-9 - _`, so a token is URL-safe and never contains `.` or `,` (it is
never mistaken for a JWT, nor for headers Envoy joined with commas).

Only HMAC-SHA256(key, secret) is stored. The key is 32 random bytes kept in a file beside the
database (`<db>.key`, created with mode 0600), not in the database: a stolen database alone
does not allow an offline search for secrets, and a stolen key alone holds no token. Back the
two files up together; losing the key invalidates every minted token (the store then refuses to
start rather than silently minting under a new key, see `load_or_create_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

API = "api"
CONTAINER = "container"
PREFIXES: dict[str, str] = {API: "aat_", CONTAINER: "act_"}
_KIND_BY_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}

KEY_BYTES = 32
SECRET_BYTES = 32
_TOKEN = re.compile(r"(aat_|act_)([0-9a-f]{16})_([A-Za-z0-9_-]{43,128})")
_ID = re.compile(r"[0-9a-f]{16}")

# The granular scopes an API token may be limited to (assets-model.md section 3).
API_TOKEN_SCOPES: frozenset[str] = frozenset(
    [f"{verb}:cmdb-{noun}:jira" for verb in ("read", "write", "delete")
     for noun in ("object", "schema", "type", "attribute", "config")]
    + ["read:cmdb-icon:jira", "import:import-configuration:cmdb"]
)


class KeyFileError(Exception):
    """The HMAC key file cannot be read or created."""


@dataclass(frozen=True)
class ParsedToken:
    """A token split into its parts. The secret never appears in repr."""

    kind: str  # "api" | "container"
    id: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedToken(kind={self.kind!r}, id={self.id!r})"


def new_token_id() -> str:
    return secrets.token_hex(8)


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()


def format_token(kind: str, token_id: str, secret: str) -> str:
    return f"{PREFIXES[kind]}{token_id}_{secret}"


def is_token_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def parse_token(text: str) -> ParsedToken | None:
    """Split a presented token into kind, id and secret; None when it is not one of ours."""
    match = _TOKEN.fullmatch(text)
    if match is None:
        return None
    prefix, token_id, secret = match.groups()
    return ParsedToken(_KIND_BY_PREFIX[prefix], token_id, secret)


def hash_secret(key: bytes, secret: str) -> bytes:
    """The keyed hash stored for a secret: HMAC-SHA256(key, secret)."""
    return hmac.new(key, secret.encode("ascii"), hashlib.sha256).digest()


def verify(key: bytes, secret: str, stored_hash: bytes) -> bool:
    """Constant-time comparison of a presented secret with the stored keyed hash."""
    return hmac.compare_digest(hash_secret(key, secret), stored_hash)


def key_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".key")


def read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (OSError, ValueError) as exc:
        raise KeyFileError(
            f"{path}: cannot read the token key file ({exc.__class__.__name__})"
        ) from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: the token key file does not hold a {KEY_BYTES}-byte key")
    return key


def load_or_create_key(path: Path, *, may_create: bool) -> bytes:
    """Read the store's HMAC key, creating it (mode 0600) when absent and `may_create`.

    Creation is atomic (write a private temporary file, then hard-link it into place), so two
    processes opening a fresh store agree on one key.
    """
    if path.exists():
        return read_key(path)
    if not may_create:
        raise KeyFileError(
            f"{path}: the token key file is missing but the store holds tokens; restore it "
            "from the backup of the store (without it no minted token can be verified)"
        )
    key = secrets.token_bytes(KEY_BYTES)
    text = base64.urlsafe_b64encode(key).rstrip(b"=") + b"\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
