"""Generated keys publish as JWKs that verify the tokens minted with them."""

from __future__ import annotations

import jwt
import pytest

from sidecar.testing.keys import generate_private_key, jwks, mint_oauth_token, public_jwk

CLAIMS = {"iss": "http://127.0.0.1:9193", "sub": "acc-ann", "aud": "https://api.example.test"}


@pytest.mark.parametrize(
    ("alg", "kty", "fields"),
    [
        ("RS256", "RSA", {"n", "e"}),
        ("PS256", "RSA", {"n", "e"}),
        ("ES256", "EC", {"crv", "x", "y"}),
        ("ES384", "EC", {"crv", "x", "y"}),
        ("EdDSA", "OKP", {"crv", "x"}),
    ],
)
def test_minted_token_verifies_with_the_published_jwk(alg: str, kty: str, fields: set[str]) -> None:
    key = generate_private_key(alg)
    jwk = public_jwk(key, "kid-1", alg)
    assert jwk["kty"] == kty and fields <= jwk.keys()
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("kid-1", alg, "sig")
    assert not any("=" in v for v in jwk.values()), "base64url without padding"
    token = mint_oauth_token(key, "kid-1", alg, CLAIMS, headers={"typ": "at+jwt"})
    header = jwt.get_unverified_header(token)
    assert (header["kid"], header["alg"], header["typ"]) == ("kid-1", alg, "at+jwt")
    verifier = jwt.PyJWK(jwk).key
    decoded = jwt.decode(token, verifier, algorithms=[alg], audience=CLAIMS["aud"])
    assert decoded == CLAIMS


def test_another_key_does_not_verify() -> None:
    token = mint_oauth_token(generate_private_key("ES256"), "k", "ES256", CLAIMS)
    other = jwt.PyJWK(public_jwk(generate_private_key("ES256"), "k", "ES256")).key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["ES256"], audience=CLAIMS["aud"])


def test_ec_coordinates_keep_their_leading_zeros() -> None:
    for _ in range(20):  # about 1 in 256 coordinates has a leading zero byte
        jwk = public_jwk(generate_private_key("ES256"), "k", "ES256")
        assert len(jwk["x"]) == len(jwk["y"]) == 43  # 32 bytes, base64url


def test_jwks_document() -> None:
    first = public_jwk(generate_private_key("ES256"), "a", "ES256")
    assert jwks(first) == {"keys": [first]}
    assert jwks() == {"keys": []}


@pytest.mark.parametrize("alg", ["HS256", "none", "ES999"])
def test_unsupported_algorithms(alg: str) -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        generate_private_key(alg)
