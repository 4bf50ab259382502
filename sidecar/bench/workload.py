"""The benchmark's world and request mix: a seeded store, a JWKS issuer and pre-signed tokens.

`build_workload` copies deploy/bench/policy.yaml into a folder, writes random Connect secrets and
a bulk objects file beside it, seeds the store, mints API and container tokens, starts a local
JWKS issuer and signs every OAuth and Connect token once, so nothing is signed while timing.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.config import load_config
from sidecar.decision import Reason
from sidecar.explain import check_request
from sidecar.store.policy import load_policy
from sidecar.store.sqlite import SqliteStore
from sidecar.store.tokens import API, format_token, new_secret, parse_token
from sidecar.testing.jwks_server import JwksServer
from sidecar.testing.keys import (
    PrivateKey,
    generate_private_key,
    jwks,
    mint_oauth_token,
    public_jwk,
)
from sidecar.testing.lifecycle import StopOnExit
from sidecar.tools.connect_jwt import sign_connect_jwt

BENCH_DIR = Path(__file__).resolve().parents[2] / "deploy" / "bench"
POLICY_FILE = BENCH_DIR / "policy.yaml"

BASE = "/jsm/assets/workspace/ws-1/v1"
IMPORTS_INFO = "/jsm/assets/v1/imports/info"
AUDIENCE = "https://api.bench.example"
OAUTH_CLIENT = "bench-client"
OAUTH_KID = "bench-1"
OAUTH_LIFETIME_SECONDS = 86400  # far beyond any run: no token expires while timing
CONNECT_LIFETIME_SECONDS = 3600  # the default connect.max_lifetime_seconds
BENCH_HEADER = "x-bench-direct"  # Envoy's demo config answers these itself after the check
ALLOW = "allow"

# The bulk objects: ids from FIRST_BULK_OBJECT up, the object types of policy.yaml in turn.
OBJECT_TYPES = ("10", "11", "12", "20", "21", "30")
FIRST_BULK_OBJECT = 100_000
FIXED_OBJECTS = {"88": "10", "89": "11", "90": "20", "99": "30"}
DEFAULT_OBJECTS = 20_000

EMAILS = {
    "acc-admin": "admin@bench.example", "acc-ann": "ann@bench.example",
    "acc-bob": "bob@bench.example", "acc-dan": "dan@bench.example",
    "acc-eve": "eve@bench.example", "acc-zed": "zed@bench.example",
}
CONNECT_SECRET_FILES = {
    "jira:bench-reporting": "secrets/reporting.secret",
    "jira:bench-writer": "secrets/writer.secret",
}
READ_OBJECT = "read:cmdb-object:jira"
WRITE_OBJECT = "write:cmdb-object:jira"
READ_TYPE = "read:cmdb-type:jira"
READ_SCHEMA = "read:cmdb-schema:jira"


@dataclass(frozen=True)
class MixEntry:
    """One request of the mix and the answer the sidecar must give it (None: allow)."""

    name: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None
    expect: Reason | None = None
    weight: int = 1

    @property
    def outcome(self) -> str:
        """`allow` or the reason code: how the load generators label an answer."""
        return ALLOW if self.expect is None else self.expect.value

    @property
    def http_status(self) -> int:
        return 200 if self.expect is None else self.expect.http_status

    @property
    def grpc_code(self) -> int:
        return 0 if self.expect is None else self.expect.grpc_code

    def check_request(self) -> Any:
        """The CheckRequest Envoy would send for this request."""
        return check_request(self.method, self.path, dict(self.headers), self.body)


def rotation(mix: Sequence[MixEntry]) -> tuple[int, ...]:
    """Indexes of `mix`, each as often as its weight, spread out (smooth weighted round robin)."""
    total = sum(entry.weight for entry in mix)
    current = [0] * len(mix)
    order: list[int] = []
    for _ in range(total):
        for i, entry in enumerate(mix):
            current[i] += entry.weight
        best = max(range(len(mix)), key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return tuple(order)


@dataclass
class Workload(StopOnExit):
    """A seeded store, its config file, the running JWKS issuer and the request mix."""

    root: Path
    config_path: Path
    grpc_address: str
    http_port: int
    mix: tuple[MixEntry, ...]
    jwks_server: JwksServer
    order: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.order = rotation(self.mix)

    def fraction_allowed(self) -> float:
        allowed = sum(self.mix[i].expect is None for i in self.order)
        return allowed / len(self.order)

    def stop(self) -> None:
        self.jwks_server.stop()



@dataclass
class _Credentials:
    """Signs and formats the `Authorization` values of the mix (all before any timing)."""

    issuer: str
    key: PrivateKey
    now: float
    connect_secrets: Mapping[str, bytes]
    api_tokens: dict[str, str] = field(default_factory=dict)  # name -> token text
    container_token: str = ""

    def oauth(self, sub: str, *scopes: str) -> str:
        claims = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": sub, "client_id": OAUTH_CLIENT,
            "scope": " ".join(scopes), "iat": int(self.now),
            "exp": int(self.now) + OAUTH_LIFETIME_SECONDS,
        }
        return "Bearer " + mint_oauth_token(self.key, OAUTH_KID, "RS256", claims)

    def connect(self, iss: str, method: str, path: str, *, sub: str | None = None) -> str:
        token = sign_connect_jwt(
            issuer=iss, secret=self.connect_secrets[iss], method=method, url=path,
            now=self.now, lifetime=CONNECT_LIFETIME_SECONDS, sub=sub,
        )
        return "JWT " + token

    def basic(self, name: str, *, token: str | None = None) -> str:
        account = name.split(":")[0]
        raw = f"{EMAILS[account]}:{token or self.api_tokens[name]}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def wrong_secret(self, name: str) -> str:
        """A well-formed token naming a real token id with a wrong secret (a guess)."""
        parsed = parse_token(self.api_tokens[name])
        assert parsed is not None
        return self.basic(name, token=format_token(API, parsed.id, new_secret()))

    def container(self) -> str:
        return "Bearer " + self.container_token


def bulk_object(objects: int, type_id: str) -> str:
    """The id of the last bulk object of `type_id` among `objects` bulk objects."""
    slot = OBJECT_TYPES.index(type_id)
    last = (objects - 1 - slot) // len(OBJECT_TYPES) * len(OBJECT_TYPES) + slot
    if last < 0:
        raise ValueError(f"{objects} bulk objects hold none of type {type_id}")
    return str(FIRST_BULK_OBJECT + last)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _entry(
    name: str, method: str, path: str, authorization: str, *, body: Any = None,
    expect: Reason | None = None, weight: int = 1,
) -> MixEntry:
    headers = {"authorization": authorization, BENCH_HEADER: "1"}
    data = None if body is None else _json(body)
    if data is not None:
        headers["content-type"] = "application/json"
    return MixEntry(name, method, path, headers, data, expect, weight)


def build_mix(creds: _Credentials, objects: int) -> tuple[MixEntry, ...]:
    """The request mix: every credential kind, allowed and denied, object/type/schema targets."""
    o, c, b, R = creds.oauth, creds.connect, creds.basic, Reason
    rep, wri = "jira:bench-reporting", "jira:bench-writer"
    server = bulk_object(objects, "11")
    create = {"objectTypeId": "10", "attributes": [
        {"objectTypeAttributeId": "501", "objectAttributeValues": [{"value": "LT-0001"}]}]}
    update = {"attributes": [
        {"objectTypeAttributeId": "501", "objectAttributeValues": [{"value": "LT-0002"}]}]}
    search = {"qlQuery": 'objectType = "Laptop"', "page": 1, "resultPerPage": 25}
    return (
        # OAuth 2.0, RS256, user tokens of an OAuth client.
        _entry("oauth read object", "GET", f"{BASE}/object/88", o("acc-ann", READ_OBJECT),
               weight=6),
        _entry("oauth read type", "GET", f"{BASE}/objecttype/10", o("acc-bob", READ_TYPE),
               weight=2),
        _entry("oauth read schema", "GET", f"{BASE}/objectschema/1", o("acc-eve", READ_SCHEMA),
               weight=2),
        _entry("oauth create object (JSON body)", "POST", f"{BASE}/object/create",
               o("acc-bob", WRITE_OBJECT), body=create),
        _entry("oauth search objects", "POST", f"{BASE}/object/aql", o("acc-ann", READ_OBJECT),
               body=search, weight=2),
        _entry("oauth read object, schema scope only", "GET", f"{BASE}/object/88",
               o("acc-ann", READ_SCHEMA), expect=R.INSUFFICIENT_SCOPE),
        _entry("oauth read object, no role", "GET", f"{BASE}/object/89",
               o("acc-zed", READ_OBJECT), expect=R.ROLE_MISSING),
        _entry("oauth update object, type override", "PUT", f"{BASE}/object/88",
               o("acc-dan", WRITE_OBJECT), body=update, expect=R.ROLE_MISSING),
        # Atlassian Connect, HS256 + qsh, header form.
        _entry("connect read object", "GET", f"{BASE}/object/89",
               c(rep, "GET", f"{BASE}/object/89"), weight=4),
        _entry("connect read schema types", "GET", f"{BASE}/objectschema/1/objecttypes",
               c(rep, "GET", f"{BASE}/objectschema/1/objecttypes")),
        _entry("connect impersonation read type", "GET", f"{BASE}/objecttype/11",
               c(rep, "GET", f"{BASE}/objecttype/11", sub="acc-ann")),
        _entry("connect update object", "PUT", f"{BASE}/object/89",
               c(wri, "PUT", f"{BASE}/object/89"), body=update),
        _entry("connect token for another path", "GET", f"{BASE}/object/89",
               c(rep, "GET", f"{BASE}/object/88"), expect=R.QSH_MISMATCH),
        _entry("connect delete without DELETE scope", "DELETE", f"{BASE}/object/89",
               c(wri, "DELETE", f"{BASE}/object/89"), expect=R.CONNECT_SCOPE_MISSING),
        # Basic with a user's API token, unscoped and scoped.
        _entry("api token read bulk object", "GET", f"{BASE}/object/{server}", b("acc-ann"),
               weight=4),
        _entry("api token update object, type role", "PUT", f"{BASE}/object/88", b("acc-bob"),
               body=update),
        _entry("api token read object via type role", "GET", f"{BASE}/object/90",
               b("acc-eve")),
        _entry("api token admin read schema", "GET", f"{BASE}/objectschema/2", b("acc-admin")),
        _entry("scoped api token read object", "GET", f"{BASE}/object/89", b("acc-ann:read"),
               weight=2),
        _entry("scoped api token update object", "PUT", f"{BASE}/object/88", b("acc-ann:read"),
               body=update, expect=R.INSUFFICIENT_SCOPE),
        _entry("api token delete object, user role", "DELETE", f"{BASE}/object/89",
               b("acc-eve"), expect=R.ROLE_MISSING),
        _entry("api token with a wrong secret", "GET", f"{BASE}/object/88",
               creds.wrong_secret("acc-ann"), expect=R.UNKNOWN_TOKEN),
        _entry("api token unknown object", "GET", f"{BASE}/object/777", b("acc-ann"),
               expect=R.UNKNOWN_TARGET),
        # Container (import) tokens.
        _entry("container imports info", "GET", IMPORTS_INFO, creds.container()),
        _entry("container import source mapping", "POST", f"{BASE}/importsource/is-1/mapping",
               creds.container(), body={"mapping": []}),
        _entry("container token on objects", "GET", f"{BASE}/object/88", creds.container(),
               expect=R.TOKEN_NOT_ALLOWED),
    )


def _write_objects(path: Path, objects: int) -> None:
    rows = ["id,type"]
    rows += [f"{oid},{tid}" for oid, tid in FIXED_OBJECTS.items()]
    rows += [
        f"{FIRST_BULK_OBJECT + i},{OBJECT_TYPES[i % len(OBJECT_TYPES)]}" for i in range(objects)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _write_config(root: Path, issuer: JwksServer, grpc_address: str, http_port: int) -> Path:
    path = root / "config.yaml"
    path.write_text(
        "# Written by sidecar.bench for one run.\n"
        f"listen: {{grpc: '{grpc_address}', http: '127.0.0.1:{http_port}'}}\n"
        "store: sqlite:///state.db\n"
        "log: {allow_sample_rate: 0.01}\n"
        "oauth:\n"
        "  issuers:\n"
        f"    - issuer: {issuer.issuer}\n"
        f"      jwks_uri: {issuer.jwks_uri}\n"
        f"      audiences: [{AUDIENCE}]\n"
        "      algorithms: [RS256]\n",
        encoding="utf-8",
    )
    return path


def build_workload(
    root: Path,
    *,
    grpc_port: int,
    http_port: int,
    objects: int = DEFAULT_OBJECTS,
    now: float | None = None,
) -> Workload:
    """Seed a store under `root` (which must be empty or new) and sign the whole mix.

    The returned workload owns a running JWKS server: stop it (or use `with`).
    """
    if objects < len(OBJECT_TYPES):
        raise ValueError(f"objects must be at least {len(OBJECT_TYPES)}")
    now = time.time() if now is None else now
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(POLICY_FILE, root / "policy.yaml")
    (root / "secrets").mkdir(exist_ok=True)
    connect_secrets: dict[str, bytes] = {}
    for client_key, name in CONNECT_SECRET_FILES.items():
        secret = secrets.token_urlsafe(32)
        (root / name).write_text(secret + "\n", encoding="utf-8")
        connect_secrets[client_key] = secret.encode()
    _write_objects(root / "objects.csv", objects)

    key = generate_private_key("RS256")
    issuer = JwksServer(jwks(public_jwk(key, OAUTH_KID, "RS256")))
    try:
        grpc_address = f"127.0.0.1:{grpc_port}"
        config_path = _write_config(root, issuer, grpc_address, http_port)
        store_path = load_config(config_path).store_path
        assert store_path is not None
        store = SqliteStore(store_path)
        store.apply(load_policy(root / "policy.yaml"), dry_run=False)
        creds = _Credentials(issuer.issuer, key, now, connect_secrets)
        for name, account, scopes in (
            ("acc-admin", "acc-admin", None), ("acc-ann", "acc-ann", None),
            ("acc-bob", "acc-bob", None), ("acc-eve", "acc-eve", None),
            ("acc-ann:read", "acc-ann", [READ_OBJECT]),
        ):
            _, creds.api_tokens[name] = store.mint_api(account, scopes, None, name, now)
        _, creds.container_token = store.mint_container("is-1", None, "bench", now)
        mix = build_mix(creds, objects)
    except BaseException:
        issuer.stop()
        raise
    return Workload(root, config_path, grpc_address, http_port, mix, issuer)
