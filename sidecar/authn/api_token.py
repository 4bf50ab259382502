"""Layer 1 for `Basic base64(email:api_token)`: a minted user API token and its account's email."""

from __future__ import annotations

import base64
import binascii

from sidecar.authn.credentials import Credential
from sidecar.authn.minted import live_token
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot
from sidecar.store.tokens import API


def _email_and_token(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Deny(Reason.MALFORMED_CREDENTIAL, "Basic credential is not valid base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Deny(Reason.MALFORMED_CREDENTIAL, "Basic credential is not UTF-8") from None
    email, colon, token = text.partition(":")
    if not colon:
        raise Deny(Reason.MALFORMED_CREDENTIAL, "Basic credential has no colon")
    return email, token


class ApiTokenAuthenticator:
    """Checks the token's keyed hash, its validity, then that the email is its account's."""

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        email, token = _email_and_token(credential.value)
        record = live_token(token, API, snapshot, now)
        account_id = record.account_id
        known_email = snapshot.users.get(account_id) if account_id is not None else None
        if account_id is None or known_email is None or known_email != email.lower():
            raise Deny(
                Reason.UNKNOWN_TOKEN, f"the email is not that of API token {record.id}'s account"
            )
        return Principal(
            auth_type=AuthType.API_TOKEN,
            kind=PrincipalKind.USER,
            account_id=account_id,
            identities=frozenset({account_id}),
            scopes=record.scopes,
            token_id=record.id,
        )
