"""Decision → CheckResponse: the only module that builds Envoy response types.

A deny always carries an explicit non-OK `status` (an empty CheckResponse means allow to Envoy),
and the RPC itself never fails for a deny (fail-open setups would let an RPC error through).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2, wrappers_pb2
from google.rpc import status_pb2

from sidecar.decision import Decision, Reason

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _set(key: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append=wrappers_pb2.BoolValue(value=False),
        append_action=_OVERWRITE,
    )


def _add(key: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=_APPEND
    )


def error_body(reason: Reason) -> str:
    """The Jira error-collection body for a reason (no secret, no internal detail)."""
    return json.dumps({"errorMessages": [reason.message], "errors": {}}, separators=(",", ":"))


def spoofed_headers(client_headers: Iterable[str], prefix: str, keep: Iterable[str]) -> list[str]:
    """Client-sent headers under our prefix that we did not set ourselves (anti-spoofing).

    Underscore spellings (`x_assets_account_id`) count too: many upstream stacks (CGI/WSGI,
    some proxies) read `_` and `-` as the same, and not every proxy refuses such names (Envoy
    does with `headers_with_underscores_action: REJECT_REQUEST`; Istio's sidecar does not).
    """
    kept = set(keep)
    dashed = prefix.replace("_", "-")
    return sorted(
        h for h in client_headers if h.replace("_", "-").startswith(dashed) and h not in kept
    )


def build_allow(
    decision: Decision,
    *,
    client_headers: Mapping[str, str],
    prefix: str,
    remove_authorization: bool,
) -> Any:
    """An OK CheckResponse with identity headers, header removals and dynamic metadata."""
    set_headers = {f"{prefix}{name}": value for name, value in decision.identity.items() if value}
    set_headers[f"{prefix}decision-id"] = decision.decision_id
    ok = external_auth_pb2.OkHttpResponse(
        headers=[_set(k, v) for k, v in sorted(set_headers.items())],
        headers_to_remove=spoofed_headers(client_headers, prefix, set_headers),
    )
    if remove_authorization and not decision.passthrough and "authorization" in client_headers:
        ok.headers_to_remove.append("authorization")
    if decision.upstream_path is not None:
        # Rewrite `:path` rather than use query_parameters_to_remove: Envoy re-serialises the
        # whole query for the latter (sorted, bare keys become `key=`), and the contract passes
        # the rest of the query on untouched.
        ok.headers.append(_set(":path", decision.upstream_path))
    metadata = struct_pb2.Struct()
    metadata.update({"decision_id": decision.decision_id, "result": "allow"})
    metadata.update({k.replace("-", "_"): v for k, v in decision.identity.items() if v})
    if decision.operation:
        metadata.update({"operation": decision.operation})
    if decision.dry_run_overridden and decision.reason is not None:
        metadata.update({"dry_run_reason": decision.reason.value})
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=0),
        ok_response=ok,
        dynamic_metadata=metadata,
    )


def build_deny(decision: Decision, *, prefix: str) -> Any:
    """A non-OK CheckResponse with the HTTP status, JSON body and challenge headers."""
    reason = decision.reason or Reason.INTERNAL_ERROR
    headers = [
        _set("content-type", "application/json"),
        _set(f"{prefix}authz-reason", reason.value),
        _set(f"{prefix}decision-id", decision.decision_id),
    ]
    headers.extend(_add("www-authenticate", c) for c in decision.challenges)
    metadata = struct_pb2.Struct()
    metadata.update(
        {"decision_id": decision.decision_id, "result": "deny", "reason": reason.value}
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=reason.grpc_code, message=reason.value),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=reason.http_status),
            headers=headers,
            body=error_body(reason),
        ),
        dynamic_metadata=metadata,
    )


def build_response(
    decision: Decision,
    *,
    client_headers: Mapping[str, str],
    prefix: str,
    remove_authorization: bool,
) -> Any:
    if decision.allowed:
        return build_allow(
            decision,
            client_headers=client_headers,
            prefix=prefix,
            remove_authorization=remove_authorization,
        )
    return build_deny(decision, prefix=prefix)
