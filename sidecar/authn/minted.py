"""What API and container tokens share in layer 1: find a minted token and check it is live."""

from __future__ import annotations

from sidecar.decision import Deny, Reason
from sidecar.store.model import Snapshot, TokenRecord
from sidecar.store.tokens import parse_token, verify

_NAMES = {"api": "API token", "container": "container token"}


def live_token(text: str, kind: str, snapshot: Snapshot, now: float) -> TokenRecord:
    """The record of a minted token of `kind`, or Deny (unknown_token / revoked_token).

    The secret is compared with its keyed hash in constant time; the token id is not secret.
    """
    name = _NAMES[kind]
    parsed = parse_token(text)
    if parsed is None or parsed.kind != kind:
        raise Deny(Reason.UNKNOWN_TOKEN, f"not an {name}" if kind == "api" else f"not a {name}")
    record = snapshot.tokens.get(parsed.id)
    if record is None or record.kind != kind:
        raise Deny(Reason.UNKNOWN_TOKEN, f"no {name} {parsed.id}")
    if not verify(snapshot.token_key, parsed.secret, record.secret_hash):
        raise Deny(Reason.UNKNOWN_TOKEN, f"wrong secret for {name} {parsed.id}")
    if record.revoked:
        raise Deny(Reason.REVOKED_TOKEN, f"{name} {parsed.id} is revoked")
    if record.superseded:
        raise Deny(Reason.REVOKED_TOKEN, f"{name} {parsed.id} was superseded")
    if record.expires_at is not None and now >= record.expires_at:
        raise Deny(Reason.REVOKED_TOKEN, f"{name} {parsed.id} has expired")
    return record
