"""Layer 1 for `Bearer <opaque>`: an Assets container (import) token bound to one import source."""

from __future__ import annotations

from sidecar.authn.credentials import Credential
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot
from sidecar.store.tokens import CONTAINER, parse_token, verify


class ContainerTokenAuthenticator:
    """Checks the token's keyed hash and validity, and that its import source still exists."""

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        parsed = parse_token(credential.value)
        if parsed is None or parsed.kind != CONTAINER:
            raise Deny(Reason.UNKNOWN_TOKEN, "not a container token")
        record = snapshot.tokens.get(parsed.id)
        if record is None or record.kind != CONTAINER:
            raise Deny(Reason.UNKNOWN_TOKEN, f"no container token {parsed.id}")
        if not verify(snapshot.token_key, parsed.secret, record.secret_hash):
            raise Deny(Reason.UNKNOWN_TOKEN, f"wrong secret for container token {parsed.id}")
        if record.revoked:
            raise Deny(Reason.REVOKED_TOKEN, f"container token {parsed.id} is revoked")
        if record.superseded:
            raise Deny(Reason.REVOKED_TOKEN, f"container token {parsed.id} was superseded")
        if record.expires_at is not None and now >= record.expires_at:
            raise Deny(Reason.REVOKED_TOKEN, f"container token {parsed.id} has expired")
        source = record.import_source
        if source is None or source not in snapshot.import_sources:
            raise Deny(
                Reason.UNKNOWN_TOKEN, f"the import source of container token {parsed.id} is gone"
            )
        return Principal(
            auth_type=AuthType.CONTAINER_TOKEN,
            kind=PrincipalKind.CONTAINER,
            account_id=None,
            identities=frozenset(),
            import_source_id=source,
            token_id=record.id,
        )
