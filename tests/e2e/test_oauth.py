"""OAuth 2.0 bearer JWTs through a real Envoy: allows with identity headers, and every 401/403."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from sidecar.testing.keys import generate_private_key, mint_oauth_token

from ..world import AUDIENCE, World
from .cases import BASE, Auth, Case, identity, ids, run_case
from .client import Gateway

READ = "read:cmdb-object:jira"
WRITE = "write:cmdb-object:jira"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(world: World, **extra: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": world.jwks_server.issuer, "aud": AUDIENCE, "sub": "acc-ann",
        "iat": now, "exp": now + 300, "scope": READ,
    }
    claims.update(extra)
    return claims


def alg_none(world: World) -> str:
    return f"Bearer {_b64({'alg': 'none', 'kid': world.kid})}.{_b64(_claims(world))}."


def unknown_kid(world: World) -> str:
    return "Bearer " + mint_oauth_token(world.private_key, "k-unknown", "RS256", _claims(world))


def other_key(world: World) -> str:
    """Signed by a key the issuer never published, under the published kid."""
    key = generate_private_key("RS256")
    return "Bearer " + mint_oauth_token(key, world.kid, "RS256", _claims(world))


def tampered_signature(world: World) -> str:
    header, payload, signature = world.oauth("acc-ann", READ).split(" ")[1].split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"Bearer {header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


def tampered_payload(world: World) -> str:
    """acc-zed's signed token with its payload swapped for one naming the admin."""
    header, _, signature = world.oauth("acc-zed", READ).split(" ")[1].split(".")
    return f"Bearer {header}.{_b64(_claims(world, sub='acc-admin'))}.{signature}"


def hs256(world: World) -> str:
    """HS256 under the issuer's kid: a symmetric algorithm the OAuth path never considers."""
    return "Bearer " + jwt.encode(_claims(world), "k" * 32, algorithm="HS256",
                                  headers={"kid": world.kid})


def with_header(**header: object) -> Auth:
    """The issuer's own key and kid, with extra JOSE header fields."""
    return lambda w: "Bearer " + mint_oauth_token(
        w.private_key, w.kid, "RS256", _claims(w), headers=header
    )


def attacker_jku(world: World) -> str:
    """Signed by a key of the caller's choosing, which `jku` says where to fetch: ignored."""
    key = generate_private_key("RS256")
    return "Bearer " + mint_oauth_token(key, "k-attacker", "RS256", _claims(world),
                                        headers={"jku": "http://127.0.0.1:1/jwks.json"})


def es256_under_rsa_kid(world: World) -> str:
    key = generate_private_key("ES256")
    return "Bearer " + mint_oauth_token(key, world.kid, "ES256", _claims(world))


def ps256(world: World) -> str:
    return "Bearer " + mint_oauth_token(world.private_key, world.kid, "PS256", _claims(world))


OBJ = f"{BASE}/object/88"
CASES = [
    Case("user token with client_id: app-key names the client", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, client_id="client-1"),
         identity=identity("oauth", "user", account="acc-ann", role="manager",
                           app_key="client-1")),
    Case("user token without client_id: no app-key", "GET", OBJ,
         lambda w: w.oauth("acc-bob", f"{READ} {WRITE}"),
         identity=identity("oauth", "user", account="acc-bob", role="developer")),
    Case("scp list is read like scope", "GET", OBJ,
         lambda w: w.oauth("acc-dan", "", scp=[READ]),
         identity=identity("oauth", "user", account="acc-dan", role="user")),
    Case("user token with the write scope updates an object", "PUT", OBJ,
         lambda w: w.oauth("acc-bob", WRITE, client_id="client-1"),
         identity=identity("oauth", "user", account="acc-bob", role="developer",
                           app_key="client-1")),
    Case("OAuth client acting as itself is an app with its own role", "GET", f"{BASE}/object/89",
         lambda w: w.oauth("svc-client", READ, client_id="svc-client"),
         identity=identity("oauth", "app", account="svc-client", role="viewer",
                           app_key="svc-client")),
    Case("OAuth client as itself holds only viewer: no update", "PUT", f"{BASE}/object/89",
         lambda w: w.oauth("svc-client", WRITE, client_id="svc-client"),
         status=403, reason="role_missing"),
    Case("a user claiming an app identity as sub", "GET", OBJ,
         lambda w: w.oauth("oauth:svc-client", READ),
         status=401, reason="invalid_claims"),
    Case("aud as a list naming the API", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, aud=["https://other.example.test", AUDIENCE]),
         identity=identity("oauth", "user", account="acc-ann", role="manager")),
    Case("expired within the leeway", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, iat=int(time.time()) - 400,
                           exp=int(time.time()) - 30),
         identity=identity("oauth", "user", account="acc-ann", role="manager")),
    Case("not yet valid", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, nbf=int(time.time()) + 600),
         status=401, reason="invalid_claims"),
    Case("crit header", "GET", OBJ, with_header(crit=["exp"]),
         status=401, reason="unsupported_algorithm"),
    Case("jku header is ignored", "GET", OBJ, attacker_jku, status=401, reason="unknown_key"),
    Case("jku header on a good token changes nothing", "GET", OBJ,
         with_header(jku="http://127.0.0.1:1/jwks.json"),
         identity=identity("oauth", "user", account="acc-ann", role="manager")),
    Case("ES256 under the RSA key's kid", "GET", OBJ, es256_under_rsa_kid,
         status=401, reason="bad_signature"),
    Case("PS256 is not in the issuer's allow-list", "GET", OBJ, ps256,
         status=401, reason="unsupported_algorithm"),
    Case("missing scope", "PUT", OBJ, lambda w: w.oauth("acc-ann", READ, client_id="client-1"),
         status=403, reason="insufficient_scope", scope=WRITE),
    Case("no scope claim at all grants nothing", "GET", OBJ, lambda w: w.oauth("acc-ann", ""),
         status=403, reason="insufficient_scope", scope=READ),
    Case("expired", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, iat=int(time.time()) - 4000,
                           exp=int(time.time()) - 3600),
         status=401, reason="token_expired"),
    Case("no exp", "GET", OBJ, lambda w: w.oauth("acc-ann", READ, exp=None),
         status=401, reason="invalid_claims"),
    Case("wrong audience", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, aud="https://other.example.test"),
         status=401, reason="invalid_claims"),
    Case("unknown issuer", "GET", OBJ,
         lambda w: w.oauth("acc-ann", READ, iss="https://evil.example.test"),
         status=401, reason="unknown_issuer"),
    Case("unknown kid", "GET", OBJ, unknown_kid, status=401, reason="unknown_key"),
    Case("alg none", "GET", OBJ, alg_none, status=401, reason="unsupported_algorithm"),
    Case("HS256 is never accepted for an OAuth issuer", "GET", OBJ, hs256,
         status=401, reason="unsupported_algorithm"),
    Case("tampered signature", "GET", OBJ, tampered_signature, status=401, reason="bad_signature"),
    Case("tampered payload", "GET", OBJ, tampered_payload, status=401, reason="bad_signature"),
    Case("signed by an unpublished key", "GET", OBJ, other_key,
         status=401, reason="bad_signature"),
    Case("JWT-shaped garbage", "GET", OBJ, lambda w: "Bearer abc.def.ghi",
         status=401, reason="malformed_credential"),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_oauth(case: Case, gateway: Gateway, world: World) -> None:
    run_case(gateway, world, case)
