"""OAuthAuthenticator: every Deny reason of the OAuth path, and the principal it builds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from sidecar.authn.credentials import Credential, CredentialKind
from sidecar.authn.jwks import JwksCache
from sidecar.authn.oauth import OAuthAuthenticator
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.request import build_request
from sidecar.store.model import Snapshot

from .test_jwks import ISS, JWKS_URL, PUBLIC_JWKS, FakeClock, FakeIdP, jwks_doc, make_issuer
from .test_jwks import private_key as _private_key

AUD = "https://api.example.test"
NOW = 1_700_000_000.0
OTHER_ISS = "https://login.other.test/tenant"
OTHER_JWKS_URL = "https://login.other.test/keys"
REQUEST = build_request(method="GET", target="/jsm/assets/workspace/ws-1/v1/object/88", headers={})
DROP = object()  # a claim or header value meaning "leave it out"
KEY_IDS = ("rsa-1", "rsa-2", "rsa-short", "ec-1", "ec384-1", "ed-1")
KEYS = {kid: _private_key(kid) for kid in KEY_IDS}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_with(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISS,
        "sub": "acc-ann",
        "aud": AUD,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "scope": "read:cmdb-object:jira",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


def sign(
    alg: str = "RS256", kid: Any = "rsa-1", signer: str | None = None, **claims: Any
) -> str:
    """A real token: `signer` names the private key (default: the key of `kid`)."""
    headers = {} if kid is DROP else {"kid": kid}
    return jwt.encode(claims_with(**claims), KEYS[signer or kid], algorithm=alg, headers=headers)


def forge(header: dict[str, Any] | str, payload: dict[str, Any] | str, sig: bytes = b"") -> str:
    """A hand-built token (for things PyJWT refuses to produce)."""
    def part(v: dict[str, Any] | str) -> str:
        return b64(v.encode() if isinstance(v, str) else json.dumps(v).encode())

    return f"{part(header)}.{part(payload)}.{b64(sig)}"


def with_header(token_alg: str, signer: str, **header: Any) -> str:
    return jwt.encode(claims_with(), KEYS[signer], algorithm=token_alg, headers=header)


def hs256_with_public_pem() -> str:
    """The classic confusion attack: HMAC keyed with the RSA public key PEM."""
    pem = KEYS["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = forge({"alg": "HS256", "kid": "rsa-1"}, claims_with()).rstrip(".")
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def sign_with_short_key() -> str:
    """A token from a 1024-bit RSA key that the issuer publishes (PyJWT warns when signing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return sign("RS256", "rsa-short")


def tampered() -> str:
    head, _, sig = sign().split(".")
    return f"{head}.{b64(json.dumps(claims_with(sub='acc-admin')).encode())}.{sig}"


def resigned_payload(payload: bytes) -> str:
    """A correctly signed token whose payload is arbitrary bytes."""
    return jwt.api_jws.encode(payload, KEYS["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})


@dataclass
class Env:
    idp: FakeIdP
    clock: FakeClock
    caches: dict[str, JwksCache]
    auth: OAuthAuthenticator

    async def run(self, token: str, now: float = NOW) -> Principal:
        credential = Credential(CredentialKind.OAUTH_JWT, token)
        return await self.auth.authenticate(credential, REQUEST, Snapshot(), now)

    async def reason(self, token: str, now: float = NOW) -> Reason:
        with pytest.raises(Deny) as caught:
            await self.run(token, now)
        return caught.value.reason


@pytest.fixture
async def env() -> Env:
    idp = FakeIdP(
        {
            JWKS_URL: jwks_doc("rsa-1", "rsa-short", "ec-1", "ec384-1", "ed-1"),
            OTHER_JWKS_URL: jwks_doc("rsa-2"),
        }
    )
    clock = FakeClock()
    issuers = [
        make_issuer(),
        make_issuer(issuer=OTHER_ISS, jwks_uri=OTHER_JWKS_URL, audiences=(), algorithms=("PS256",)),
    ]
    caches = {i.issuer: JwksCache(i, clock=clock, fetch=idp) for i in issuers}
    for cache in caches.values():
        assert await cache.refresh()
    idp.calls.clear()
    return Env(idp, clock, caches, OAuthAuthenticator(issuers, caches))


# --- good tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: sign("RS256", "rsa-1"), id="RS256"),
        pytest.param(lambda: sign("ES256", "ec-1"), id="ES256"),
        pytest.param(lambda: sign("PS256", "rsa-1"), id="PS256"),
        pytest.param(lambda: sign("EdDSA", "ed-1"), id="EdDSA"),
        pytest.param(lambda: sign(iss=OTHER_ISS, alg="PS256", kid="rsa-2", aud=DROP), id="2nd-iss"),
        pytest.param(lambda: sign(aud=[AUD]), id="aud-list"),
        pytest.param(lambda: sign(aud=["https://x.test", AUD]), id="aud-list-second"),
        pytest.param(lambda: sign(exp=NOW - 59), id="expired-within-leeway"),
        pytest.param(lambda: sign(nbf=NOW + 59, iat=NOW + 59), id="future-within-leeway"),
        pytest.param(lambda: sign(nbf=NOW - 1, iat=DROP), id="nbf-past-no-iat"),
        pytest.param(lambda: sign(exp=NOW + 300.5, iat=NOW - 0.5), id="float-times"),
        pytest.param(lambda: sign(jku="https://evil.test/jwks"), id="jku-ignored"),
        pytest.param(lambda: with_header("RS256", "rsa-1", kid="rsa-1", typ="at+jwt"), id="typ"),
        pytest.param(lambda: sign(sub="557058:f58131cb-b67d"), id="atlassian-account-id"),
    ],
)
async def test_good_tokens_authenticate(env: Env, token: Callable[[], str]) -> None:
    principal = await env.run(token())
    assert principal.auth_type is AuthType.OAUTH
    assert env.idp.calls == []


async def test_no_kid_uses_the_only_key(env: Env) -> None:
    env.idp.docs[OTHER_JWKS_URL] = jwks_doc("rsa-2")
    token = sign("PS256", kid=DROP, signer="rsa-2", iss=OTHER_ISS)
    assert (await env.run(token)).account_id == "acc-ann"


# --- every failure reason -----------------------------------------------------------------------

GOOD_HEADER = {"alg": "RS256", "kid": "rsa-1"}

FAILURES: list[Any] = [
    # malformed
    pytest.param(lambda: "abc.def", Reason.MALFORMED_CREDENTIAL, id="two-parts"),
    pytest.param(lambda: "a.b.c.d", Reason.MALFORMED_CREDENTIAL, id="four-parts"),
    pytest.param(lambda: "a$b.c.d", Reason.MALFORMED_CREDENTIAL, id="bad-chars"),
    pytest.param(lambda: "abcde.e30.", Reason.MALFORMED_CREDENTIAL, id="bad-base64"),
    pytest.param(lambda: forge("not json", claims_with()), Reason.MALFORMED_CREDENTIAL,
                 id="header-not-json"),
    pytest.param(lambda: forge("[1]", claims_with()), Reason.MALFORMED_CREDENTIAL,
                 id="header-array"),
    pytest.param(lambda: forge(GOOD_HEADER, "nope"), Reason.MALFORMED_CREDENTIAL,
                 id="payload-not-json"),
    pytest.param(lambda: forge('{"alg":"RS256","alg":"none","kid":"rsa-1"}', claims_with()),
                 Reason.MALFORMED_CREDENTIAL, id="duplicate-alg"),
    pytest.param(lambda: forge(GOOD_HEADER, f'{{"iss":"{ISS}","exp":NaN}}'),
                 Reason.MALFORMED_CREDENTIAL, id="nan-exp"),
    pytest.param(lambda: forge({"kid": "rsa-1"}, claims_with()), Reason.MALFORMED_CREDENTIAL,
                 id="no-alg"),
    pytest.param(lambda: forge({"alg": "RS256", "kid": 1}, claims_with()),
                 Reason.MALFORMED_CREDENTIAL, id="kid-not-string"),
    pytest.param(lambda: with_header("RS256", "rsa-1", kid="rsa-1", b64=False),
                 Reason.MALFORMED_CREDENTIAL, id="unencoded-payload"),
    pytest.param(lambda: forge({**GOOD_HEADER, "b64": False}, claims_with()),
                 Reason.MALFORMED_CREDENTIAL, id="b64-false"),
    pytest.param(lambda: "e30." + "A" * 20000 + ".", Reason.MALFORMED_CREDENTIAL, id="huge"),
    pytest.param(lambda: resigned_payload(b"[1, 2]"), Reason.MALFORMED_CREDENTIAL,
                 id="signed-payload-array"),
    # algorithms
    pytest.param(lambda: forge({"alg": "none", "kid": "rsa-1"}, claims_with()),
                 Reason.UNSUPPORTED_ALGORITHM, id="alg-none"),
    pytest.param(lambda: forge({"alg": "None"}, claims_with()), Reason.UNSUPPORTED_ALGORITHM,
                 id="alg-None"),
    pytest.param(hs256_with_public_pem, Reason.UNSUPPORTED_ALGORITHM, id="hs256-public-pem"),
    pytest.param(lambda: sign("RS512", "rsa-1"), Reason.UNSUPPORTED_ALGORITHM,
                 id="RS512-not-allowed"),
    pytest.param(lambda: sign("ES384", "ec384-1"), Reason.UNSUPPORTED_ALGORITHM,
                 id="ES384-not-allowed"),
    pytest.param(lambda: sign("RS256", "rsa-2", iss=OTHER_ISS), Reason.UNSUPPORTED_ALGORITHM,
                 id="RS256-not-allowed-for-other-issuer"),
    pytest.param(lambda: with_header("RS256", "rsa-1", kid="rsa-1", crit=["exp"], exp=1),
                 Reason.UNSUPPORTED_ALGORITHM, id="crit"),
    pytest.param(lambda: forge({**GOOD_HEADER, "crit": []}, claims_with()),
                 Reason.UNSUPPORTED_ALGORITHM, id="crit-empty"),
    # issuer
    pytest.param(lambda: sign(iss="https://evil.test"), Reason.UNKNOWN_ISSUER, id="unknown-iss"),
    pytest.param(lambda: sign(iss=ISS[:-1]), Reason.UNKNOWN_ISSUER, id="iss-prefix"),
    pytest.param(lambda: sign(iss=ISS + "/"), Reason.UNKNOWN_ISSUER, id="iss-slash"),
    pytest.param(lambda: sign(iss=ISS + ".evil.test"), Reason.UNKNOWN_ISSUER, id="iss-suffix"),
    pytest.param(lambda: sign(iss="x" + ISS), Reason.UNKNOWN_ISSUER, id="iss-before"),
    pytest.param(lambda: sign(iss=ISS.upper()), Reason.UNKNOWN_ISSUER, id="iss-case"),
    pytest.param(lambda: sign(iss=DROP), Reason.UNKNOWN_ISSUER, id="iss-missing"),
    pytest.param(lambda: resigned_payload(json.dumps(claims_with(iss=[ISS])).encode()),
                 Reason.UNKNOWN_ISSUER, id="iss-list"),
    # keys and signatures
    pytest.param(lambda: sign(kid="rsa-2"), Reason.UNKNOWN_KEY, id="unknown-kid"),
    pytest.param(lambda: sign(kid=DROP, signer="rsa-1"), Reason.UNKNOWN_KEY,
                 id="no-kid-many-keys"),
    pytest.param(lambda: sign(kid="rsa-1", signer="rsa-2"), Reason.BAD_SIGNATURE,
                 id="wrong-signer"),
    pytest.param(tampered, Reason.BAD_SIGNATURE, id="tampered-payload"),
    pytest.param(lambda: forge(GOOD_HEADER, claims_with(), b"\x00" * 256), Reason.BAD_SIGNATURE,
                 id="zero-signature"),
    pytest.param(lambda: forge(GOOD_HEADER, claims_with()), Reason.BAD_SIGNATURE,
                 id="empty-signature"),
    pytest.param(lambda: sign("ES256", kid="rsa-1", signer="ec-1"), Reason.BAD_SIGNATURE,
                 id="ec-token-rsa-key"),
    pytest.param(lambda: sign("RS256", kid="ec-1", signer="rsa-1"), Reason.BAD_SIGNATURE,
                 id="rsa-token-ec-key"),
    pytest.param(lambda: sign("ES256", kid="ec384-1", signer="ec-1"), Reason.BAD_SIGNATURE,
                 id="ES256-on-P384-key"),
    pytest.param(sign_with_short_key, Reason.BAD_SIGNATURE, id="rsa-1024"),
    pytest.param(lambda: sign(jku="https://evil.test/jwks", kid="rsa-1", signer="rsa-2"),
                 Reason.BAD_SIGNATURE, id="jku-not-fetched"),
    pytest.param(lambda: sign(x5u="https://evil.test/cert", kid="rsa-1", signer="rsa-2"),
                 Reason.BAD_SIGNATURE, id="x5u-not-fetched"),
    pytest.param(lambda: with_header("RS256", "rsa-2", kid="rsa-1", jwk=PUBLIC_JWKS["rsa-2"]),
                 Reason.BAD_SIGNATURE, id="embedded-jwk-ignored"),
    # claims
    pytest.param(lambda: sign(exp=DROP), Reason.INVALID_CLAIMS, id="exp-missing"),
    pytest.param(lambda: sign(exp=str(NOW + 300)), Reason.INVALID_CLAIMS, id="exp-string"),
    pytest.param(lambda: sign(exp=True), Reason.INVALID_CLAIMS, id="exp-bool"),
    pytest.param(lambda: sign(exp=NOW - 60), Reason.TOKEN_EXPIRED, id="expired-at-leeway"),
    pytest.param(lambda: sign(exp=NOW - 3600), Reason.TOKEN_EXPIRED, id="expired"),
    pytest.param(lambda: sign(nbf=NOW + 61), Reason.INVALID_CLAIMS, id="nbf-future"),
    pytest.param(lambda: sign(nbf="0"), Reason.INVALID_CLAIMS, id="nbf-string"),
    pytest.param(lambda: sign(iat=NOW + 61), Reason.INVALID_CLAIMS, id="iat-future"),
    pytest.param(lambda: sign(iat=[NOW]), Reason.INVALID_CLAIMS, id="iat-list"),
    pytest.param(lambda: sign(aud=DROP), Reason.INVALID_CLAIMS, id="aud-missing"),
    pytest.param(lambda: sign(aud="https://other.test"), Reason.INVALID_CLAIMS, id="aud-other"),
    pytest.param(lambda: sign(aud=AUD + "/"), Reason.INVALID_CLAIMS, id="aud-near-miss"),
    pytest.param(lambda: sign(aud=["https://other.test"]), Reason.INVALID_CLAIMS,
                 id="aud-list-other"),
    pytest.param(lambda: sign(aud=[]), Reason.INVALID_CLAIMS, id="aud-empty-list"),
    pytest.param(lambda: sign(aud=7), Reason.INVALID_CLAIMS, id="aud-int"),
    pytest.param(lambda: sign(aud=[AUD, 7]), Reason.INVALID_CLAIMS, id="aud-list-int"),
    pytest.param(lambda: sign(aud={"x": AUD}), Reason.INVALID_CLAIMS, id="aud-object"),
    pytest.param(lambda: sign("PS256", "rsa-2", iss=OTHER_ISS, aud=5), Reason.INVALID_CLAIMS,
                 id="aud-type-checked-without-audiences"),
    pytest.param(lambda: sign(sub=DROP), Reason.INVALID_CLAIMS, id="sub-missing"),
    pytest.param(lambda: sign(sub=12), Reason.INVALID_CLAIMS, id="sub-int"),
    pytest.param(lambda: sign(sub=""), Reason.INVALID_CLAIMS, id="sub-empty"),
    pytest.param(lambda: sign(sub="connect:com.example.reporting"), Reason.INVALID_CLAIMS,
                 id="sub-claims-connect-app"),
    pytest.param(lambda: sign(sub="oauth:client-1", client_id="client-2"),
                 Reason.INVALID_CLAIMS, id="sub-claims-oauth-app"),
    pytest.param(lambda: sign(client_id=5), Reason.INVALID_CLAIMS, id="client-id-int"),
    pytest.param(lambda: sign(scope=["read:cmdb-object:jira"]), Reason.INVALID_CLAIMS,
                 id="scope-list"),
    pytest.param(lambda: sign(scp=5), Reason.INVALID_CLAIMS, id="scp-int"),
    pytest.param(lambda: sign(scp=["a", 5]), Reason.INVALID_CLAIMS, id="scp-list-int"),
]


@pytest.mark.parametrize(("token", "reason"), FAILURES)
async def test_failures_have_their_own_reason(
    env: Env, token: Callable[[], str], reason: Reason
) -> None:
    assert await env.reason(token()) is reason
    assert all(url in (JWKS_URL, OTHER_JWKS_URL) for url in env.idp.calls)  # jku/x5u never fetched


async def test_credential_of_another_kind_is_refused(env: Env) -> None:
    credential = Credential(CredentialKind.CONNECT, sign())
    with pytest.raises(Deny) as caught:
        await env.auth.authenticate(credential, REQUEST, Snapshot(), NOW)
    assert caught.value.reason is Reason.MALFORMED_CREDENTIAL


async def test_deny_details_never_contain_the_token(env: Env) -> None:
    token = sign(aud="https://other.test")
    with pytest.raises(Deny) as caught:
        await env.run(token)
    assert token not in str(caught.value)
    assert token.split(".")[2] not in caught.value.detail


def test_an_issuer_without_a_cache_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match=r"auth\.example\.test"):
        OAuthAuthenticator([make_issuer()], {})


