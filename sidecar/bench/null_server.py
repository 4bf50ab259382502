"""The benchmark's baseline: a Check server on the sidecar's gRPC stack that decides nothing.

`python -m sidecar.bench.null_server --listen 127.0.0.1:PORT` serves
envoy.service.auth.v3.Authorization/Check (always OK with one header) and grpc.health.v1 (which
Envoy's health check asks), with the server options of `sidecar.server.serve`, until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from sidecar.server import AUTHZ_SERVICE, GRPC_SERVER_OPTIONS

HEADER = ("x-assets-auth-type", "null")


def ok_response() -> Any:
    """The one answer: OK, with one header for the upstream."""
    header = base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=HEADER[0], value=HEADER[1]),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=0),
        ok_response=external_auth_pb2.OkHttpResponse(headers=[header]),
    )


class NullAuthorization(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Check answers OK to everything, without looking at the request."""

    def __init__(self) -> None:
        self._response = ok_response()

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._response


async def serve_null(address: str, stop: asyncio.Event) -> int:
    """Serve until `stop` is set; 1 when the address cannot be bound."""
    # The same options as sidecar.server.serve: the two servers differ only in what Check does.
    server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(NullAuthorization(), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        print(f"null server: cannot listen on {address}", file=sys.stderr)
        return 1
    await server.start()
    for name in ("", AUTHZ_SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    await stop.wait()
    await server.stop(1.0)
    return 0


async def _main(address: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await serve_null(address, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.bench.null_server", description=__doc__
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="gRPC address")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.listen))


if __name__ == "__main__":
    raise SystemExit(main())
