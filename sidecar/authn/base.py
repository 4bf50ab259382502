"""The one interface every credential kind implements."""

from __future__ import annotations

from typing import Protocol

from sidecar.authn.credentials import Credential
from sidecar.authn.principal import Principal
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot


class Authenticator(Protocol):
    """Layer 1 for one credential kind.

    Returns the Principal, or raises `sidecar.decision.Deny` with a 401 reason (or
    `dependency_unavailable`). Never reads the wall clock: `now` is passed in (Unix seconds).
    """

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal: ...
