"""A complete test world: a store seeded from tests/fixtures/policy.yaml, minted tokens, a
local JWKS issuer and Connect secrets; plus helpers to build credentials for requests."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.config import Config, load_config
from sidecar.store.policy import load_policy
from sidecar.store.sqlite import SqliteStore
from sidecar.testing.jwks_server import JwksServer
from sidecar.testing.keys import generate_private_key, jwks, mint_oauth_token, public_jwk
from sidecar.tools.connect_jwt import sign_connect_jwt

FIXTURES = Path(__file__).parent / "fixtures"
AUDIENCE = "https://api.example.test"
SECRETS = {
    "ASSETS_AUTHZ_TEST_REPORTING_SECRET": "reporting-shared-secret-0123456789",
    "ASSETS_AUTHZ_TEST_WRITER_SECRET": "writer-shared-secret-0123456789",
}
INSTALLATION_SECRET = {
    "jira:abc-123": SECRETS["ASSETS_AUTHZ_TEST_REPORTING_SECRET"],
    "jira:def-456": SECRETS["ASSETS_AUTHZ_TEST_WRITER_SECRET"],
}
EMAILS = {
    "acc-admin": "admin@example.test", "acc-ann": "ann@example.test",
    "acc-bob": "bob@example.test", "acc-dan": "dan@example.test",
    "acc-eve": "eve@example.test", "acc-zed": "zed@example.test",
}


@dataclass
class World:
    root: Path
    config_path: Path
    jwks_server: JwksServer
    private_key: Any
    kid: str = "k1"
    api_tokens: dict[str, str] = field(default_factory=dict)  # name -> token text
    container_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def store(self) -> SqliteStore:
        cfg = self.config
        assert cfg.store_path is not None
        return SqliteStore(cfg.store_path)

    # -- credentials -------------------------------------------------------------------------

    def oauth(self, sub: str, scopes: str = "", **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.jwks_server.issuer, "aud": AUDIENCE, "sub": sub,
            "iat": now, "exp": now + 300, "scope": scopes,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return "Bearer " + mint_oauth_token(self.private_key, self.kid, "RS256", body)

    def basic(self, name: str, email: str | None = None) -> str:
        account = name.split(":")[0]
        mail = email if email is not None else EMAILS[account]
        raw = f"{mail}:{self.api_tokens[name]}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def container(self, name: str) -> str:
        return "Bearer " + self.container_tokens[name]

    def connect(
        self, method: str, url: str, *, iss: str = "jira:abc-123", sub: str | None = None,
        secret: str | None = None, now: float | None = None, lifetime: float = 180,
    ) -> str:
        return sign_connect_jwt(
            issuer=iss,
            secret=(secret or INSTALLATION_SECRET[iss]).encode(),
            method=method, url=url, now=now if now is not None else time.time(),
            lifetime=lifetime, sub=sub,
        )

    def stop(self) -> None:
        self.jwks_server.stop()


def build_world(root: Path, **config_extra: str) -> World:
    """Seed a store under `root`, start a JWKS server, write config.yaml; tokens minted."""
    os.environ.update(SECRETS)
    key = generate_private_key("RS256")
    server = JwksServer(jwks(public_jwk(key, "k1", "RS256")))
    root.mkdir(parents=True, exist_ok=True)
    extra = "".join(f"{k}: {v}\n" for k, v in config_extra.items())
    config_path = root / "config.yaml"
    config_path.write_text(
        "listen: {grpc: '127.0.0.1:0', http: '127.0.0.1:0', explain: '127.0.0.1:0'}\n"
        "store: sqlite:///state.db\n"
        "log: {allow_sample_rate: 1.0}\n"
        "oauth:\n"
        "  issuers:\n"
        f"    - issuer: {server.issuer}\n"
        f"      jwks_uri: {server.jwks_uri}\n"
        f"      audiences: [{AUDIENCE}]\n"
        "      algorithms: [RS256, ES256]\n"
        "      unknown_kid_refetch_seconds: 0.5\n"
        + extra
    )
    world = World(root=root, config_path=config_path, jwks_server=server, private_key=key)
    store = world.store
    store.apply(load_policy(FIXTURES / "policy.yaml"), dry_run=False)
    now = time.time()
    for name, account, scopes in [
        ("acc-admin", "acc-admin", None), ("acc-ann", "acc-ann", None),
        ("acc-bob", "acc-bob", None), ("acc-dan", "acc-dan", None),
        ("acc-eve", "acc-eve", None), ("acc-zed", "acc-zed", None),
        ("acc-ann:read", "acc-ann", ["read:cmdb-object:jira"]),
        ("acc-ann:revoked", "acc-ann", None), ("acc-ann:expired", "acc-ann", None),
    ]:
        expires = 1.0 if name.endswith(":expired") else None
        record, text = store.mint_api(
            account, scopes, expires, name, now - 2 * 86400 if expires else now
        )
        world.api_tokens[name] = text
        if name.endswith(":revoked"):
            store.revoke(record.id)
    _, old = store.mint_container("is-1", None, "old", now)
    _, current = store.mint_container("is-1", None, "current", now)
    _, other = store.mint_container("is-3", None, "other workspace", now)
    world.container_tokens.update({"is-1:old": old, "is-1": current, "is-3": other})
    return world