# --- JWKS behaviour seen through the authenticator ----------------------------------------------


async def test_unknown_kid_refetch_is_shared_and_rate_limited(env: Env) -> None:
    token = sign(kid="rsa-2")
    for _ in range(4):
        assert await env.reason(token) is Reason.UNKNOWN_KEY
    assert env.idp.calls == [JWKS_URL]
    env.clock.t += 30
    assert await env.reason(token) is Reason.UNKNOWN_KEY
    assert env.idp.calls == [JWKS_URL, JWKS_URL]


async def test_key_rotation_is_picked_up_by_the_refetch(env: Env) -> None:
    env.idp.docs[JWKS_URL] = jwks_doc("rsa-1", "rsa-2")
    principal = await env.run(sign(kid="rsa-2"))
    assert principal.account_id == "acc-ann"
    assert env.idp.calls == [JWKS_URL]


async def test_concurrent_requests_for_a_new_kid_share_one_fetch(env: Env) -> None:
    import asyncio

    env.idp.docs[JWKS_URL] = jwks_doc("rsa-1", "rsa-2")
    env.idp.gate = asyncio.Event()
    tokens = [sign(kid="rsa-2", sub=f"acc-{i}") for i in range(8)]
    runs = [asyncio.create_task(env.run(t)) for t in tokens]
    await asyncio.sleep(0.01)
    env.idp.gate.set()
    principals = await asyncio.gather(*runs)
    assert sorted(p.account_id or "" for p in principals) == sorted(f"acc-{i}" for i in range(8))
    assert env.idp.calls == [JWKS_URL]


