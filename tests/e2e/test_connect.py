"""Atlassian Connect JWTs through a real Envoy: app user, impersonation, qsh, Connect scopes.

Tokens for awkward query strings are signed with `atlassian-jwt` (Atlassian's own Python client
library), not with our signer, so the sidecar's qsh is checked against an independent oracle.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from atlassian_jwt import encode_token

from ..world import INSTALLATION_SECRET, World
from .cases import BASE, Auth, Case, identity, ids, run_case
from .client import CHALLENGES, Gateway, assert_allowed, assert_denied, challenges

OBJ = f"{BASE}/object/88"
REPORTING = "jira:abc-123"
WRITER = "jira:def-456"


def connect(method: str, url: str, **kwargs: Any) -> Auth:
    return lambda w: "JWT " + w.connect(method, url, **kwargs)


def raw_connect(claims: dict[str, object], *, alg: str = "HS256") -> Auth:
    """A token with hand-made claims, signed with the reporting installation's secret."""

    def make(world: World) -> str:
        now = int(time.time())
        body = {"iss": REPORTING, "iat": now, "exp": now + 180, **claims}
        # Any key does for another algorithm: it is refused before the signature is looked at.
        key = INSTALLATION_SECRET[REPORTING] if alg == "HS256" else "k" * 64
        return "JWT " + jwt.encode(body, key, algorithm=alg)

    return make


def app(client_key: str = REPORTING, **extra: str) -> dict[str, str]:
    account, app_key = {
        REPORTING: ("app-reporting", "com.example.reporting"),
        WRITER: ("app-writer", "com.example.writer"),
    }[client_key]
    return identity("connect", "app", account=account, app_key=app_key, **extra)


def as_user(account: str, role: str) -> dict[str, str]:
    return identity("connect", "user", account=account, app_key="com.example.reporting",
                    impersonated="true", role=role)


