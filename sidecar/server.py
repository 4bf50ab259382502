"""`assets-authz serve`: the gRPC Check service, health, reflection, Explain and the ops port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from sidecar import __version__
from sidecar.config import Config, ConfigError, config_warnings, load_config
from sidecar.decision import Decision, Deny, Reason
from sidecar.logs import DecisionLogger, setup_logging
from sidecar.metrics import Metrics
from sidecar.ops import OpsServer
from sidecar.pipeline import Engine, new_decision_id
from sidecar.request import HttpRequest, from_check_request
from sidecar.response import build_deny, build_response
from sidecar.runtime import Runtime
from sidecar.store.sqlite import StoreError

log = logging.getLogger(__name__)

AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # bodies Envoy buffers can exceed gRPC's 4 MiB default
DEADLINE_MARGIN_SECONDS = 0.005  # answer (deny) before Envoy's own timeout turns it into an error
DEFAULT_BUDGET_SECONDS = 5.0  # when Envoy sends no deadline
_NEVER_MS = 2**31 - 1  # INT_MAX: gRPC core reads it as "infinite" for *_ms channel args
GRPC_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second sidecar on the same port must fail, not share it
    # Envoy keeps its HTTP/2 connections (one per worker) open for as long as Checks come and,
    # with `connection_keepalive`, pings them every interval whether or not a Check is in flight.
    # gRPC core's default ping policy takes such pings for abuse and answers
    # GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"), which fails any Check still on the
    # connection. Accept Envoy's pings instead:
    # - a connection without a Check in flight is the normal state between requests; without
    #   this, pings on it must be 2 hours apart;
    ("grpc.keepalive_permit_without_calls", 1),
    # - pings 1 s or more apart are never "too early" (the default is 5 minutes);
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
    # - and earlier ones (a delayed ping followed by a punctual one) never end in a GOAWAY:
    #   the only client is the local Envoy, and a dead connection is its keepalive's job.
    ("grpc.http2.max_ping_strikes", 0),
    # Never retire a connection for age or idleness (gRPC core's defaults, set here so they
    # stay that way): Envoy would reconnect, but a GOAWAY racing a Check can fail it.
    ("grpc.max_connection_idle_ms", _NEVER_MS),
    ("grpc.max_connection_age_ms", _NEVER_MS),
]


async def decide_check(
    engine: Engine, check: Any, *, budget: float | None, decision_id: str | None = None
) -> tuple[Decision, HttpRequest | None]:
    """Run one CheckRequest through the engine within a time budget; never raises."""
    did = decision_id or new_decision_id()
    try:
        request = from_check_request(check)
    except Deny as deny:
        return engine.deny(did, deny), None
    except Exception:
        log.exception("could not read CheckRequest")
        return engine.deny(did, Deny(Reason.BAD_REQUEST, "unreadable CheckRequest")), None
    try:
        # asyncio.timeout, not wait_for: no extra Task per Check on the hot path.
        async with asyncio.timeout(budget):
            decision = await engine.decide(request, did)
    except TimeoutError:
        decision = engine.deny(did, Deny(Reason.DEPENDENCY_UNAVAILABLE, "deadline exceeded"))
    return decision, request


def apply_dry_run(decision: Decision, dry_run: bool) -> Decision:
    """With dry_run, a deny is logged and counted as such but answered as an allow."""
    if not dry_run or decision.allowed:
        return decision
    return replace(decision, allowed=True, dry_run_overridden=True, identity={})


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """envoy.service.auth.v3.Authorization/Check."""

    def __init__(self, runtime: Runtime, decision_log: DecisionLogger) -> None:
        self.runtime = runtime
        self.decision_log = decision_log

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        did = new_decision_id()
        runtime = self.runtime
        config = runtime.config
        try:
            remaining = context.time_remaining()
            budget = (
                max(remaining - DEADLINE_MARGIN_SECONDS, 0.001)
                if remaining is not None
                else DEFAULT_BUDGET_SECONDS
            )
            decision, http = await decide_check(runtime.engine, request, budget=budget,
                                                decision_id=did)
            real = decision
            final = apply_dry_run(decision, config.dry_run)
            response = build_response(
                final,
                client_headers=http.headers if http else {},
                prefix=config.response.header_prefix,
                remove_authorization=config.response.remove_authorization,
            )
        except Exception:
            # A bug must still answer a deny in CheckResponse.status: an RPC error would be let
            # through by fail-open setups.
            log.exception("internal error in Check", extra={"fields": {"decision_id": did}})
            real = runtime.engine.deny(did, Deny(Reason.INTERNAL_ERROR, "Check failed"))
            final, http = real, None
            response = build_deny(real, prefix=config.response.header_prefix)
        elapsed = time.perf_counter() - start
        m = runtime.metrics
        m.decisions.labels(
            result=real.result,
            reason=real.reason.value if real.reason else "ok",
            auth_type=real.auth_type,
        ).inc()
        m.check_duration.labels(result=real.result).observe(elapsed)
        self.decision_log.sample_rate = config.log.allow_sample_rate  # follows config reloads
        self.decision_log.log(final, request_id=http.request_id if http else "", latency_s=elapsed)
        return response


READINESS_INTERVAL_SECONDS = 1.0


async def track_readiness(health: HealthServicer, runtime: Runtime, stop: asyncio.Event) -> None:
    """Keep the Authorization service's gRPC health in step with what every decision needs."""
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    last = None
    while not stop.is_set():
        problems = runtime.serving_problems()
        status = not_serving if problems else serving
        if status != last:
            await health.set(AUTHZ_SERVICE, status)
            if problems:
                log.warning("not ready", extra={"fields": {"problems": problems}})
            elif last is not None:
                log.info("ready again")
            last = status
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), READINESS_INTERVAL_SECONDS)


