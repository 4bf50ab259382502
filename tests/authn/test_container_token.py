"""ContainerTokenAuthenticator: every reason it can give, and the principal it builds."""

from __future__ import annotations

import pytest

from sidecar.authn.container_token import ContainerTokenAuthenticator
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

IDS = {
    "good": "00000000000000c1",
    "revoked": "00000000000000c2",
    "superseded": "00000000000000c3",
    "expired": "00000000000000c4",
    "orphan": "00000000000000c5",  # its import source was removed from the policy
    "api": "00000000000000a1",
}


def _container(token_id: str, **fields: object) -> TokenRecord:
    values: dict[str, object] = {
        "id": token_id, "kind": "container", "secret_hash": hash_secret(KEY, SECRET),
        "created_at": NOW - 100, "expires_at": None, "revoked": False, "import_source": "src-1",
    }
    values.update(fields)
    return TokenRecord(**values)  # type: ignore[arg-type]


SNAPSHOT = Snapshot(
    users={"acc-ann": "ann@example.test"},
    import_sources={"src-1": ImportSource("src-1", "1")},
    tokens={
        IDS["good"]: _container(IDS["good"]),
        IDS["revoked"]: _container(IDS["revoked"], revoked=True),
        IDS["superseded"]: _container(IDS["superseded"], superseded=True),
        IDS["expired"]: _container(IDS["expired"], expires_at=NOW),
        IDS["orphan"]: _container(IDS["orphan"], import_source="src-gone"),
        IDS["api"]: TokenRecord(
            id=IDS["api"], kind="api", secret_hash=hash_secret(KEY, SECRET), created_at=NOW,
            expires_at=None, revoked=False, account_id="acc-ann",
        ),
    },
    token_key=KEY,
)
REQUEST = build_request(method="GET", target="/jsm/assets/v1/imports/info", headers={})


def bearer(name: str, secret: str = SECRET, kind: str = "container") -> Credential:
    return Credential(CredentialKind.CONTAINER, format_token(kind, IDS[name], secret))


async def authenticate(credential: Credential, now: float = NOW) -> Principal:
    return await ContainerTokenAuthenticator().authenticate(credential, REQUEST, SNAPSHOT, now)


async def test_a_valid_token_gives_the_container_principal() -> None:
    assert await authenticate(bearer("good")) == Principal(
        auth_type=AuthType.CONTAINER_TOKEN,
        kind=PrincipalKind.CONTAINER,
        account_id=None,
        identities=frozenset(),
        import_source_id="src-1",
        token_id=IDS["good"],
    )


async def test_it_works_from_a_real_authorization_header() -> None:
    token = format_token("container", IDS["good"], SECRET)
    request = build_request(
        method="GET", target="/jsm/assets/v1/imports/info",
        headers={"authorization": f"Bearer {token}"},
    )
    credential = extract_credential(request)
    assert credential.kind is CredentialKind.CONTAINER  # never mistaken for a JWT
    principal = await ContainerTokenAuthenticator().authenticate(
        credential, request, SNAPSHOT, NOW
    )
    assert principal.import_source_id == "src-1"


async def test_a_token_is_valid_until_its_expiry() -> None:
    assert (await authenticate(bearer("expired"), NOW - 1)).token_id == IDS["expired"]


CASES: list[tuple[str, Credential, Reason]] = [
    ("opaque junk", Credential(CredentialKind.CONTAINER, "abc123"), Reason.UNKNOWN_TOKEN),
    ("an API token", bearer("api", kind="api"), Reason.UNKNOWN_TOKEN),
    ("container prefix on an API record", bearer("api"), Reason.UNKNOWN_TOKEN),
    ("unknown id", Credential(
        CredentialKind.CONTAINER, format_token("container", "ffffffffffffffff", SECRET)),
     Reason.UNKNOWN_TOKEN),
    ("wrong secret", bearer("good", OTHER_SECRET), Reason.UNKNOWN_TOKEN),
    ("revoked", bearer("revoked"), Reason.REVOKED_TOKEN),
    ("superseded", bearer("superseded"), Reason.REVOKED_TOKEN),
    ("expired", bearer("expired"), Reason.REVOKED_TOKEN),
    ("import source gone", bearer("orphan"), Reason.UNKNOWN_TOKEN),
]


@pytest.mark.parametrize(("credential", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_denials(credential: Credential, reason: Reason) -> None:
    with pytest.raises(Deny) as info:
        await authenticate(credential)
    assert info.value.reason is reason
    assert SECRET not in info.value.detail
