"""The pipeline: order of the checks, identity facts, challenges, failure handling.

Authenticators are in-memory doubles here (each kind has its own tests); the layers after
authentication are the real ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sidecar.authn.credentials import Credential, CredentialKind
from sidecar.authn.principal import AuthType, Principal, PrincipalKind
from sidecar.config import Config, parse_config
from sidecar.decision import Decision, Deny, Layer, Reason
from sidecar.pipeline import Engine
from sidecar.request import HttpRequest, build_request
from sidecar.server import apply_dry_run
from sidecar.store.model import Snapshot

from .roles.helpers import world

BASE = "/jsm/assets/workspace/ws-1/v1"

ANN = Principal(AuthType.OAUTH, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                app_key="client-1", scopes=frozenset({"read:cmdb-object:jira"}))
ADMIN = Principal(AuthType.API_TOKEN, PrincipalKind.USER, "acc-admin", frozenset({"acc-admin"}))
APP = Principal(AuthType.CONNECT, PrincipalKind.APP, "app-rep",
                frozenset({"connect:com.rep", "app-rep"}), app_key="com.rep",
                connect_scopes=frozenset({"READ"}), via_query_jwt=True)
IMPERSONATED = Principal(AuthType.CONNECT, PrincipalKind.USER, "acc-ann", frozenset({"acc-ann"}),
                         app_key="com.rep", impersonated=True,
                         connect_scopes=frozenset({"READ", "ACT_AS_USER"}))
CONTAINER = Principal(AuthType.CONTAINER_TOKEN, PrincipalKind.CONTAINER, None, frozenset(),
                      import_source_id="is-1")

PRINCIPALS = {"ann": ANN, "admin": ADMIN, "app": APP, "imp": IMPERSONATED, "ctr": CONTAINER}


class FakeAuthenticator:
    """Maps a token to a principal; `bad` fails with bad_signature, `boom` raises a bug."""

    async def authenticate(
        self, credential: Credential, request: HttpRequest, snapshot: Snapshot, now: float
    ) -> Principal:
        if credential.value.startswith("bad"):
            raise Deny(Reason.BAD_SIGNATURE, "nope")
        if credential.value.startswith("boom"):
            raise RuntimeError("a bug")
        return PRINCIPALS[credential.value.split(".")[0]]


def config(**extra: Any) -> Config:
    data = {"listen": {"grpc": "127.0.0.1:1", "http": "127.0.0.1:2"}, "store": "sqlite:///x.db",
            **extra}
    return parse_config(data)


def snapshot() -> Snapshot:
    return world(schema_roles={"viewer": ["acc-ann", "connect:com.rep"]}, admins=["acc-admin"])


def engine(cfg: Config | None = None, snap: Snapshot | None = None) -> Engine:
    fake = FakeAuthenticator()
    the_snapshot = snap or snapshot()
    return Engine(
        config=cfg or config(),
        authenticators={kind: fake for kind in CredentialKind},
        snapshots=lambda: the_snapshot,
        clock=lambda: 1_700_000_000.0,
        new_id=lambda: "did-1",
    )


def req(method: str, target: str, auth: str | None = None, body: bytes | None = None,
        **headers: str) -> HttpRequest:
    h = dict(headers)
    if auth is not None:
        h["authorization"] = auth
    return build_request(method=method, target=target, headers=h, body=body)


async def decide(request: HttpRequest, eng: Engine | None = None) -> Decision:
    return await (eng or engine()).decide(request)


def bearer(name: str) -> str:
    return f"Bearer {name}.x.y"  # JWT-shaped, so it goes the OAuth way


@pytest.mark.parametrize(
    ("method", "target", "auth", "reason", "layer"),
    [
        # step 2: unmanaged before any authentication
        ("GET", "/elsewhere", None, Reason.UNMANAGED_PATH, Layer.ROUTE),
        # step 3: duplicate credentials, then authentication
        ("GET", f"{BASE}/object/88", "Bearer a.b.c,Bearer d.e.f", Reason.BAD_REQUEST,
         Layer.REQUEST),
        ("GET", f"{BASE}/object/88?jwt=a.b.c", "JWT a.b.c", Reason.BAD_REQUEST, Layer.REQUEST),
        ("GET", f"{BASE}/object/88", None, Reason.MISSING_CREDENTIAL, Layer.AUTHENTICATION),
        ("GET", f"{BASE}/object/88", "Digest x", Reason.MALFORMED_CREDENTIAL,
         Layer.AUTHENTICATION),
        ("GET", f"{BASE}/object/88", "JWT notajwt", Reason.MALFORMED_CREDENTIAL,
         Layer.AUTHENTICATION),
        ("GET", f"{BASE}/object/88", "Bearer bad.x.y", Reason.BAD_SIGNATURE,
         Layer.AUTHENTICATION),
        # authentication comes before the operation lookup
        ("GET", f"{BASE}/nosuch", None, Reason.MISSING_CREDENTIAL, Layer.AUTHENTICATION),
        # step 4: operation lookup
        ("GET", f"{BASE}/nosuch", bearer("ann"), Reason.UNKNOWN_OPERATION, Layer.OPERATION),
        ("PATCH", f"{BASE}/object/88", bearer("ann"), Reason.UNKNOWN_OPERATION, Layer.OPERATION),
        ("GET", f"{BASE}/object/88/", bearer("ann"), Reason.UNKNOWN_OPERATION, Layer.OPERATION),
        # step 5: API permission before the target is resolved
        ("PUT", f"{BASE}/object/404", bearer("ann"), Reason.INSUFFICIENT_SCOPE, Layer.PERMISSION),
        ("PUT", f"{BASE}/object/88", "JWT app.x.y", Reason.CONNECT_SCOPE_MISSING,
         Layer.PERMISSION),
        ("GET", f"{BASE}/object/88", "Bearer ctr", Reason.TOKEN_NOT_ALLOWED, Layer.PERMISSION),
        ("GET", "/jsm/assets/v1/imports/info", bearer("ann"), Reason.TOKEN_NOT_ALLOWED,
         Layer.PERMISSION),
        # step 6: target
        ("GET", f"{BASE}/object/404", bearer("ann"), Reason.UNKNOWN_TARGET, Layer.TARGET),
        ("GET", "/jsm/assets/workspace/ws-2/v1/object/88", bearer("ann"), Reason.UNKNOWN_TARGET,
         Layer.TARGET),
        ("GET", "/jsm/assets/workspace/nope/v1/object/88", bearer("ann"), Reason.UNKNOWN_TARGET,
         Layer.TARGET),
        ("POST", f"{BASE}/object/create", "Basic admin", Reason.BAD_REQUEST, Layer.TARGET),
        # step 7: role
        ("GET", "/jsm/assets/workspace/ws-2/v1/object/99", bearer("ann"), Reason.ROLE_MISSING,
         Layer.ROLE),
    ],
)
async def test_order_of_checks(
    method: str, target: str, auth: str | None, reason: Reason, layer: Layer
) -> None:
    d = await decide(req(method, target, auth))
    assert not d.allowed
    assert (d.reason, d.layer) == (reason, layer), d.detail
    assert d.trace[-1].outcome == "deny"
    assert d.decision_id == "did-1"


async def test_oauth_user_allowed_with_identity() -> None:
    d = await decide(req("GET", f"{BASE}/object/88", bearer("ann")))
    assert d.allowed
    assert d.identity == {
        "auth-type": "oauth", "principal": "user", "account-id": "acc-ann",
        "workspace-id": "ws-1", "role": "viewer", "app-key": "client-1",
    }
    assert [s.layer for s in d.trace] == [
        Layer.REQUEST, Layer.ROUTE, Layer.AUTHENTICATION, Layer.OPERATION, Layer.PERMISSION,
        Layer.TARGET, Layer.ROLE,
    ]
    assert d.operation == "object.read"


async def test_connect_app_via_query_removes_jwt_parameter() -> None:
    d = await decide(req("GET", f"{BASE}/object/88?jwt=app.x.y"))
    assert d.allowed and d.upstream_path == f"{BASE}/object/88"
    assert d.identity["principal"] == "app"
    assert d.identity["account-id"] == "app-rep"
    assert d.identity["app-key"] == "com.rep"


NO_ACT_AS = replace(IMPERSONATED, connect_scopes=frozenset({"WRITE"}))
PRINCIPALS["noact"] = NO_ACT_AS


@pytest.mark.parametrize(
    ("method", "target", "reason", "layer"),
    [
        # operation lookup (404) comes before the API permission (403): product.md section 6
        ("PATCH", f"{BASE}/object/88", Reason.UNKNOWN_OPERATION, Layer.OPERATION),
        ("GET", f"{BASE}/nosuch/thing", Reason.UNKNOWN_OPERATION, Layer.OPERATION),
        ("GET", f"{BASE}/object/88", Reason.CONNECT_SCOPE_MISSING, Layer.PERMISSION),
    ],
)
async def test_impersonation_without_act_as_user(
    method: str, target: str, reason: Reason, layer: Layer
) -> None:
    d = await decide(req(method, target, "JWT noact.x.y"))
    assert (d.reason, d.layer, d.auth_type) == (reason, layer, "connect")


async def test_impersonation_headers() -> None:
    d = await decide(req("GET", f"{BASE}/object/88", "JWT imp.x.y"))
    assert d.allowed
    assert d.identity["impersonated"] == "true"
    assert d.identity["account-id"] == "acc-ann"
    assert d.identity["app-key"] == "com.rep"


async def test_container_token_identity() -> None:
    d = await decide(req("GET", "/jsm/assets/v1/imports/info", "Bearer ctr"))
    assert d.allowed, d.detail
    assert d.identity == {
        "auth-type": "container-token", "principal": "container", "workspace-id": "ws-1",
        "import-source-id": "is-1",
    }


async def test_admin_search_gets_star_and_no_types() -> None:
    d = await decide(req("POST", f"{BASE}/object/aql", "Basic admin"))
    assert d.allowed
    assert d.identity["role"] == "admin"
    assert d.identity["readable-schemas"] == "*"
    assert "readable-object-types" not in d.identity


async def test_unmanaged_allow_is_passthrough() -> None:
    d = await decide(req("GET", "/static/x"), engine(config(api={"outside_base_paths": "allow"})))
    assert d.allowed and d.passthrough and d.identity == {}


async def test_bad_request_even_outside_managed_paths() -> None:
    with pytest.raises(Deny) as exc:
        req("GET", "/elsewhere/../x")
    assert exc.value.reason is Reason.BAD_REQUEST


@pytest.mark.parametrize(
    ("auth", "challenges"),
    [
        (None, ('Bearer realm="assets"', 'Basic realm="assets"', 'JWT realm="assets"')),
        ("Bearer bad.x.y",
         ('Bearer realm="assets", error="invalid_token"', 'Basic realm="assets"',
          'JWT realm="assets"')),
    ],
)
async def test_401_challenges(auth: str | None, challenges: tuple[str, ...]) -> None:
    d = await decide(req("GET", f"{BASE}/object/88", auth))
    assert d.challenges == challenges


async def test_challenges_follow_enabled_kinds() -> None:
    cfg = config(connect={"enabled": False}, api_tokens={"enabled": False},
                 container_tokens={"enabled": False})
    d = await decide(req("GET", f"{BASE}/object/88"), engine(cfg))
    assert d.challenges == ()
    d = await decide(req("GET", f"{BASE}/object/88", "Basic admin"), engine(cfg))
    assert d.reason is Reason.MALFORMED_CREDENTIAL


async def test_insufficient_scope_challenge_names_the_scope() -> None:
    d = await decide(req("DELETE", f"{BASE}/object/88", bearer("ann")))
    assert d.reason is Reason.INSUFFICIENT_SCOPE
    assert d.challenges == (
        'Bearer realm="assets", error="insufficient_scope", scope="delete:cmdb-object:jira"',
    )


async def test_request_data_in_details_is_bounded() -> None:
    long = "x" * 50_000
    d = await decide(req("GET", f"{BASE}/{long}", bearer("ann")))
    assert d.reason is Reason.UNKNOWN_OPERATION
    assert all(len(step.detail) < 400 for step in d.trace)
    assert len(d.detail) < 400


async def test_a_bug_is_internal_error_never_allow() -> None:
    d = await decide(req("GET", f"{BASE}/object/88", "Bearer boom.x.y"))
    assert not d.allowed and d.reason is Reason.INTERNAL_ERROR


async def test_stale_store_denies_dependency_unavailable() -> None:
    def stale() -> Snapshot:
        raise Deny(Reason.DEPENDENCY_UNAVAILABLE, "store too stale")

    eng = replace(engine(), snapshots=stale)
    d = await decide(req("GET", f"{BASE}/object/88", bearer("ann")), eng)
    assert d.reason is Reason.DEPENDENCY_UNAVAILABLE


async def test_dry_run_allows_but_keeps_the_real_reason() -> None:
    d = await decide(req("GET", "/jsm/assets/workspace/ws-2/v1/object/99", bearer("ann")))
    final = apply_dry_run(d, True)
    assert final.allowed and final.dry_run_overridden and final.reason is Reason.ROLE_MISSING
    assert apply_dry_run(d, False) is d
