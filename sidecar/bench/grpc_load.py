"""Direct gRPC load: N concurrent in-flight Check calls from one grpc.aio client, for a time.

The CheckRequests are serialized once; each call's latency is recorded when it completes inside
the timed window (a warm-up before it is not recorded). Every answer is compared with the one
expected for its request: `allow`, or the reason code the sidecar puts in `status.message`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from envoy.service.auth.v3 import external_auth_pb2

from sidecar.bench.report import LoadResult, latency_result

CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
CALL_TIMEOUT_SECONDS = 1.0  # Envoy's check timeout in the demo config
CONNECT_TIMEOUT_SECONDS = 10.0
ALLOW = "allow"


@dataclass(frozen=True)
class Call:
    """One serialized CheckRequest and the outcome expected for it."""

    payload: bytes
    expect: str  # "allow" or a reason code


@dataclass
class _State:
    calls: Sequence[Call]
    next_index: int = 0
    recording: bool = False
    stopping: bool = False
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def take(self) -> Call:
        call = self.calls[self.next_index % len(self.calls)]
        self.next_index += 1
        return call


def _outcome(response: external_auth_pb2.CheckResponse) -> str:
    return ALLOW if response.status.code == 0 else response.status.message or "deny"


async def _worker(check: grpc.aio.UnaryUnaryMultiCallable, state: _State) -> None:
    while not state.stopping:
        call = state.take()
        start = time.perf_counter()
        try:
            response = await check(call.payload, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            if state.recording:
                state.errors += 1
                state.outcomes[f"rpc {exc.code().name}"] += 1
            continue
        elapsed = time.perf_counter() - start
        if state.recording:
            state.latencies.append(elapsed)
            outcome = _outcome(response)
            state.outcomes[outcome] += 1
            if outcome != call.expect:
                state.errors += 1


async def run_grpc_load(
    address: str,
    calls: Sequence[Call],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> LoadResult:
    """Drive `address` for `warmup` + `duration` seconds; `on_start`/`on_end` mark the window."""
    if not calls or concurrency < 1 or duration <= 0:
        raise ValueError("need calls, a positive concurrency and a positive duration")
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_SECONDS)
        check = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=None,  # the payloads are serialized already
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        state = _State(calls)
        workers = [asyncio.create_task(_worker(check, state)) for _ in range(concurrency)]
        try:
            await asyncio.sleep(warmup)
            if on_start is not None:
                on_start()
            state.recording = True
            started = time.perf_counter()
            await asyncio.sleep(duration)
            state.recording = False
            seconds = time.perf_counter() - started
            if on_end is not None:
                on_end()
            state.stopping = True
            # Each worker finishes its call in flight, bounded by CALL_TIMEOUT_SECONDS.
            await asyncio.gather(*workers)
        finally:
            state.stopping = True
            for task in workers:
                task.cancel()
    return latency_result("grpc.aio", seconds, state.latencies, state.errors, state.outcomes)
