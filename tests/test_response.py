"""Decision → CheckResponse: deny is never an empty status; allow strips spoofed headers."""

from __future__ import annotations

import json

import pytest

from sidecar.decision import Decision, Reason
from sidecar.response import build_allow, build_deny, build_response


def _headers(resp_headers) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, list[str]] = {}
    for h in resp_headers:
        out.setdefault(h.header.key, []).append(h.header.value)
    return out


@pytest.mark.parametrize("reason", list(Reason))
def test_every_deny_sets_status_body_and_reason_header(reason: Reason) -> None:
    decision = Decision(allowed=False, decision_id="d1", reason=reason, challenges=("Basic x",))
    resp = build_deny(decision, prefix="x-assets-")
    assert resp.status.code == reason.grpc_code != 0
    assert resp.HasField("denied_response")
    assert resp.denied_response.status.code == reason.http_status
    headers = _headers(resp.denied_response.headers)
    assert headers["x-assets-authz-reason"] == [reason.value]
    assert headers["x-assets-decision-id"] == ["d1"]
    assert headers["content-type"] == ["application/json"]
    assert headers["www-authenticate"] == ["Basic x"]
    body = json.loads(resp.denied_response.body)
    assert body == {"errorMessages": [reason.message], "errors": {}}


def test_allow_sets_identity_and_removes_spoofed_headers_and_authorization() -> None:
    decision = Decision(
        allowed=True,
        decision_id="d2",
        identity={"auth-type": "oauth", "principal": "user", "account-id": "acc-ann", "role": ""},
        upstream_path="/a/b?z=1&b&a=%41",
    )
    client = {
        "authorization": "Bearer x",
        "x-assets-account-id": "acc-admin",  # overwritten, so not removed
        "x-assets-role": "admin",  # not set by us (empty role): removed
        "x-assets-impersonated": "true",
        "x-other": "kept",
        "x_assets_account_id": "acc-admin",  # read as x-assets-account-id by WSGI and others
        "x-assets_role": "admin",
        "x_other": "kept",
    }
    resp = build_allow(
        decision, client_headers=client, prefix="x-assets-", remove_authorization=True
    )
    assert resp.status.code == 0
    assert resp.HasField("status")
    ok = resp.ok_response
    headers = _headers(ok.headers)
    assert headers == {
        "x-assets-auth-type": ["oauth"],
        "x-assets-principal": ["user"],
        "x-assets-account-id": ["acc-ann"],
        "x-assets-decision-id": ["d2"],
        ":path": ["/a/b?z=1&b&a=%41"],
    }
    assert all(not h.append.value for h in ok.headers)
    assert sorted(ok.headers_to_remove) == [
        "authorization", "x-assets-impersonated", "x-assets-role", "x-assets_role",
        "x_assets_account_id",
    ]
    assert list(ok.query_parameters_to_remove) == []
    assert resp.dynamic_metadata.fields["account_id"].string_value == "acc-ann"


def test_passthrough_keeps_authorization_but_strips_prefix() -> None:
    decision = Decision(allowed=True, decision_id="d3", passthrough=True)
    resp = build_response(
        decision,
        client_headers={"authorization": "Basic x", "x-assets-role": "admin"},
        prefix="x-assets-",
        remove_authorization=True,
    )
    assert list(resp.ok_response.headers_to_remove) == ["x-assets-role"]


def test_custom_prefix() -> None:
    decision = Decision(allowed=False, decision_id="d4", reason=Reason.ROLE_MISSING)
    resp = build_deny(decision, prefix="x-acme-")
    assert "x-acme-authz-reason" in _headers(resp.denied_response.headers)
