"""Table rows for the end-to-end decision tests and the one function that runs a row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..world import World
from .client import (
    BEARER_CHALLENGES,
    CHALLENGES,
    Gateway,
    HeaderList,
    Reply,
    assert_allowed,
    assert_denied,
    challenges,
)

BASE = "/jsm/assets/workspace/ws-1/v1"
BASE2 = "/jsm/assets/workspace/ws-2/v1"
IMPORTS_INFO = "/jsm/assets/v1/imports/info"

Auth = Callable[[World], str | None]


def no_auth(world: World) -> str | None:
    return None


@dataclass(frozen=True)
class Case:
    """One request and its expected answer: `reason` for a deny, `identity` for an allow.

    `identity` is every `x-assets-*` header the upstream must get (decision id aside), so a
    header the sidecar should not have set fails the row as surely as a missing one.
    """

    name: str
    method: str
    path: str
    auth: Auth = no_auth
    status: int = 200
    reason: str | None = None
    identity: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: HeaderList = ()
    upstream_path: str | None = None  # None: the path exactly as sent
    scope: str | None = None  # the needed scope named by an insufficient_scope challenge


def run_case(gateway: Gateway, world: World, case: Case) -> Reply:
    """Send the row's request through Envoy and check everything the contract promises."""
    auth = case.auth(world)
    reply = gateway.send(case.method, case.path, auth=auth, headers=case.headers, body=case.body)
    if case.reason is None:
        seen = assert_allowed(reply, case.identity)
        assert seen.method == case.method
        assert seen.path == (case.upstream_path if case.upstream_path is not None else case.path)
    else:
        assert_denied(reply, case.status, case.reason)
        assert challenges(reply) == expected_challenges(case, auth), challenges(reply)
    return reply


def expected_challenges(case: Case, auth: str | None) -> list[str]:
    """WWW-Authenticate lines the deny must carry (product.md section 6, Deny)."""
    if case.reason == "insufficient_scope":
        assert case.scope, f"{case.name}: say which scope the challenge names"
        return [f'Bearer realm="assets", error="insufficient_scope", scope="{case.scope}"']
    if case.status == 401:
        bearer = auth is not None and auth.lower().startswith("bearer ")
        return BEARER_CHALLENGES if bearer else CHALLENGES
    return []


def identity(
    auth_type: str,
    principal: str,
    *,
    account: str | None = None,
    workspace: str = "ws-1",
    **extra: str,
) -> dict[str, str]:
    """The identity headers of an allow (keys without the prefix; `_` in names becomes `-`)."""
    out = {"auth-type": auth_type, "principal": principal, "workspace-id": workspace}
    if account is not None:
        out["account-id"] = account
    out.update({k.replace("_", "-"): v for k, v in extra.items()})
    return out


def ids(cases: list[Case]) -> list[str]:
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return names
