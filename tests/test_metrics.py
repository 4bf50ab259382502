"""Metric label cardinality stays flat however many distinct requests arrive.

Thousands of requests, each with its own path, id, workspace, account, token, client key and
request id, go through a running sidecar; the exposition on /metrics is parsed. A second round
of the same shapes with fresh values must add no series at all, and no label value anywhere may
carry a value that came from a request.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Callable, Iterator

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from sidecar.decision import Reason
from sidecar.explain import check_request
from sidecar.testing.running import SidecarThread

from .test_server import http_get
from .world import World

Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]
Shape = Callable[[str], tuple[str, str, dict[str, str]]]


def series(text: str) -> Series:
    return frozenset(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def shapes(world: World) -> list[Shape]:
    """Request shapes that reach every layer; `v` is a value unique to one request."""
    ann_basic = world.basic("acc-ann")
    ann_oauth = world.oauth("acc-ann", "read:cmdb-object:jira write:cmdb-object:jira")

    def basic_of(email: str, token: str) -> str:
        return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()

    base = "/jsm/assets/workspace/ws-1/v1"
    return [
        lambda v: ("GET", f"{base}/object/{v}", {"authorization": ann_basic}),
        lambda v: ("GET", f"{base}/objecttype/{v}", {"authorization": ann_oauth}),
        lambda v: ("DELETE", f"{base}/object/88", {"authorization": world.oauth(f"acc-{v}")}),
        lambda v: ("GET", f"/jsm/assets/workspace/ws-{v}/v1/object/88",
                   {"authorization": ann_basic}),
        lambda v: ("GET", f"/elsewhere/{v}", {}),
        lambda v: ("GET", f"{base}/nothing-{v}", {"authorization": ann_basic}),
        lambda v: ("GET", f"{base}/object/%zz{v}", {"authorization": ann_basic}),
        lambda v: ("GET", f"{base}/object/88", {"authorization": basic_of(f"{v}@x.test",
                                                                          f"aat_{v}")}),
        lambda v: ("GET", f"{base}/object/88", {"authorization": f"Bearer act_{v}"}),
        lambda v: ("GET", f"{base}/object/88", {"authorization": f"Bearer {v}.{v}.{v}"}),
        lambda v: ("GET", f"{base}/object/88", {"authorization": f"Scheme{v} {v}"}),
        lambda v: ("GET", f"{base}/object/88?x={v}",
                   {"authorization": "JWT " + world.connect(
                       "GET", f"{base}/object/88?x={v}", iss=f"jira:{v}",
                       secret="s" * 32)}),
        lambda v: ("GET", f"{base}/object/88",
                   {"authorization": "JWT " + world.connect("GET", f"{base}/object/{v}")}),
        lambda v: ("POST", f"{base}/object/create", {"authorization": ann_basic}),
    ]


def requests(world: World, rounds: int) -> Iterator[tuple[str, str, dict[str, str]]]:
    all_shapes = shapes(world)
    for _ in range(rounds):
        for shape in all_shapes:
            method, path, headers = shape(secrets.token_hex(6))
            yield method, path, {**headers, "x-request-id": secrets.token_hex(8)}


@pytest.fixture
def own_sidecar(fresh_world: World) -> Iterator[SidecarThread]:
    with SidecarThread(fresh_world.config) as running:
        yield running


def test_label_cardinality_stays_flat_after_thousands_of_distinct_requests(
    own_sidecar: SidecarThread, fresh_world: World
) -> None:
    grpc_port, http_port = own_sidecar.serving.grpc_port, own_sidecar.serving.http_port
    sent: list[str] = []

    def run(rounds: int) -> Series:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            for method, path, headers in requests(fresh_world, rounds):
                sent.extend([path, *headers.values()])
                stub.Check(check_request(method, path, headers, None), timeout=5)
        code, text = http_get(http_port, "/metrics")
        assert code == 200
        return series(text)

    first = run(15)
    second = run(150)  # 2,100 more requests, every one with values never seen before
    assert second == first, sorted(second - first)

    reasons = {reason.value for reason in Reason}
    decisions = {dict(labels)["reason"] for name, labels in first
                 if name == "assets_authz_decisions_total"}
    assert len(decisions) >= 8, decisions  # the shapes reached many layers
    assert decisions <= reasons | {"none"}
    values = {value for _, labels in first for _, value in labels}
    leaked = [piece for piece in random.sample(sent, 2000) if piece in values]
    assert leaked == []
    per_family: dict[str, int] = {}
    for name, _ in first:
        per_family[name] = per_family.get(name, 0) + 1
    assert max(per_family.values()) < 400, per_family