CASES = [
    Case("app user", "GET", OBJ, connect("GET", OBJ), identity=app(role="viewer")),
    Case("iss may be the app key of a single installation", "GET", OBJ,
         connect("GET", OBJ, iss="com.example.reporting", secret=INSTALLATION_SECRET[REPORTING]),
         identity=app(role="viewer")),
    Case("READ covers the POST search", "POST", f"{BASE}/object/aql",
         connect("POST", f"{BASE}/object/aql"), identity=app(readable_schemas="1"),
         body=b'{"qlQuery":"Name = x"}', headers=[("content-type", "application/json")]),
    Case("READ app cannot write", "PUT", OBJ, connect("PUT", OBJ),
         status=403, reason="connect_scope_missing"),
    Case("WRITE app as schema developer", "PUT", f"{BASE}/object/89",
         connect("PUT", f"{BASE}/object/89", iss=WRITER), identity=app(WRITER, role="developer")),
    Case("WRITE app is overridden to user on type 10", "PUT", OBJ,
         connect("PUT", OBJ, iss=WRITER), status=403, reason="role_missing"),
    Case("WRITE does not cover DELETE", "DELETE", f"{BASE}/object/89",
         connect("DELETE", f"{BASE}/object/89", iss=WRITER),
         status=403, reason="connect_scope_missing"),
    Case("impersonation with ACT_AS_USER", "GET", OBJ, connect("GET", OBJ, sub="acc-ann"),
         identity=as_user("acc-ann", "manager")),
    Case("impersonation takes the user's roles, not the app's", "GET", OBJ,
         connect("GET", OBJ, sub="acc-zed"), status=403, reason="role_missing"),
    Case("impersonation keeps the Connect scope", "PUT", OBJ, connect("PUT", OBJ, sub="acc-ann"),
         status=403, reason="connect_scope_missing"),
    Case("impersonating an admin gets admin", "GET", f"{BASE}/objectschema/2",
         connect("GET", f"{BASE}/objectschema/2", sub="acc-admin"),
         identity=as_user("acc-admin", "admin")),
    Case("impersonation cannot name another app's identity", "GET", f"{BASE}/object/89",
         connect("GET", f"{BASE}/object/89", sub="connect:com.example.writer"),
         status=401, reason="invalid_claims"),
    Case("impersonation cannot name an OAuth client's identity", "GET", f"{BASE}/object/89",
         connect("GET", f"{BASE}/object/89", sub="oauth:svc-client"),
         status=401, reason="invalid_claims"),
    Case("impersonation without ACT_AS_USER", "GET", OBJ,
         connect("GET", OBJ, iss=WRITER, sub="acc-ann"),
         status=403, reason="connect_scope_missing"),
    Case("qsh for another method", "DELETE", OBJ, connect("GET", OBJ),
         status=401, reason="qsh_mismatch"),
    Case("qsh for another path", "GET", OBJ, connect("GET", f"{BASE}/object/89"),
         status=401, reason="qsh_mismatch"),
    Case("qsh for another query", "GET", f"{OBJ}?a=2", connect("GET", f"{OBJ}?a=1"),
         status=401, reason="qsh_mismatch"),
    Case("qsh missing", "GET", OBJ, raw_connect({}), status=401, reason="qsh_mismatch"),
    Case("context-qsh", "GET", OBJ, raw_connect({"qsh": "context-qsh"}),
         status=401, reason="qsh_mismatch"),
    Case("unknown installation", "GET", OBJ,
         connect("GET", OBJ, iss="jira:nope", secret="whatever-secret-0123456789"),
         status=401, reason="unknown_installation"),
    Case("wrong secret", "GET", OBJ,
         connect("GET", OBJ, secret=INSTALLATION_SECRET[WRITER]),
         status=401, reason="bad_signature"),
    Case("expired", "GET", OBJ, connect("GET", OBJ, now=time.time() - 3600),
         status=401, reason="token_expired"),
    Case("issued in the future", "GET", OBJ, connect("GET", OBJ, now=time.time() + 3600),
         status=401, reason="invalid_claims"),
    Case("lifetime too long", "GET", OBJ, connect("GET", OBJ, lifetime=7200),
         status=401, reason="invalid_claims"),
    Case("HS512", "GET", OBJ, raw_connect({}, alg="HS512"),
         status=401, reason="unsupported_algorithm"),
    Case("not a JWT", "GET", OBJ, lambda w: "JWT not-a-jwt",
         status=401, reason="malformed_credential"),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_connect(case: Case, gateway: Gateway, world: World) -> None:
    run_case(gateway, world, case)


# Raw query strings, each signed by atlassian-jwt as written and sent as written.
AWKWARD_QUERIES = [
    "b=2&a=1&a=0",  # repeated names, out of order
    "q=a+b",  # "+" is a space
    "q=a%20b",
    "q=a%2Bb&r=%2A~",  # an encoded plus; "*" and "~"
    "name=%E2%82%AC%C3%A9&other=%F0%9F%98%80",  # unicode, percent-encoded UTF-8
    "a=&b=",  # empty values
    "a&b&c=1",  # bare keys
    "Z=1&a=2&_=3&0=4",  # sorted by code point
    "q=x%26y%3Dz&q=x",  # "&" and "=" inside a value
    "q=%2Fslash%3Fquery",  # "/" and "?" inside a value
]


def _oracle(method: str, url: str, client_key: str = REPORTING) -> str:
    return encode_token(method, url, client_key, INSTALLATION_SECRET[client_key],
                        timeout_secs=180)


@pytest.mark.parametrize("query", AWKWARD_QUERIES)
def test_awkward_query_signed_by_atlassian_jwt(query: str, gateway: Gateway) -> None:
    target = f"{BASE}/aql/objects?{query}"
    reply = gateway.send("GET", target, auth="JWT " + _oracle("GET", target))
    seen = assert_allowed(reply, app(readable_schemas="1"))
    assert seen.path == target, "the query must reach the upstream untouched"


@pytest.mark.parametrize(("signed", "sent"), [
    ("q=a+b", "q=a%20b"),
    ("q=a%20b", "q=a+b"),
    ("q=%7E", "q=~"),
    ("b=1&a=2", "a=2&b=1"),
])
def test_equivalent_query_forms_share_one_qsh(signed: str, sent: str, gateway: Gateway) -> None:
    token = _oracle("GET", f"{BASE}/aql/objects?{signed}")
    reply = gateway.send("GET", f"{BASE}/aql/objects?{sent}", auth="JWT " + token)
    assert_allowed(reply, app(readable_schemas="1"))


@pytest.mark.parametrize("before", [
    "",
    "b=2&a=1",
    "q=a+b&empty=&e=%E2%82%AC&q=a%20c",
    "bare&b=1",
    "zq=1&qlQuery=Name%3Dx&a",
])
def test_token_in_the_jwt_parameter(before: str, gateway: Gateway, world: World) -> None:
    """Allowed, and the upstream gets the rest of the query exactly as sent.

    (Envoy's query_parameters_to_remove would re-serialise the query — names sorted, bare keys
    written `key=` — so the sidecar rewrites `:path` instead.)
    """
    signed = f"{OBJ}?{before}" if before else OBJ
    token = world.connect("GET", signed)
    target = f"{signed}&jwt={token}" if before else f"{OBJ}?jwt={token}"
    reply = gateway.send("GET", target)
    seen = assert_allowed(reply, app(role="viewer"))
    assert seen.path == signed
    assert "jwt" not in seen.path


def test_token_in_the_jwt_parameter_first(gateway: Gateway, world: World) -> None:
    token = world.connect("GET", f"{OBJ}?x=1")
    reply = gateway.send("GET", f"{OBJ}?jwt={token}&x=1")
    assert assert_allowed(reply, app(role="viewer")).path == f"{OBJ}?x=1"


def test_token_in_header_and_query_is_refused(gateway: Gateway, world: World) -> None:
    token = world.connect("GET", OBJ)
    reply = gateway.send("GET", f"{OBJ}?jwt={token}", auth=f"JWT {token}")
    assert_denied(reply, 400, "bad_request")
    assert challenges(reply) == []


def test_two_jwt_parameters_are_refused(gateway: Gateway, world: World) -> None:
    token = world.connect("GET", OBJ)
    reply = gateway.send("GET", f"{OBJ}?jwt={token}&jwt={token}")
    assert_denied(reply, 400, "bad_request")


def test_jwt_parameter_that_is_no_jwt(gateway: Gateway) -> None:
    reply = gateway.send("GET", f"{OBJ}?jwt=nope")
    assert_denied(reply, 401, "malformed_credential")
    assert challenges(reply) == CHALLENGES


def test_query_token_checked_against_the_query_it_came_with(
    gateway: Gateway, world: World
) -> None:
    """A token lifted from one URL does not work with another query (qsh covers the query)."""
    token = world.connect("GET", f"{OBJ}?limit=1")
    reply = gateway.send("GET", f"{OBJ}?limit=1000&jwt={token}")
    assert_denied(reply, 401, "qsh_mismatch")


@pytest.mark.parametrize("name", ["%6Awt", "jw%74", "%6A%77%74"])
def test_escaped_jwt_parameter_name_is_refused(name: str, gateway: Gateway, world: World) -> None:
    """Envoy removes `jwt` only under its literal name: an escaped one would leak upstream."""
    token = world.connect("GET", OBJ)
    reply = gateway.send("GET", f"{OBJ}?x=1&{name}={token}")
    assert_denied(reply, 400, "bad_request")


@pytest.mark.parametrize("signer", ["decoded-path", "path-as-sent"])
def test_percent_escaped_path(signer: str, gateway: Gateway, world: World) -> None:
    """Java hashes the decoded path, atlassian-jwt the path as sent: both are this request."""
    target = f"{BASE}/object/%38%38"
    token = world.connect("GET", target) if signer == "decoded-path" else _oracle("GET", target)
    reply = gateway.send("GET", target, auth=f"JWT {token}")
    seen = assert_allowed(reply, app(role="viewer"))
    assert seen.path == target
    other = gateway.send("GET", f"{BASE}/object/%38%39", auth=f"JWT {token}")
    assert_denied(other, 401, "qsh_mismatch")