async def test_jwks_down_at_start_is_dependency_unavailable() -> None:
    idp = FakeIdP()
    issuer = make_issuer()
    cache = JwksCache(issuer, clock=FakeClock(), fetch=idp)
    assert await cache.refresh() is False
    auth = OAuthAuthenticator([issuer], {ISS: cache})
    with pytest.raises(Deny) as caught:
        await auth.authenticate(Credential(CredentialKind.OAUTH_JWT, sign()), REQUEST,
                                Snapshot(), NOW)
    assert caught.value.reason is Reason.DEPENDENCY_UNAVAILABLE


async def test_stale_keys_serve_within_the_bound_then_refuse(env: Env) -> None:
    env.idp.down = True
    env.clock.t += 3600
    assert (await env.run(sign())).account_id == "acc-ann"
    env.clock.t += 1
    assert await env.reason(sign()) is Reason.DEPENDENCY_UNAVAILABLE


async def test_issuers_keys_do_not_mix(env: Env) -> None:
    # rsa-2 belongs to the other issuer only: a token naming ISS cannot borrow it.
    assert await env.reason(sign("PS256", kid="rsa-2")) is Reason.UNKNOWN_KEY


# --- principal ----------------------------------------------------------------------------------

READ = "read:cmdb-object:jira"
WRITE = "write:cmdb-object:jira"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param(
            {"scope": f"{READ} {WRITE}"},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      scopes=frozenset({READ, WRITE})),
            id="user-scope-string",
        ),
        pytest.param(
            {"scope": DROP, "scp": [READ, WRITE]},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      scopes=frozenset({READ, WRITE})),
            id="user-scp-list",
        ),
        pytest.param(
            {"scope": DROP, "scp": f"  {READ}  "},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      scopes=frozenset({READ})),
            id="user-scp-string",
        ),
        pytest.param(
            {"scope": READ, "scp": [WRITE]},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      scopes=frozenset({READ, WRITE})),
            id="scope-and-scp-combined",
        ),
        pytest.param(
            {"scope": DROP},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      scopes=frozenset()),
            id="no-scopes-is-empty-not-unscoped",
        ),
        pytest.param(
            {"sub": "client-1", "client_id": "client-1"},
            Principal(AuthType.OAUTH, PrincipalKind.APP, "client-1",
                      frozenset({"oauth:client-1"}), app_key="client-1",
                      scopes=frozenset({READ})),
            id="app-acting-as-itself",
        ),
        pytest.param(
            {"client_id": "client-1"},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                      app_key="client-1", scopes=frozenset({READ})),
            id="client-acting-for-user",
        ),
        pytest.param(
            {"sub": "client-1"},
            Principal(AuthType.OAUTH, PrincipalKind.USER, "client-1", frozenset({"client-1"}),
                      scopes=frozenset({READ})),
            id="no-client-id-is-a-user",
        ),
    ],
)
async def test_principal(env: Env, claims: dict[str, Any], expected: Principal) -> None:
    assert await env.run(sign(**claims)) == expected


