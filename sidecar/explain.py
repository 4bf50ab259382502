"""Explain: one request through the same decision code, with its layer-by-layer trace.

Served as the `assets_authz.explain.v1.Explain` gRPC service on its own loopback listener, and
as the `assets-authz explain` command (which needs no running sidecar).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

from sidecar._proto import explain_pb2, explain_pb2_grpc
from sidecar.config import ConfigError, load_config
from sidecar.decision import Decision
from sidecar.logs import setup_logging
from sidecar.metrics import Metrics
from sidecar.response import build_response
from sidecar.runtime import Runtime
from sidecar.server import DEFAULT_BUDGET_SECONDS, decide_check
from sidecar.store.sqlite import StoreError

log = logging.getLogger(__name__)


def decision_dict(decision: Decision) -> dict[str, Any]:
    """The JSON shape of an explained decision."""
    return {
        "decision": decision.result,
        "status": decision.http_status,
        "reason": decision.reason.value if decision.reason else None,
        "layer": decision.layer.value if decision.layer else None,
        "operation": decision.operation,
        "auth_type": decision.auth_type,
        "account_id": decision.account_id,
        "decision_id": decision.decision_id,
        "identity": dict(decision.identity),
        "detail": decision.detail or None,
        "trace": [step.as_dict() for step in decision.trace],
    }


async def explain(runtime: Runtime, check: Any) -> tuple[Decision, Any]:
    """Decide a CheckRequest and build the CheckResponse Check would send (no metrics/logs)."""
    decision, request = await decide_check(runtime.engine, check, budget=DEFAULT_BUDGET_SECONDS)
    config = runtime.config
    response = build_response(
        decision,
        client_headers=request.headers if request else {},
        prefix=config.response.header_prefix,
        remove_authorization=config.response.remove_authorization,
    )
    return decision, response


class ExplainService(explain_pb2_grpc.ExplainServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def Explain(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        decision, response = await explain(self.runtime, request)
        return explain_pb2.ExplainResponse(
            decision=decision.result,
            status=decision.http_status,
            reason=decision.reason.value if decision.reason else "",
            layer=decision.layer.value if decision.layer else "",
            trace=[
                explain_pb2.TraceStep(layer=s.layer.value, outcome=s.outcome, detail=s.detail)
                for s in decision.trace
            ],
            decision_id=decision.decision_id,
            identity=dict(decision.identity),
            operation=decision.operation or "",
            check_response=response,
        )


def add_explain_service(server: grpc.aio.Server, runtime: Runtime) -> None:
    explain_pb2_grpc.add_ExplainServicer_to_server(  # type: ignore[no-untyped-call]
        ExplainService(runtime), server
    )


def check_request(
    method: str, path: str, headers: dict[str, str], body: bytes | None, host: str = "localhost"
) -> Any:
    """Build the CheckRequest Envoy would send for one HTTP request."""
    all_headers = {":method": method.upper(), ":path": path, ":authority": host,
                   ":scheme": "http", **{k.lower(): v for k, v in headers.items()}}
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method.upper(), path=path, host=host, scheme="http", protocol="HTTP/1.1",
        headers=all_headers,
    )
    if body is not None:
        http.raw_body = body
        http.size = len(body)
        http.headers["x-envoy-auth-partial-body"] = "false"
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def parse_header_args(raw: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header must look like 'name: value': {item!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
    return headers


async def _explain_once(config_path: str, check: Any) -> dict[str, Any]:
    config = load_config(config_path)
    runtime = Runtime(config, Metrics())
    try:
        await runtime.prime()
        decision, _ = await explain(runtime, check)
    finally:
        await runtime.stop()
    return decision_dict(decision)


def run_cli(
    config_path: str, method: str, path: str, headers: list[str], body_file: str | None
) -> int:
    """`assets-authz explain`: print exactly one JSON object on stdout."""
    setup_logging(logging.WARNING)
    try:
        parsed = parse_header_args(headers)
        for text in (method, path, *parsed, *parsed.values()):
            text.encode("utf-8")  # arguments with undecodable bytes arrive as lone surrogates
    except UnicodeEncodeError:
        print("explain: --method, --path and -H must be valid UTF-8", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return 2
    try:
        body = Path(body_file).read_bytes() if body_file else None
    except OSError as exc:
        print(f"explain: cannot read --body-file {body_file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        result = asyncio.run(_explain_once(config_path, check_request(method, path, parsed, body)))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"explain: store unusable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
