"""Signing keys for tests and the demo: generate keys, publish them as JWKs, mint OAuth tokens."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_FOR_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64url(value.to_bytes(size, "big"))


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key (RS* and PS* algorithms)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def generate_ec_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    """A fresh EC key on a JOSE curve name (`P-256`, `P-384`, `P-521`)."""
    try:
        return ec.generate_private_key(_CURVES[curve])
    except KeyError:
        raise ValueError(f"unsupported curve {curve!r}") from None


def generate_private_key(alg: str) -> PrivateKey:
    """A fresh key of the type a JWS algorithm needs (RS*/PS*, ES*, EdDSA)."""
    if alg in _RSA_ALGS:
        return generate_rsa_key()
    if alg in _CURVE_FOR_ALG:
        return generate_ec_key(_CURVE_FOR_ALG[alg])
    if alg == "EdDSA":
        return Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {alg!r}")


def public_jwk(private_key: PrivateKey, kid: str, alg: str) -> dict[str, str]:
    """The public half of `private_key` as a JWK with `kid`, `alg` and `use: sig`."""
    meta = {"kid": kid, "alg": alg, "use": "sig"}
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e), **meta}
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        curve = next(name for name, c in _CURVES.items() if c.name == private_key.curve.name)
        size = (private_key.curve.key_size + 7) // 8
        point = private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": curve,
            "x": _b64url_uint(point.x, size),
            "y": _b64url_uint(point.y, size),
            **meta,
        }
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), **meta}


def jwks(*keys: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set document holding `keys`."""
    return {"keys": [dict(key) for key in keys]}


def mint_oauth_token(
    private_key: PrivateKey,
    kid: str,
    alg: str,
    claims: Mapping[str, Any],
    *,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Sign `claims` as a compact JWS with `kid` in the header (extra header fields optional)."""
    header = {"kid": kid, **(headers or {})}
    return jwt.encode(dict(claims), private_key, algorithm=alg, headers=header)
