"""Minted tokens: format, parsing, keyed hashing, key file, mint/supersede/revoke/list."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest

from sidecar.store.policy import load_policy
from sidecar.store.sqlite import SqliteStore, StoreError, TokenError
from sidecar.store.tokens import (
    API_TOKEN_SCOPES,
    KeyFileError,
    format_token,
    hash_secret,
    load_or_create_key,
    new_secret,
    parse_token,
    read_key,
    verify,
)

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE = "5d6c2a0e-0000-4000-8000-000000000001"
OTHER_SOURCE = "5d6c2a0e-0000-4000-8000-000000000002"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    policy_path = tmp_path / "policy.yaml"
    text = (FIXTURES / "policy.yaml").read_text()
    text = text.replace(
        f"import_sources: [{{id: {SOURCE}}}]",
        f"import_sources: [{{id: {SOURCE}}}, {{id: {OTHER_SOURCE}}}]",
    )
    policy_path.write_text(text)
    s = SqliteStore(tmp_path / "state.db")
    s.apply(load_policy(policy_path), dry_run=False)
    return s


@pytest.mark.parametrize(("kind", "prefix"), [("api", "aat_"), ("container", "act_")])
def test_minted_tokens_are_recognisable_and_url_safe(
    store: SqliteStore, kind: str, prefix: str
) -> None:
    if kind == "api":
        record, token = store.mint_api("acc-ann", None, None, "", now=1.0)
    else:
        record, token = store.mint_container(SOURCE, None, "", now=1.0)
    assert token.startswith(prefix + record.id + "_")
    assert URL_SAFE.match(token) and "." not in token and "," not in token
    parsed = parse_token(token)
    assert parsed is not None
    assert (parsed.kind, parsed.id) == (kind, record.id)
    assert len(parsed.secret) == 43  # 32 random bytes
    assert verify(store.token_key, parsed.secret, record.secret_hash)
    assert parsed.secret not in repr(parsed)


def test_secrets_are_random() -> None:
    assert len({new_secret() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "text",
    [
        "",
        "aat_",
        "xyz_0123456789abcdef_" + "A" * 43,  # unknown prefix
        "aat_0123456789ABCDEF_" + "A" * 43,  # upper-case id
        "aat_0123456789abcde_" + "A" * 43,  # short id
        "aat_0123456789abcdef_" + "A" * 42,  # short secret
        "aat_0123456789abcdef-" + "A" * 43,  # wrong separator
        "aat_0123456789abcdef_" + "A" * 42 + ".",  # not URL-safe base64
        "aat_0123456789abcdef_" + "A" * 43 + "\n",
        " aat_0123456789abcdef_" + "A" * 43,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",  # a JWT
    ],
)
def test_parse_token_rejects_anything_else(text: str) -> None:
    assert parse_token(text) is None


def test_parse_token_accepts_our_format() -> None:
    secret = "A" * 40 + "-_z"
    parsed = parse_token(format_token("container", "0123456789abcdef", secret))
    assert parsed is not None
    assert (parsed.kind, parsed.id, parsed.secret) == ("container", "0123456789abcdef", secret)


def test_the_hash_is_keyed() -> None:
    key1, key2 = b"1" * 32, b"2" * 32
    digest = hash_secret(key1, "s3cret")
    assert digest == hmac.new(key1, b"s3cret", hashlib.sha256).digest()
    assert digest != hash_secret(key2, "s3cret")
    assert digest != hashlib.sha256(b"s3cret").digest()
    assert verify(key1, "s3cret", digest)
    assert not verify(key2, "s3cret", digest)
    assert not verify(key1, "s3cret!", digest)


def test_the_raw_secret_never_reaches_the_database(store: SqliteStore) -> None:
    api, api_token = store.mint_api("acc-ann", None, None, "", now=1.0)
    container, container_token = store.mint_container(SOURCE, None, "", now=1.0)
    files = [store.path, store.path.with_name("state.db-wal")]
    blob = b"".join(p.read_bytes() for p in files if p.exists())
    for token in (api_token, container_token):
        parsed = parse_token(token)
        assert parsed is not None
        assert parsed.secret.encode() not in blob
        assert token.encode() not in blob
    assert api.secret_hash in blob and container.secret_hash in blob
    assert store.token_key not in blob


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = load_or_create_key(path, may_create=True)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path, may_create=True) == key
    assert read_key(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary left behind


@pytest.mark.parametrize("content", [b"", b"short\n", b"\xff\xfe not text"])
def test_a_damaged_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=str(path)):
        read_key(path)


def test_a_lost_key_is_not_silently_replaced_once_tokens_exist(store: SqliteStore) -> None:
    store.mint_container(SOURCE, None, "", now=1.0)
    store.key_path.unlink()
    with pytest.raises(StoreError, match="token key file is missing"):
        SqliteStore(store.path)
    assert not store.key_path.exists()


def test_a_lost_key_is_recreated_while_there_are_no_tokens(store: SqliteStore) -> None:
    store.key_path.unlink()
    assert len(SqliteStore(store.path).token_key) == 32


def test_mint_api_records_everything_but_the_secret(store: SqliteStore) -> None:
    scopes = ["read:cmdb-object:jira", "write:cmdb-object:jira"]
    record, token = store.mint_api("acc-ann", scopes, 2.0, "ci", now=1000.0)
    assert record.kind == "api"
    assert record.account_id == "acc-ann"
    assert record.scopes == frozenset(scopes)
    assert record.created_at == 1000.0
    assert record.expires_at == 1000.0 + 2 * 86400
    assert record.label == "ci"
    assert not record.revoked and not record.superseded
    assert record.import_source is None
    assert store.list_tokens() == [record]
    assert store.load_snapshot().tokens[record.id] == record
    assert token not in repr(record)


def test_unscoped_api_token_has_no_scopes(store: SqliteStore) -> None:
    record, _ = store.mint_api("acc-ann", None, None, "", now=1.0)
    assert record.scopes is None and record.expires_at is None
    assert store.list_tokens()[0].scopes is None


@pytest.mark.parametrize(
    ("account", "scopes", "days", "label", "message"),
    [
        ("acc-nobody", None, None, "", "unknown account 'acc-nobody'"),
        ("acc-bob", None, None, "", "unknown account 'acc-bob'"),  # in groups, but no email
        ("acc-ann", [], None, "", "at least one scope"),
        ("acc-ann", ["read:everything"], None, "", "unknown scope"),
        ("acc-ann", None, 0.0, "", "positive"),
        ("acc-ann", None, -1.0, "", "positive"),
        ("acc-ann", None, float("nan"), "", "positive"),
        ("acc-ann", None, None, "bad\nlabel", "label"),
        ("acc-ann", None, None, "x" * 201, "label"),
    ],
)
def test_mint_api_refuses(
    store: SqliteStore,
    account: str,
    scopes: list[str] | None,
    days: float | None,
    label: str,
    message: str,
) -> None:
    generation = store.generation()
    with pytest.raises(TokenError, match=message):
        store.mint_api(account, scopes, days, label, now=1.0)
    assert store.generation() == generation
    assert store.list_tokens() == []


def test_every_model_scope_is_mintable(store: SqliteStore) -> None:
    record, _ = store.mint_api("acc-ann", sorted(API_TOKEN_SCOPES), None, "", now=1.0)
    assert record.scopes == API_TOKEN_SCOPES
    assert "import:import-configuration:cmdb" in API_TOKEN_SCOPES


def test_mint_container_supersedes_only_the_same_source(store: SqliteStore) -> None:
    first, _ = store.mint_container(SOURCE, None, "", now=1.0)
    other, _ = store.mint_container(OTHER_SOURCE, None, "", now=2.0)
    second, _ = store.mint_container(SOURCE, 30.0, "rotated", now=3.0)
    tokens = store.load_snapshot().tokens
    assert tokens[first.id].superseded and not tokens[first.id].revoked
    assert not tokens[other.id].superseded
    assert not tokens[second.id].superseded
    assert tokens[second.id].import_source == SOURCE
    assert tokens[second.id].expires_at == 3.0 + 30 * 86400
    assert [t.id for t in store.list_tokens()] == [first.id, other.id, second.id]


def test_mint_container_for_an_unknown_source_is_refused(store: SqliteStore) -> None:
    with pytest.raises(TokenError, match="unknown import source 'nope'"):
        store.mint_container("nope", None, "", now=1.0)
    assert store.list_tokens() == []


def test_revoke(store: SqliteStore) -> None:
    record, _ = store.mint_api("acc-ann", None, None, "", now=1.0)
    generation = store.generation()
    assert store.revoke(record.id, now=5.0) is True
    assert store.generation() == generation + 1
    assert store.load_snapshot().tokens[record.id].revoked
    assert store.revoke(record.id) is True  # already revoked: still known, nothing written
    assert store.generation() == generation + 1
    assert store.revoke("0123456789abcdef") is False
    assert store.revoke("not an id") is False
    assert store.revoke(record.id + "\n") is False
    assert store.revoke("'; DROP TABLE tokens; --") is False


def test_every_write_bumps_the_generation(store: SqliteStore) -> None:
    start = store.generation()
    api, _ = store.mint_api("acc-ann", None, None, "", now=1.0)
    store.mint_container(SOURCE, None, "", now=1.0)
    store.revoke(api.id)
    assert store.generation() == start + 3
