"""ApiTokenAuthenticator: every reason it can give, and the principal it builds."""

from __future__ import annotations

import base64

import pytest

from sidecar.authn.api_token import ApiTokenAuthenticator
from sidecar.authn.credentials import Credential, CredentialKind, extract_credential
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.request import build_request
from sidecar.store.model import ImportSource, Snapshot, TokenRecord
from sidecar.store.tokens import format_token, hash_secret

NOW = 1_700_000_000.0
KEY = b"k" * 32
SECRET = "S" * 40 + "-_0"
OTHER_SECRET = "T" * 43
EMAIL = "ann@example.test"

IDS = {
    "good": "00000000000000a1",
    "scoped": "00000000000000a2",
    "revoked": "00000000000000a3",
    "expired": "00000000000000a4",
    "orphan": "00000000000000a5",  # its account has no email in the policy
    "container": "00000000000000c1",
}


def _api(token_id: str, **fields: object) -> TokenRecord:
    values: dict[str, object] = {
        "id": token_id, "kind": "api", "secret_hash": hash_secret(KEY, SECRET),
        "created_at": NOW - 100, "expires_at": None, "revoked": False, "account_id": "acc-ann",
    }
    values.update(fields)
    return TokenRecord(**values)  # type: ignore[arg-type]


SNAPSHOT = Snapshot(
    users={"acc-ann": EMAIL},
    import_sources={"src-1": ImportSource("src-1", "1")},
    tokens={
        IDS["good"]: _api(IDS["good"]),
        IDS["scoped"]: _api(IDS["scoped"], scopes=frozenset({"read:cmdb-object:jira"})),
        IDS["revoked"]: _api(IDS["revoked"], revoked=True),
        IDS["expired"]: _api(IDS["expired"], expires_at=NOW),
        IDS["orphan"]: _api(IDS["orphan"], account_id="acc-gone"),
        IDS["container"]: TokenRecord(
            id=IDS["container"], kind="container", secret_hash=hash_secret(KEY, SECRET),
            created_at=NOW, expires_at=None, revoked=False, import_source="src-1",
        ),
    },
    token_key=KEY,
)
REQUEST = build_request(method="GET", target="/jsm/assets/workspace/ws-1/v1/object/88", headers={})


def api_token(name: str, secret: str = SECRET) -> str:
    return format_token("api", IDS[name], secret)


def basic(raw: bytes) -> Credential:
    return Credential(CredentialKind.BASIC, base64.b64encode(raw).decode())


async def authenticate(credential: Credential, now: float = NOW) -> Principal:
    return await ApiTokenAuthenticator().authenticate(credential, REQUEST, SNAPSHOT, now)


async def test_a_valid_token_gives_the_user_principal() -> None:
    principal = await authenticate(basic(f"{EMAIL}:{api_token('good')}".encode()))
    assert principal == Principal(
        auth_type=AuthType.API_TOKEN,
        kind=PrincipalKind.USER,
        account_id="acc-ann",
        identities=frozenset({"acc-ann"}),
        scopes=None,
        token_id=IDS["good"],
    )


async def test_a_scoped_token_carries_its_scopes() -> None:
    principal = await authenticate(basic(f"{EMAIL}:{api_token('scoped')}".encode()))
    assert principal.scopes == frozenset({"read:cmdb-object:jira"})


async def test_the_email_is_compared_case_insensitively() -> None:
    principal = await authenticate(basic(f"Ann@Example.TEST:{api_token('good')}".encode()))
    assert principal.account_id == "acc-ann"


async def test_it_works_from_a_real_authorization_header() -> None:
    value = base64.b64encode(f"{EMAIL}:{api_token('good')}".encode()).decode()
    request = build_request(
        method="GET", target="/x", headers={"authorization": f"Basic {value}"}
    )
    credential = extract_credential(request)
    assert credential.kind is CredentialKind.BASIC
    principal = await ApiTokenAuthenticator().authenticate(credential, request, SNAPSHOT, NOW)
    assert principal.token_id == IDS["good"]


async def test_a_token_is_valid_until_its_expiry() -> None:
    principal = await authenticate(basic(f"{EMAIL}:{api_token('expired')}".encode()), NOW - 1)
    assert principal.token_id == IDS["expired"]


CASES: list[tuple[str, Credential, Reason]] = [
    ("not base64", Credential(CredentialKind.BASIC, "!!!!"), Reason.MALFORMED_CREDENTIAL),
    ("padding inside", Credential(CredentialKind.BASIC, "YWJj=ZGVm"), Reason.MALFORMED_CREDENTIAL),
    ("missing padding", Credential(CredentialKind.BASIC, "YWJjZA"), Reason.MALFORMED_CREDENTIAL),
    ("url-safe alphabet", Credential(CredentialKind.BASIC, "__--"), Reason.MALFORMED_CREDENTIAL),
    ("not UTF-8", basic(b"\xff\xfe:" + api_token("good").encode()), Reason.MALFORMED_CREDENTIAL),
    ("no colon", basic(EMAIL.encode() + api_token("good").encode()), Reason.MALFORMED_CREDENTIAL),
    ("not a token", basic(f"{EMAIL}:hunter2".encode()), Reason.UNKNOWN_TOKEN),
    ("empty token", basic(f"{EMAIL}:".encode()), Reason.UNKNOWN_TOKEN),
    ("colon in the token part", basic(f"{EMAIL}:{api_token('good')}:x".encode()),
     Reason.UNKNOWN_TOKEN),
    ("a container token", basic(f"{EMAIL}:{format_token('container', IDS['container'], SECRET)}"
                                .encode()), Reason.UNKNOWN_TOKEN),
    ("api prefix on a container record",
     basic(f"{EMAIL}:{format_token('api', IDS['container'], SECRET)}".encode()),
     Reason.UNKNOWN_TOKEN),
    ("unknown id", basic(f"{EMAIL}:{format_token('api', 'ffffffffffffffff', SECRET)}".encode()),
     Reason.UNKNOWN_TOKEN),
    ("wrong secret", basic(f"{EMAIL}:{api_token('good', OTHER_SECRET)}".encode()),
     Reason.UNKNOWN_TOKEN),
    ("revoked", basic(f"{EMAIL}:{api_token('revoked')}".encode()), Reason.REVOKED_TOKEN),
    ("expired", basic(f"{EMAIL}:{api_token('expired')}".encode()), Reason.REVOKED_TOKEN),
    ("another email", basic(f"bob@example.test:{api_token('good')}".encode()),
     Reason.UNKNOWN_TOKEN),
    ("empty email", basic(f":{api_token('good')}".encode()), Reason.UNKNOWN_TOKEN),
    ("account without an email", basic(f"{EMAIL}:{api_token('orphan')}".encode()),
     Reason.UNKNOWN_TOKEN),
]


@pytest.mark.parametrize(("credential", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_denials(credential: Credential, reason: Reason) -> None:
    with pytest.raises(Deny) as info:
        await authenticate(credential)
    assert info.value.reason is reason
    assert SECRET not in info.value.detail
    assert EMAIL not in info.value.detail


async def test_without_the_store_key_nothing_verifies() -> None:
    snapshot = Snapshot(users=SNAPSHOT.users, tokens=SNAPSHOT.tokens)  # token_key b""
    credential = basic(f"{EMAIL}:{api_token('good')}".encode())
    with pytest.raises(Deny) as info:
        await ApiTokenAuthenticator().authenticate(credential, REQUEST, snapshot, NOW)
    assert info.value.reason is Reason.UNKNOWN_TOKEN