# --- the cache of verified signatures ------------------------------------------------------------


def _counting(env: Env) -> list[str]:
    seen: list[str] = []
    issuers = list(env.auth._issuers.values())
    env.auth = OAuthAuthenticator(issuers, env.caches, on_cache=seen.append)
    return seen


async def test_a_reused_token_is_verified_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _counting(env)
    token = sign()
    first = await env.run(token)
    verify = env.auth._verify
    monkeypatch.setattr(env.auth, "_verify", lambda *a: pytest.fail("verified twice"))
    assert await env.run(token) == first
    assert seen == ["miss", "hit"]
    monkeypatch.setattr(env.auth, "_verify", verify)


async def test_a_cached_token_still_expires(env: Env) -> None:
    token = sign(exp=NOW + 100)
    await env.run(token)
    assert await env.reason(token, now=NOW + 100 + 61) is Reason.TOKEN_EXPIRED


async def test_a_cached_token_dies_with_its_key(env: Env) -> None:
    token = sign()
    await env.run(token)
    env.idp.docs[JWKS_URL] = jwks_doc("ec-1")  # rsa-1 rotated away
    assert await env.caches[ISS].refresh()
    assert await env.reason(token) is Reason.UNKNOWN_KEY


async def test_a_cached_token_is_refused_when_keys_go_stale(env: Env) -> None:
    token = sign()
    await env.run(token)
    env.idp.down = True
    env.clock.t += 3601 + 1
    assert await env.reason(token) is Reason.DEPENDENCY_UNAVAILABLE


async def test_failures_are_not_cached(env: Env) -> None:
    seen = _counting(env)
    bad = tampered()
    assert await env.reason(bad) is Reason.BAD_SIGNATURE
    assert await env.reason(bad) is Reason.BAD_SIGNATURE
    assert seen == ["miss", "miss"]


async def test_the_cache_is_bounded(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.authn.oauth as oauth

    monkeypatch.setattr(oauth, "VERIFIED_CACHE_ENTRIES", 3)
    seen = _counting(env)
    tokens = [sign(jti=str(i)) for i in range(5)]
    for token in tokens:
        await env.run(token)
    await env.run(tokens[0])  # evicted: verified again
    await env.run(tokens[4])  # still there
    assert seen[-2:] == ["miss", "hit"]
    assert len(env.auth._verified) == 3
