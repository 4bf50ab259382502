"""Layer 1 for OAuth 2.0 bearer JWTs (Forge, 3LO): issuer, key, signature, claims, principal."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sidecar.authn.credentials import Credential, CredentialKind
from sidecar.authn.jwks import JwksCache
from sidecar.authn.principal import APP_IDENTITY_PREFIXES, AuthType, Principal, PrincipalKind
from sidecar.config import ALLOWED_OAUTH_ALGORITHMS, Issuer
from sidecar.decision import Deny, Reason
from sidecar.request import HttpRequest
from sidecar.store.model import Snapshot

MAX_TOKEN_CHARS = 16 * 1024
VERIFIED_CACHE_ENTRIES = 4096
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


@dataclass(frozen=True)
class _Verified:
    """A token whose signature was verified with `key` (claims are re-checked on every use)."""

    issuer: Issuer
    kid: str | None
    key: jwt.PyJWK
    claims: dict[str, Any]


class OAuthAuthenticator:
    """Verifies bearer JWTs against the configured issuers' JWKS; the algorithm never comes
    from the token, `jku`/`x5u`/`jwk` headers are ignored, and time is passed in.

    Clients reuse a token for many requests, so a bounded cache (keyed by the token's SHA-256)
    remembers verified signatures. A hit still fetches the key by `kid` (so stale or rotated
    keys behave exactly as without the cache: the cached result counts only while the very same
    key object is current) and still checks every time-dependent claim against `now`.
    """

    def __init__(
        self,
        issuers: Sequence[Issuer],
        caches: Mapping[str, JwksCache],
        *,
        on_cache: Callable[[str], None] | None = None,
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        missing = sorted(set(self._issuers) - set(caches))
        if missing:
            raise ValueError(f"no JWKS cache for issuer(s): {', '.join(missing)}")
        self._caches = {name: caches[name] for name in self._issuers}
        # Only asymmetric algorithms exist for this verifier: never `none`, never HS*.
        self._jws = jwt.PyJWS(algorithms=sorted(ALLOWED_OAUTH_ALGORITHMS))
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()
        self._on_cache = on_cache

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        if credential.kind is not CredentialKind.OAUTH_JWT:
            raise Deny(Reason.MALFORMED_CREDENTIAL, "not a bearer JWT")
        token = credential.value
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._verified.get(digest)
        if hit is not None:
            cache = self._caches[hit.issuer.issuer]
            key = await (cache.key_for(hit.kid) if hit.kid is not None else cache.sole_key())
            if key is hit.key:
                self._count("hit")
                self._verified.move_to_end(digest)
                _check_claims(hit.claims, hit.issuer, now)
                return _principal(hit.claims)
            del self._verified[digest]
        self._count("miss")
        header, unverified = _split_token(token)
        alg = _check_header(header)
        issuer = self._issuer_for(unverified)
        if alg not in issuer.algorithms:
            raise Deny(
                Reason.UNSUPPORTED_ALGORITHM, f"alg {_show(alg)} not allowed for {issuer.issuer}"
            )
        cache = self._caches[issuer.issuer]
        kid = header.get("kid")
        key = await (cache.key_for(kid) if isinstance(kid, str) else cache.sole_key())
        claims = self._verify(token, key, alg, issuer)
        _check_claims(claims, issuer, now)
        principal = _principal(claims)
        self._remember(digest, _Verified(issuer, kid if isinstance(kid, str) else None, key,
                                         claims))
        return principal

    def _remember(self, digest: bytes, verified: _Verified) -> None:
        self._verified[digest] = verified
        while len(self._verified) > VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)

    def _count(self, result: str) -> None:
        if self._on_cache is not None:
            self._on_cache(result)

    def _issuer_for(self, unverified: dict[str, Any]) -> Issuer:
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Deny(Reason.UNKNOWN_ISSUER, f"iss {_show(iss)} is not configured")
        return issuer

    def _verify(self, token: str, key: jwt.PyJWK, alg: str, issuer: Issuer) -> dict[str, Any]:
        """Check the signature with the configured algorithms only; return the verified claims."""
        if not _key_fits(alg, key.key):
            raise Deny(Reason.BAD_SIGNATURE, f"key {_show(key.key_id)} cannot verify {alg}")
        try:
            verified = self._jws.decode_complete(
                token,
                key=key.key,
                algorithms=list(issuer.algorithms),
                options={"verify_signature": True, "enforce_minimum_key_length": True},
            )
        except jwt.InvalidSignatureError:
            raise Deny(Reason.BAD_SIGNATURE, "signature does not verify") from None
        except jwt.InvalidKeyError:
            raise Deny(Reason.BAD_SIGNATURE, f"key {_show(key.key_id)} is not usable") from None
        except jwt.InvalidAlgorithmError:
            raise Deny(Reason.UNSUPPORTED_ALGORITHM, f"alg {alg} refused") from None
        except jwt.InvalidTokenError:
            raise Deny(Reason.MALFORMED_CREDENTIAL, "token could not be decoded") from None
        return _json_object(verified["payload"], "payload")


def _split_token(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode header and payload without verification (to choose issuer and key)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise Deny(Reason.MALFORMED_CREDENTIAL, "token too long")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.match(p) for p in parts) or not parts[0]:
        raise Deny(Reason.MALFORMED_CREDENTIAL, "not a compact JWS")
    return _json_object(_b64(parts[0]), "header"), _json_object(_b64(parts[1]), "payload")


def _b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise Deny(Reason.MALFORMED_CREDENTIAL, "invalid base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Strict JSON: an object, no duplicate names (no two `alg`s), no NaN or Infinity."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Deny(Reason.MALFORMED_CREDENTIAL, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise Deny(Reason.MALFORMED_CREDENTIAL, f"{what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _check_header(header: dict[str, Any]) -> str:
    """Return the header's alg if it may be considered at all; refuse `crit` and odd fields."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise Deny(Reason.MALFORMED_CREDENTIAL, "header has no alg")
    if "crit" in header:
        raise Deny(Reason.UNSUPPORTED_ALGORITHM, "crit header is not supported")
    if alg not in ALLOWED_OAUTH_ALGORITHMS:
        raise Deny(Reason.UNSUPPORTED_ALGORITHM, f"alg {_show(alg)} is never accepted")
    if "kid" in header and not isinstance(header["kid"], str):
        raise Deny(Reason.MALFORMED_CREDENTIAL, "kid is not a string")
    if header.get("b64", True) is not True:
        raise Deny(Reason.MALFORMED_CREDENTIAL, "unencoded payloads are not supported")
    return alg


def _key_fits(alg: str, key: Any) -> bool:
    """Whether the key's type (and curve) is the one `alg` uses."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    curve = _EC_CURVES.get(alg)
    return (
        curve is not None
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, curve)
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(claims: dict[str, Any], issuer: Issuer, now: float) -> None:
    leeway = issuer.leeway_seconds
    exp = claims.get("exp")
    if exp is None:
        raise Deny(Reason.INVALID_CLAIMS, "exp is missing")
    if not _number(exp):
        raise Deny(Reason.INVALID_CLAIMS, "exp is not a number")
    if now >= exp + leeway:
        raise Deny(Reason.TOKEN_EXPIRED, f"expired {now - exp:.0f}s ago")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not _number(value):
            raise Deny(Reason.INVALID_CLAIMS, f"{name} is not a number")
        if value > now + leeway:
            raise Deny(Reason.INVALID_CLAIMS, f"{name} is {value - now:.0f}s in the future")
    _check_audience(claims, issuer)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Deny(Reason.INVALID_CLAIMS, "sub is missing or not a string")
    client_id = claims.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise Deny(Reason.INVALID_CLAIMS, "client_id is not a string")


def _check_audience(claims: dict[str, Any], issuer: Issuer) -> None:
    aud = claims.get("aud")
    if aud is None:
        if issuer.audiences:
            raise Deny(Reason.INVALID_CLAIMS, "aud is missing")
        return
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise Deny(Reason.INVALID_CLAIMS, "aud is not a string or a list of strings")
    if issuer.audiences and not set(audiences) & set(issuer.audiences):
        raise Deny(Reason.INVALID_CLAIMS, "aud names no accepted audience")


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (space-separated) and `scp` (a list, or a space-separated string), combined."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            found.update(value.split())
        elif name == "scp" and isinstance(value, list) and all(isinstance(s, str) for s in value):
            found.update(s for s in value if s)
        else:
            raise Deny(Reason.INVALID_CLAIMS, f"{name} has the wrong type")
    return frozenset(found)


def _principal(claims: dict[str, Any]) -> Principal:
    sub: str = claims["sub"]
    client_id: str | None = claims.get("client_id")
    scopes = _scopes(claims)
    if client_id is not None and sub == client_id:
        return Principal(
            auth_type=AuthType.OAUTH,
            kind=PrincipalKind.APP,
            account_id=client_id,
            identities=frozenset({f"oauth:{client_id}"}),
            app_key=client_id,
            scopes=scopes,
        )
    if sub.startswith(APP_IDENTITY_PREFIXES):
        raise Deny(Reason.INVALID_CLAIMS, "sub claims an app identity")
    return Principal(
        auth_type=AuthType.OAUTH,
        kind=PrincipalKind.USER,
        account_id=sub,
        identities=frozenset({sub}),
        app_key=client_id,
        scopes=scopes,
    )


def _show(value: Any) -> str:
    """A token-controlled value, shortened for logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
