"""The connect-jwt tool: tokens it signs verify, and the CLI prints only the token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from atlassian_jwt.url_utils import hash_url

from sidecar.authn.connect import ConnectAuthenticator
from sidecar.authn.credentials import extract_credential
from sidecar.authn.principal import PrincipalKind
from sidecar.authn.qsh import candidate_hashes
from sidecar.authn.secrets import SecretSource
from sidecar.config import ConnectConfig
from sidecar.request import build_request
from sidecar.store.model import Installation, Snapshot
from sidecar.tools.connect_jwt import main, sign_connect_jwt

NOW = 1_700_000_000.0
SECRET = b"tool-shared-secret-0123456789abcdefghijk"
INSTALLATION = Installation(
    client_key="jira:abc-123",
    app_key="com.example.reporting",
    scopes=frozenset({"READ", "ACT_AS_USER"}),
    account_id="app-reporting",
    shared_secret_env="TOOL_SECRET",
)


def _claims(token: str, secret: bytes = SECRET) -> dict[str, Any]:
    return jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})


@pytest.mark.parametrize(
    ("url", "request_target"),
    [
        ("/jsm/assets/workspace/ws-1/v1/object/88", "/jsm/assets/workspace/ws-1/v1/object/88"),
        ("/jsm/assets/v1/imports/info?b=2&a=1#frag", "/jsm/assets/v1/imports/info?a=1&b=2"),
        ("https://api.example.test/jsm/assets/workspace/ws-1/v1/object/88?x=a%20b",
         "/jsm/assets/workspace/ws-1/v1/object/88?x=a+b"),
        ("/jsm/assets/workspace/caf%C3%A9/v1/object/88",
         "/jsm/assets/workspace/caf%C3%A9/v1/object/88"),
    ],
)
async def test_signed_tokens_verify(url: str, request_target: str) -> None:
    token = sign_connect_jwt(
        issuer="jira:abc-123", secret=SECRET, method="get", url=url, now=NOW
    )
    request = build_request(
        method="GET", target=request_target, headers={"authorization": f"JWT {token}"}
    )
    authenticator = ConnectAuthenticator(
        ConnectConfig(), SecretSource([INSTALLATION], environ={"TOOL_SECRET": SECRET.decode()})
    )
    snapshot = Snapshot(installations={INSTALLATION.client_key: INSTALLATION})
    principal = await authenticator.authenticate(
        extract_credential(request), request, snapshot, NOW + 60
    )
    assert principal.kind is PrincipalKind.APP
    # the decoded form is the one signed
    path, _, query = request_target.partition("?")
    assert _claims(token)["qsh"] == candidate_hashes("GET", path, query)[0]


def test_claims_and_lifetime() -> None:
    token = sign_connect_jwt(
        issuer="com.example.reporting", secret=SECRET, method="PUT", url="/x", now=NOW + 0.9,
        lifetime=60, sub="acc-ann",
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = _claims(token)
    assert claims == {
        "iss": "com.example.reporting",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "qsh": hash_url("PUT", "/x"),
        "sub": "acc-ann",
    }


def test_qsh_agrees_with_atlassian_jwt_without_escapes() -> None:
    url = "/path/to/service?zee_last=param&repeated=parameter+1&first=param&repeated=parameter+2"
    token = sign_connect_jwt(issuer="i", secret=SECRET, method="GET", url=url, now=NOW)
    assert _claims(token)["qsh"] == hash_url("GET", url)


def test_strip_prefixes() -> None:
    token = sign_connect_jwt(
        issuer="i", secret=SECRET, method="GET", url="/jira/rest/x?a=1", now=NOW,
        strip_prefixes=("/jira",),
    )
    assert _claims(token)["qsh"] == hash_url("GET", "/rest/x?a=1")


def test_short_secrets_sign_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    sign_connect_jwt(issuer="i", secret=b"s0m3-sh@r3d-s3cr37", method="GET", url="/", now=NOW)
    assert len(recwarn) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lifetime": 0}, "lifetime"),
        ({"secret": b""}, "empty"),
        ({"url": "relative/path"}, "url must be"),
        ({"url": "/bad%zz"}, "percent"),
    ],
)
def test_refusals(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "issuer": "i", "secret": SECRET, "method": "GET", "url": "/x", "now": NOW, **kwargs
    }
    with pytest.raises(ValueError, match=message):
        sign_connect_jwt(**args)


def test_cli_with_secret_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOOL_SECRET", SECRET.decode())
    code = main([
        "--iss", "jira:abc-123", "--secret-env", "TOOL_SECRET", "--method", "POST",
        "--url", "/ctx/jsm/assets/workspace/ws-1/v1/object/aql?startAt=0",
        "--strip-prefix", "/ctx", "--sub", "acc-ann", "--lifetime", "120",
    ])
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    token = out.removesuffix("\n")
    assert out.count("\n") == 1 and "\n" not in token
    claims = _claims(token)
    assert claims["iss"] == "jira:abc-123"
    assert claims["sub"] == "acc-ann"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["qsh"] == hash_url("POST", "/jsm/assets/workspace/ws-1/v1/object/aql?startAt=0")


def test_cli_with_secret_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    assert main(["--iss", "i", "--secret-file", str(secret_file), "--url", "/x"]) == 0
    token = capsys.readouterr().out.strip()
    claims = _claims(token)  # the trailing newline is not part of the secret
    assert claims["qsh"] == hash_url("GET", "/x")
    assert claims["exp"] - claims["iat"] == 180
    assert "sub" not in claims


@pytest.mark.parametrize(
    ("argv", "code", "stderr"),
    [
        (["--iss", "i", "--secret-env", "SURELY_UNSET_SECRET_VAR", "--url", "/x"], 1,
         "SURELY_UNSET_SECRET_VAR is not set"),
        (["--iss", "i", "--secret-file", "/nonexistent/secret", "--url", "/x"], 1,
         "/nonexistent/secret"),
        (["--iss", "i", "--secret-env", "TOOL_SECRET", "--url", "nope"], 1, "url must be"),
        (["--iss", "i", "--url", "/x"], 2, "--secret-env"),
        (["--iss", "i", "--secret-env", "A", "--secret-file", "B", "--url", "/x"], 2,
         "not allowed"),
        (["--secret-env", "TOOL_SECRET", "--url", "/x"], 2, "--iss"),
    ],
)
def test_cli_errors(
    argv: list[str], code: int, stderr: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOOL_SECRET", SECRET.decode())
    monkeypatch.delenv("SURELY_UNSET_SECRET_VAR", raising=False)
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert stderr in err
    assert SECRET.decode() not in err