@dataclass
class Serving:
    """Handles on a running sidecar (for tests and the demo): runtime and bound ports."""

    runtime: Runtime
    grpc_port: int
    http_port: int
    explain_port: int | None


def _add_port(server: grpc.aio.Server, address: str) -> int:
    """Bind a gRPC listener; 0 when the address cannot be bound."""
    try:
        return int(server.add_insecure_port(address))
    except RuntimeError:  # grpc raises it for an address in use or not available
        return 0


async def _cannot_listen(
    listener: str, address: str, error: OSError | None, runtime: Runtime
) -> int:
    """Log that a listener could not be bound, stop the runtime, and return exit status 1."""
    fields: dict[str, Any] = {"listener": listener, "address": address}
    if error is not None:
        fields["error"] = error.strerror or str(error)
    log.error("cannot listen on %s (%s)", address, listener, extra={"fields": fields})
    await runtime.stop()
    return 1


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[Serving], None] | None = None,
    poll_seconds: float = 1.0,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set); SIGHUP reloads the configuration."""
    metrics = Metrics()
    runtime = Runtime(config, metrics, poll_seconds=poll_seconds)
    await runtime.start()
    for warning in config_warnings(config):
        log.warning(warning)
    if config.dry_run:
        log.warning("DRY RUN: every decision is logged and counted, but all requests are allowed")

    server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        AuthorizationService(runtime, DecisionLogger(config.log.allow_sample_rate)), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = [AUTHZ_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    if config.listen.reflection:
        from grpc_reflection.v1alpha import reflection

        services.append(reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)
    handle_signals = stop is None
    # The Check listener is bound last: a gRPC server that was bound but never started keeps its
    # port until the process exits, and only Explain may be started just to let its port go.
    host, _, port = config.listen.http.rpartition(":")
    try:
        ops = OpsServer(host.strip("[]"), int(port), metrics.registry, runtime.readiness)
    except OSError as exc:  # address in use, not available on this host, no permission
        return await _cannot_listen("http", config.listen.http, exc, runtime)
    explain_server = None
    explain_port: int | None = None
    if config.listen.explain:
        from sidecar.explain import add_explain_service

        explain_server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # as for gRPC: a second sidecar must fail, not share it
        ])
        add_explain_service(explain_server, runtime)
        explain_port = _add_port(explain_server, config.listen.explain)
        if explain_port == 0:
            ops.stop()
            return await _cannot_listen("explain", config.listen.explain, None, runtime)
    grpc_port = _add_port(server, config.listen.grpc)
    if grpc_port == 0:
        ops.stop()
        if explain_server is not None:
            await explain_server.start()
            await explain_server.stop(None)
        return await _cannot_listen("grpc", config.listen.grpc, None, runtime)

    ops.start()
    await server.start()
    if explain_server is not None:
        await explain_server.start()
    # "" is liveness (the process serves); the Authorization service is NOT_SERVING while the
    # store is unusable (every decision would deny), so kubelet and Envoy's active health check
    # take that replica out. /readyz is the fuller picture (also keys and Connect secrets).
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set(
        AUTHZ_SERVICE,
        health_pb2.HealthCheckResponse.NOT_SERVING
        if runtime.serving_problems()
        else health_pb2.HealthCheckResponse.SERVING,
    )
    stop = stop or asyncio.Event()
    readiness_task = asyncio.create_task(track_readiness(health, runtime, stop))
    log.info(
        "assets-authz serving",
        extra={"fields": {"version": __version__, "grpc": config.listen.grpc,
                          "http": config.listen.http, "explain": config.listen.explain or None,
                          "dry_run": config.dry_run}},
    )

    loop = asyncio.get_running_loop()
    if handle_signals:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(runtime.reload_config())
        )
    if started is not None:
        started(Serving(runtime, grpc_port, ops.port, explain_port))
    await stop.wait()

    log.info("shutting down: health NOT_SERVING, draining in-flight checks")
    readiness_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await readiness_task
    await health.enter_graceful_shutdown()
    grace = runtime.config.shutdown_grace_seconds
    if explain_server is not None:
        await explain_server.stop(0)
    await server.stop(grace)
    ops.stop()
    await runtime.stop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


def run(config_path: str) -> int:
    """Entry point of `assets-authz serve --config FILE`."""
    setup_logging()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s: %s", exc.source, problem)
        return 1
    try:
        return asyncio.run(serve(config))
    except StoreError as exc:  # the store cannot be opened at start: nothing to serve from
        log.error("store unusable, not starting", extra={"fields": {"error": str(exc)}})
        return 1


__all__ = ["AuthorizationService", "apply_dry_run", "decide_check", "external_auth_pb2", "run"]
