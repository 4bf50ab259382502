"""ConnectAuthenticator: every reason it can give, and the principals it builds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from atlassian_jwt.url_utils import hash_url

from sidecar.authn.connect import ConnectAuthenticator, find_installation
from sidecar.authn.credentials import Credential, CredentialKind, extract_credential
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.authn.qsh import canonical_request, query_string_hash
from sidecar.authn.secrets import SecretSource
from sidecar.config import ConnectConfig
from sidecar.decision import Deny, Reason
from sidecar.request import build_request
from sidecar.store.model import Installation, Snapshot

NOW = 1_700_000_000
REPORTING_SECRET = b"reporting-shared-secret-0123456789abcdef"
WRITER_SECRET = b"writer-shared-secret-0123456789abcdefghij"
TARGET = "/jsm/assets/workspace/ws-1/v1/object/88?includeAttributes=true&x=a+b"


def _inst(client_key: str, app_key: str, scopes: set[str], env: str) -> Installation:
    return Installation(
        client_key=client_key,
        app_key=app_key,
        scopes=frozenset(scopes),
        account_id=f"acc-{client_key}",
        shared_secret_env=env,
    )


INSTALLATIONS = [
    _inst("jira:abc-123", "com.example.reporting", {"READ", "ACT_AS_USER"}, "REPORTING"),
    _inst("jira:def-456", "com.example.writer", {"WRITE"}, "WRITER"),
    _inst("jira:m-1", "com.example.multi", {"READ"}, "MULTI"),
    _inst("jira:m-2", "com.example.multi", {"READ"}, "MULTI"),
    _inst("jira:broken", "com.example.broken", {"READ"}, "UNSET"),
]
SNAPSHOT = Snapshot(installations={i.client_key: i for i in INSTALLATIONS})
SECRETS = SecretSource(
    INSTALLATIONS,
    environ={
        "REPORTING": REPORTING_SECRET.decode(),
        "WRITER": WRITER_SECRET.decode(),
        "MULTI": "multi-shared-secret-0123456789abcdefghijk",
    },
)
CONFIG = ConnectConfig(leeway_seconds=30, max_lifetime_seconds=3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    claims: dict[str, Any] | bytes,
    *,
    header: dict[str, Any] | bytes | None = None,
    secret: bytes = REPORTING_SECRET,
    signature: bytes | None = None,
) -> str:
    """A token with any header and payload, HS256-signed unless `signature` is given."""
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    raw_header = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw_claims = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{_b64(raw_header)}.{_b64(raw_claims)}"
    if signature is None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def qsh_for(method: str, target: str, prefixes: tuple[str, ...] = ()) -> str:
    path, _, query = target.partition("?")
    return query_string_hash(canonical_request(method, path, query, strip_prefixes=prefixes))


_DROP = object()


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for GET TARGET from jira:abc-123, with `changes` applied (_DROP removes)."""
    base: dict[str, Any] = {
        "iss": "jira:abc-123",
        "iat": NOW - 10,
        "exp": NOW + 170,
        "qsh": qsh_for("GET", TARGET),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


async def authenticate(
    token: str,
    *,
    method: str = "GET",
    target: str = TARGET,
    from_query: bool = False,
    config: ConnectConfig = CONFIG,
    secrets: SecretSource = SECRETS,
    snapshot: Snapshot = SNAPSHOT,
    now: float = NOW,
) -> Principal:
    headers: dict[str, str] = {}
    if from_query:
        target += ("&" if "?" in target else "?") + f"jwt={token}"
    else:
        headers["authorization"] = f"JWT {token}"
    request = build_request(method=method, target=target, headers=headers)
    credential = Credential(CredentialKind.CONNECT, token, from_query=from_query)
    return await ConnectAuthenticator(config, secrets).authenticate(
        credential, request, snapshot, now
    )


def _tampered() -> str:
    head, _, sig = forge(claims()).split(".")
    return f"{head}.{_b64(json.dumps(claims(iss='jira:abc-123', sub='acc-x')).encode())}.{sig}"


Case = tuple[str, Callable[[], str], dict[str, Any], Reason]

DENIALS: list[Case] = [
    # not a JWT at all
    ("not-base64-json", lambda: "abc.def.ghi", {}, Reason.MALFORMED_CREDENTIAL),
    ("header-not-object", lambda: forge(claims(), header=b"[1]"), {}, Reason.MALFORMED_CREDENTIAL),
    ("payload-not-json", lambda: forge(b"not json"), {}, Reason.MALFORMED_CREDENTIAL),
    ("payload-not-object", lambda: forge(b"[1, 2]"), {}, Reason.MALFORMED_CREDENTIAL),
    ("not-three-parts", lambda: forge(claims()) + ".x", {}, Reason.MALFORMED_CREDENTIAL),
    ("not-base64url", lambda: forge(claims()).replace(".", ".+", 1), {},
     Reason.MALFORMED_CREDENTIAL),
    ("impossible-base64-length", lambda: "a." + forge(claims()).split(".", 1)[1], {},
     Reason.MALFORMED_CREDENTIAL),
    ("header-not-utf8", lambda: forge(claims(), header=b'{"alg": "\xff"}'), {},
     Reason.MALFORMED_CREDENTIAL),
    ("disabled", lambda: forge(claims()), {"config": ConnectConfig(enabled=False)},
     Reason.MALFORMED_CREDENTIAL),
    # algorithms
    ("alg-none", lambda: forge(claims(), header={"alg": "none"}, signature=b""), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("alg-missing", lambda: forge(claims(), header={"typ": "JWT"}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("alg-hs512", lambda: forge(claims(), header={"alg": "HS512"}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("alg-rs256", lambda: forge(claims(), header={"alg": "RS256"}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("alg-lowercase", lambda: forge(claims(), header={"alg": "hs256"}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("alg-list", lambda: forge(claims(), header={"alg": ["HS256"]}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("b64-false", lambda: forge(claims(), header={"alg": "HS256", "b64": False}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("crit", lambda: forge(claims(), header={"alg": "HS256", "crit": ["exp"]}), {},
     Reason.UNSUPPORTED_ALGORITHM),
    ("crit-b64", lambda: forge(claims(), header={"alg": "HS256", "crit": ["b64"], "b64": False}),
     {}, Reason.UNSUPPORTED_ALGORITHM),
    # issuer and installation
    ("iss-missing", lambda: forge(claims(iss=_DROP)), {}, Reason.INVALID_CLAIMS),
    ("iss-number", lambda: forge(claims(iss=42)), {}, Reason.INVALID_CLAIMS),
    ("iss-empty", lambda: forge(claims(iss="")), {}, Reason.INVALID_CLAIMS),
    ("iss-unknown", lambda: forge(claims(iss="jira:nobody")), {}, Reason.UNKNOWN_INSTALLATION),
    ("iss-app-key-of-two", lambda: forge(claims(iss="com.example.multi")), {},
     Reason.UNKNOWN_INSTALLATION),
    ("iss-no-installations", lambda: forge(claims()), {"snapshot": Snapshot()},
     Reason.UNKNOWN_INSTALLATION),
    # signature and secret
    ("wrong-secret", lambda: forge(claims(), secret=b"not-the-shared-secret-at-all-000000"), {},
     Reason.BAD_SIGNATURE),
    ("other-installations-secret", lambda: forge(claims(), secret=WRITER_SECRET), {},
     Reason.BAD_SIGNATURE),
    ("tampered-payload", _tampered, {}, Reason.BAD_SIGNATURE),
    ("no-signature", lambda: forge(claims(), signature=b""), {}, Reason.BAD_SIGNATURE),
    ("secret-unreadable", lambda: forge(claims(iss="jira:broken")), {},
     Reason.DEPENDENCY_UNAVAILABLE),
    # time claims
    ("iat-missing", lambda: forge(claims(iat=_DROP)), {}, Reason.INVALID_CLAIMS),
    ("exp-missing", lambda: forge(claims(exp=_DROP)), {}, Reason.INVALID_CLAIMS),
    ("iat-string", lambda: forge(claims(iat=str(NOW))), {}, Reason.INVALID_CLAIMS),
    ("exp-bool", lambda: forge(claims(exp=True)), {}, Reason.INVALID_CLAIMS),
    ("exp-null", lambda: forge(claims(exp=None)), {}, Reason.INVALID_CLAIMS),
    ("exp-nan", lambda: forge(claims(exp=float("nan"))), {}, Reason.INVALID_CLAIMS),
    ("exp-infinity", lambda: forge(claims(exp=float("inf"))), {}, Reason.INVALID_CLAIMS),
    ("iat-minus-infinity", lambda: forge(claims(iat=float("-inf"))), {}, Reason.INVALID_CLAIMS),
    ("exp-huge-int", lambda: forge(claims(exp=10**400)), {}, Reason.INVALID_CLAIMS),
    ("expired", lambda: forge(claims(iat=NOW - 200, exp=NOW - 31)), {}, Reason.TOKEN_EXPIRED),
    ("long-expired", lambda: forge(claims(iat=1, exp=100)), {}, Reason.TOKEN_EXPIRED),
    ("iat-future", lambda: forge(claims(iat=NOW + 31, exp=NOW + 200)), {},
     Reason.INVALID_CLAIMS),
    ("nbf-future", lambda: forge(claims(nbf=NOW + 31)), {}, Reason.INVALID_CLAIMS),
    ("nbf-string", lambda: forge(claims(nbf="soon")), {}, Reason.INVALID_CLAIMS),
    ("lifetime-too-long", lambda: forge(claims(iat=NOW - 10, exp=NOW + 3591)), {},
     Reason.INVALID_CLAIMS),
    ("lifetime-over-configured", lambda: forge(claims(iat=NOW - 10, exp=NOW + 100)),
     {"config": ConnectConfig(max_lifetime_seconds=60)}, Reason.INVALID_CLAIMS),
    # qsh
    ("qsh-missing", lambda: forge(claims(qsh=_DROP)), {}, Reason.QSH_MISMATCH),
    ("qsh-empty", lambda: forge(claims(qsh="")), {}, Reason.QSH_MISMATCH),
    ("qsh-number", lambda: forge(claims(qsh=1)), {}, Reason.QSH_MISMATCH),
    ("context-qsh", lambda: forge(claims(qsh="context-qsh")), {}, Reason.QSH_MISMATCH),
    ("qsh-non-ascii", lambda: forge(claims(qsh="é" * 64)), {}, Reason.QSH_MISMATCH),
    ("qsh-upper-case", lambda: forge(claims(qsh=qsh_for("GET", TARGET).upper())), {},
     Reason.QSH_MISMATCH),
    ("wrong-method", lambda: forge(claims()), {"method": "DELETE"}, Reason.QSH_MISMATCH),
    ("wrong-path", lambda: forge(claims()),
     {"target": TARGET.replace("/object/88", "/object/89")}, Reason.QSH_MISMATCH),
    ("wrong-query-value", lambda: forge(claims()),
     {"target": TARGET.replace("x=a+b", "x=a+c")}, Reason.QSH_MISMATCH),
    ("extra-query-parameter", lambda: forge(claims()), {"target": TARGET + "&limit=1"},
     Reason.QSH_MISMATCH),
    ("prefix-not-configured", lambda: forge(claims()), {"target": "/jira" + TARGET},
     Reason.QSH_MISMATCH),
    # Bug found by an attacker: deeply nested JSON raised RecursionError (500 internal_error).
    ("nested-payload", lambda: ".".join([
        _b64(b'{"alg":"HS256","typ":"JWT"}'), _b64(b"[" * 5000 + b"]" * 5000), "x"]), {},
     Reason.MALFORMED_CREDENTIAL),
    ("nested-header", lambda: ".".join([
        _b64(b"[" * 5000 + b"]" * 5000), _b64(b"{}"), "x"]), {},
     Reason.MALFORMED_CREDENTIAL),
    # sub
    ("sub-empty", lambda: forge(claims(sub="")), {}, Reason.INVALID_CLAIMS),
    ("sub-number", lambda: forge(claims(sub=7)), {}, Reason.INVALID_CLAIMS),
    ("sub-null", lambda: forge(claims(sub=None)), {}, Reason.INVALID_CLAIMS),
    # Bug found end to end: impersonating an app identity took that app's roles.
    ("sub-names-a-connect-app", lambda: forge(claims(sub="connect:com.example.writer")), {},
     Reason.INVALID_CLAIMS),
    ("sub-names-an-oauth-client", lambda: forge(claims(sub="oauth:svc-client")), {},
     Reason.INVALID_CLAIMS),
]


@pytest.mark.parametrize(
    ("make_token", "kwargs", "reason"),
    [case[1:] for case in DENIALS],
    ids=[case[0] for case in DENIALS],
)
async def test_denials(
    make_token: Callable[[], str], kwargs: dict[str, Any], reason: Reason
) -> None:
    with pytest.raises(Deny) as exc:
        await authenticate(make_token(), **kwargs)
    assert exc.value.reason is reason
    for secret in (REPORTING_SECRET, WRITER_SECRET):
        assert secret.decode() not in str(exc.value)


APP_PRINCIPAL = Principal(
    auth_type=AuthType.CONNECT,
    kind=PrincipalKind.APP,
    account_id="acc-jira:abc-123",
    identities=frozenset({"connect:com.example.reporting", "acc-jira:abc-123"}),
    app_key="com.example.reporting",
    connect_scopes=frozenset({"READ", "ACT_AS_USER"}),
)


async def test_app_user_by_client_key() -> None:
    assert await authenticate(forge(claims())) == APP_PRINCIPAL


async def test_app_user_by_app_key_of_a_single_installation() -> None:
    token = forge(claims(iss="com.example.writer"), secret=WRITER_SECRET)
    principal = await authenticate(token)
    assert principal == Principal(
        auth_type=AuthType.CONNECT,
        kind=PrincipalKind.APP,
        account_id="acc-jira:def-456",
        identities=frozenset({"connect:com.example.writer", "acc-jira:def-456"}),
        app_key="com.example.writer",
        connect_scopes=frozenset({"WRITE"}),
    )


async def test_impersonation_with_act_as_user() -> None:
    principal = await authenticate(forge(claims(sub="acc-ann")))
    assert principal == Principal(
        auth_type=AuthType.CONNECT,
        kind=PrincipalKind.USER,
        account_id="acc-ann",
        identities=frozenset({"acc-ann"}),
        app_key="com.example.reporting",
        impersonated=True,
        connect_scopes=frozenset({"READ", "ACT_AS_USER"}),
    )


@pytest.mark.parametrize("iss", ["jira:def-456", "com.example.writer"])
async def test_impersonation_without_act_as_user_is_left_to_layer_2(iss: str) -> None:
    """Refused later with 403 connect_scope_missing (after the operation lookup), and never
    downgraded to the app user: the principal still names the user it asked to act as."""
    principal = await authenticate(forge(claims(iss=iss, sub="acc-ann"), secret=WRITER_SECRET))
    assert principal.impersonated and principal.account_id == "acc-ann"
    assert principal.kind is PrincipalKind.USER
    assert principal.connect_scopes == frozenset({"WRITE"})


@pytest.mark.parametrize(
    "changes",
    [
        {"iat": NOW - 200, "exp": NOW - 30},  # expired exactly at the leeway
        {"iat": NOW + 30, "exp": NOW + 200},  # issued exactly at the leeway in the future
        {"nbf": NOW + 30},
        {"iat": NOW - 10, "exp": NOW + 3590},  # lifetime exactly the maximum
        {"iat": NOW - 10.5, "exp": NOW + 100.25},  # fractional seconds
        {"aud": "jira:abc-123", "jti": "x", "context": {"user": {}}},  # other claims ignored
    ],
)
async def test_boundaries_that_still_pass(changes: dict[str, Any]) -> None:
    assert await authenticate(forge(claims(**changes))) == APP_PRINCIPAL


async def test_query_token_ignores_the_jwt_parameter_in_the_qsh() -> None:
    principal = await authenticate(forge(claims()), from_query=True)
    assert principal.via_query_jwt is True
    assert principal.kind is PrincipalKind.APP


async def test_header_and_query_tokens_through_credential_extraction() -> None:
    token = forge(claims())
    authenticator = ConnectAuthenticator(CONFIG, SECRETS)
    for target, headers in [
        (TARGET, {"Authorization": f"JWT {token}"}),
        (f"{TARGET}&jwt={token}", {}),
        (f"/jsm/assets/workspace/ws-1/v1/object/88?jwt={token}&includeAttributes=true&x=a%20b",
         {}),
    ]:
        request = build_request(method="GET", target=target, headers=headers)
        credential = extract_credential(request)
        principal = await authenticator.authenticate(credential, request, SNAPSHOT, NOW)
        assert principal.via_query_jwt is ("jwt=" in target)


@pytest.mark.parametrize(
    "qsh",
    [
        # Java-style: the decoded path
        qsh_for("GET", "/jsm/assets/workspace/caf%C3%A9/v1/object/88"),
        # atlassian-jwt (Python) and atlassian-jwt (JS): the path as sent
        hash_url("GET", "/jsm/assets/workspace/caf%C3%A9/v1/object/88"),
    ],
    ids=["decoded", "as-sent"],
)
async def test_percent_escaped_path_accepts_either_form(qsh: str) -> None:
    token = forge(claims(qsh=qsh))
    principal = await authenticate(token, target="/jsm/assets/workspace/caf%C3%A9/v1/object/88")
    assert principal == APP_PRINCIPAL
    with pytest.raises(Deny) as exc:
        await authenticate(token, target="/jsm/assets/workspace/caf%C3%A8/v1/object/88")
    assert exc.value.reason is Reason.QSH_MISMATCH


async def test_configured_prefix_is_left_out_of_the_qsh() -> None:
    config = ConnectConfig(qsh_strip_prefixes=("/jira",))
    token = forge(claims())
    assert await authenticate(token, target="/jira" + TARGET, config=config) == APP_PRINCIPAL
    # a partial segment is not a prefix
    with pytest.raises(Deny) as exc:
        await authenticate(token, target="/jiraX" + TARGET, config=config)
    assert exc.value.reason is Reason.QSH_MISMATCH


async def test_the_token_is_bound_to_now() -> None:
    token = forge(claims())
    assert await authenticate(token, now=NOW + 170 + 30) == APP_PRINCIPAL
    with pytest.raises(Deny) as exc:
        await authenticate(token, now=NOW + 170 + 31)
    assert exc.value.reason is Reason.TOKEN_EXPIRED


def test_client_key_wins_over_an_app_key() -> None:
    a = _inst("shared-name", "com.example.a", {"READ"}, "A")
    b = _inst("jira:b", "shared-name", {"READ"}, "B")
    installations = {a.client_key: a, b.client_key: b}
    assert find_installation(installations, "shared-name") is a
    assert find_installation(installations, "com.example.a") is a


# --- the published vectors, verified end to end ------------------------------------------

VECTOR_FILE = json.loads(
    (Path(__file__).parent / "fixtures" / "connect-qsh.json").read_text(encoding="utf-8")
)
VECTOR_ISS, VECTOR_SECRET, VECTOR_SUB = "jira:1234-5678-9000", b"s0m3-sh@r3d-s3cr37", "123456789"
VECTOR_IAT, VECTOR_EXP = 1392204462, 1392204642


@pytest.mark.parametrize("vector", VECTOR_FILE["vectors"], ids=lambda v: f"{v['n']}")
async def test_vector_tokens_verify_against_their_requests(vector: dict[str, Any]) -> None:
    installation = _inst(VECTOR_ISS, "com.example.vectors", {"READ", "ACT_AS_USER"}, "VEC")
    snapshot = Snapshot(installations={VECTOR_ISS: installation})
    secrets = SecretSource([installation], environ={"VEC": VECTOR_SECRET.decode()})
    token = forge(
        {"iss": VECTOR_ISS, "sub": VECTOR_SUB, "iat": VECTOR_IAT, "exp": VECTOR_EXP,
         "qsh": vector["qsh"]},
        secret=VECTOR_SECRET,
    )
    for from_query in (False, True):
        principal = await authenticate(
            token, method=vector["method"], target=vector["request"], from_query=from_query,
            secrets=secrets, snapshot=snapshot, now=VECTOR_IAT + 60, config=ConnectConfig(),
        )
        assert principal.account_id == VECTOR_SUB
        assert principal.impersonated is True
        assert principal.via_query_jwt is from_query
    with pytest.raises(Deny) as exc:
        await authenticate(
            token, method="POST", target=vector["request"], secrets=secrets, snapshot=snapshot,
            now=VECTOR_IAT + 60,
        )
    assert exc.value.reason is Reason.QSH_MISMATCH
