"""Layer 1 for `Bearer <opaque>`: an Assets container (import) token bound to one import source."""

from __future__ import annotations

from sidecar.authn.credentials import Credential
from sidecar.authn.minted import live_token
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot
from sidecar.store.tokens import CONTAINER


class ContainerTokenAuthenticator:
    """Checks the token's keyed hash and validity, and that its import source still exists."""

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        record = live_token(credential.value, CONTAINER, snapshot, now)
        source = record.import_source
        if source is None or source not in snapshot.import_sources:
            raise Deny(
                Reason.UNKNOWN_TOKEN, f"the import source of container token {record.id} is gone"
            )
        return Principal(
            auth_type=AuthType.CONTAINER_TOKEN,
            kind=PrincipalKind.CONTAINER,
            account_id=None,
            identities=frozenset(),
            import_source_id=source,
            token_id=record.id,
        )
