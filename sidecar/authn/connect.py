"""Layer 1 for Atlassian Connect JWTs: HS256 with the installation's secret, claims and qsh."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from sidecar.authn.credentials import Credential
from sidecar.authn.principal import APP_IDENTITY_PREFIXES, AuthType, Principal, PrincipalKind
from sidecar.authn.qsh import candidate_hashes
from sidecar.authn.secrets import SecretSource
from sidecar.config import ConnectConfig
from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest
from sidecar.store.model import Installation, Snapshot

ALGORITHM = "HS256"
CONTEXT_QSH = "context-qsh"  # Atlassian's marker for tokens not bound to one request
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _shown(text: str) -> str:
    """An unverified, caller-chosen string bounded for logs and explain."""
    return text if len(text) <= 100 else text[:100] + "..."


def find_installation(installations: Mapping[str, Installation], iss: str) -> Installation:
    """The installation whose client key is `iss`, or whose app key is, if it is the only one."""
    by_client_key = installations.get(iss)
    if by_client_key is not None:
        return by_client_key
    by_app_key = [inst for inst in installations.values() if inst.app_key == iss]
    if len(by_app_key) == 1:
        return by_app_key[0]
    if by_app_key:
        raise Deny(
            Reason.UNKNOWN_INSTALLATION,
            f"app key {_shown(iss)} has {len(by_app_key)} installations; use a client key",
        )
    raise Deny(Reason.UNKNOWN_INSTALLATION, f"no Connect installation for iss {_shown(iss)}")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (ValueError, RecursionError):  # bad base64/UTF-8/JSON alike, or absurd nesting
        raise Deny(Reason.MALFORMED_CREDENTIAL, f"Connect token {what} is unreadable") from None
    if not isinstance(value, dict):
        raise Deny(Reason.MALFORMED_CREDENTIAL, f"Connect token {what} is not a JSON object")
    return value


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Deny(Reason.INVALID_CLAIMS, f"'{name}' is missing or not a number")
    try:
        number = float(value)
    except OverflowError:
        raise Deny(Reason.INVALID_CLAIMS, f"'{name}' is out of range") from None
    if not math.isfinite(number):  # json accepts NaN and Infinity; both defeat comparisons
        raise Deny(Reason.INVALID_CLAIMS, f"'{name}' is not a finite number")
    return number


class ConnectAuthenticator:
    """Verifies `Authorization: JWT <token>` and `?jwt=` credentials (Authenticator protocol)."""

    def __init__(self, config: ConnectConfig, secrets: SecretSource) -> None:
        self._config = config
        self._secrets = secrets

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        return self.verify(credential, request, snapshot, now)

    def verify(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        """The synchronous core of `authenticate` (CPU only: no I/O, no clock)."""
        if not self._config.enabled:
            raise Deny(Reason.MALFORMED_CREDENTIAL, "Connect JWT authentication is disabled")
        token = credential.value
        claims, signature = self._parse(token)
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise Deny(Reason.INVALID_CLAIMS, "'iss' is missing or not a string")
        installation = find_installation(snapshot.installations, iss)
        secret = self._secrets.secret_for(installation.client_key)
        signing_input = token.rsplit(".", 1)[0].encode("utf-8")
        expected = hmac.new(secret, signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise Deny(
                Reason.BAD_SIGNATURE, f"signature does not verify for {installation.client_key}"
            )
        self._check_times(claims, now)
        self._check_qsh(claims, request)
        return self._principal(claims, installation, credential)

    def _parse(self, token: str) -> tuple[dict[str, Any], bytes]:
        """Claims and signature, unverified; refuses every algorithm but HS256.

        Parsed here rather than by PyJWT so that the header's `alg` and `crit` are judged
        before anything else (PyJWT reports an unknown `crit` as a malformed token).
        """
        parts = token.split(".")
        if len(parts) != 3 or not all(_B64URL.fullmatch(part) for part in parts):
            raise Deny(Reason.MALFORMED_CREDENTIAL, "Connect token is not a JWT")
        header = _json_object(parts[0], "header")
        if header.get("alg") != ALGORITHM:
            raise Deny(Reason.UNSUPPORTED_ALGORITHM, "Connect tokens must be signed with HS256")
        if "crit" in header:
            raise Deny(Reason.UNSUPPORTED_ALGORITHM, "Connect token carries a 'crit' header")
        if header.get("b64", True) is not True:
            raise Deny(Reason.UNSUPPORTED_ALGORITHM, "Connect token uses an unencoded payload")
        return _json_object(parts[1], "payload"), _b64decode(parts[2])

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        leeway = self._config.leeway_seconds
        iat = _time_claim(claims, "iat")
        exp = _time_claim(claims, "exp")
        if exp + leeway < now:
            raise Deny(Reason.TOKEN_EXPIRED, f"expired {now - exp:.0f}s ago")
        if iat > now + leeway:
            raise Deny(Reason.INVALID_CLAIMS, "'iat' is in the future")
        if "nbf" in claims and _time_claim(claims, "nbf") > now + leeway:
            raise Deny(Reason.INVALID_CLAIMS, "'nbf' is in the future")
        if exp - iat > self._config.max_lifetime_seconds:
            raise Deny(
                Reason.INVALID_CLAIMS,
                f"lifetime {exp - iat:.0f}s exceeds {self._config.max_lifetime_seconds:.0f}s",
            )

    def _check_qsh(self, claims: Mapping[str, Any], request: HttpRequest) -> None:
        qsh = claims.get("qsh")
        if not isinstance(qsh, str) or not qsh:
            raise Deny(Reason.QSH_MISMATCH, "'qsh' is missing")
        if qsh == CONTEXT_QSH:
            raise Deny(Reason.QSH_MISMATCH, "context-qsh tokens are not accepted on API routes")
        try:
            candidates = candidate_hashes(
                request.method, request.raw_path, request.raw_query,
                self._config.qsh_strip_prefixes,
            )
        except ValueError:
            raise Deny(Reason.QSH_MISMATCH, "request cannot be canonicalised") from None
        presented = qsh.encode("utf-8")
        matched = False
        for candidate in candidates:  # compare against all, so timing says nothing about which
            matched |= hmac.compare_digest(candidate.encode("ascii"), presented)
        if not matched:
            raise Deny(Reason.QSH_MISMATCH, "'qsh' does not match this request")

    def _principal(
        self, claims: Mapping[str, Any], installation: Installation, credential: Credential
    ) -> Principal:
        app_key = installation.app_key
        if "sub" not in claims:
            return Principal(
                auth_type=AuthType.CONNECT,
                kind=PrincipalKind.APP,
                account_id=installation.account_id,
                identities=frozenset(
                    i for i in (f"connect:{app_key}", installation.account_id) if i
                ),
                app_key=app_key,
                connect_scopes=installation.scopes,
                via_query_jwt=credential.from_query,
            )
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Deny(Reason.INVALID_CLAIMS, "'sub' is not a non-empty string")
        if sub.startswith(APP_IDENTITY_PREFIXES):
            # Impersonation acts as a user: `connect:<app>` would take another app's roles.
            raise Deny(Reason.INVALID_CLAIMS, "'sub' names an app identity, not a user")
        # Without ACT_AS_USER layer 2 refuses (403 connect_scope_missing) once the operation is
        # known (product.md section 6 orders the operation lookup first); the principal is never
        # downgraded to the app user.
        return Principal(
            auth_type=AuthType.CONNECT,
            kind=PrincipalKind.USER,
            account_id=sub,
            identities=frozenset({sub}),
            app_key=app_key,
            impersonated=True,
            connect_scopes=installation.scopes,
            via_query_jwt=credential.from_query,
        )
