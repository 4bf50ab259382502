"""The bench workload: a seeded store and a signed mix that the real engine decides as intended."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidecar.bench.workload import (
    ALLOW,
    FIRST_BULK_OBJECT,
    MixEntry,
    Workload,
    build_workload,
    bulk_object,
    rotation,
)
from sidecar.config import load_config
from sidecar.decision import Reason
from sidecar.explain import explain
from sidecar.metrics import Metrics
from sidecar.runtime import Runtime
from sidecar.store.sqlite import SqliteStore

OBJECTS = 60


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    root = tmp_path_factory.mktemp("bench-world")
    with build_workload(root, grpc_port=1, http_port=2, objects=OBJECTS) as built:
        yield built


@pytest.fixture
async def runtime(workload: Workload) -> AsyncIterator[Runtime]:
    rt = Runtime(load_config(workload.config_path), Metrics())
    await rt.prime()
    yield rt
    await rt.stop()


async def test_every_request_gets_its_intended_answer(
    workload: Workload, runtime: Runtime
) -> None:
    for entry in workload.mix:
        decision, response = await explain(runtime, entry.check_request())
        got = decision.reason.value if decision.reason else ALLOW
        assert got == entry.outcome, (entry.name, decision.detail)
        assert decision.http_status == entry.http_status, entry.name
        assert response.status.code == entry.grpc_code, entry.name
        if entry.expect is not None:
            assert response.status.message == entry.outcome, entry.name


def test_the_mix_covers_every_kind_target_and_answer(workload: Workload) -> None:
    mix = workload.mix
    schemes = {e.headers["authorization"].split(" ")[0] for e in mix}
    assert schemes == {"Bearer", "JWT", "Basic"}
    assert any("act_" in e.headers["authorization"] for e in mix)  # container token
    paths = " ".join(e.path for e in mix)
    for target in ("/object/", "/objecttype/", "/objectschema/"):
        assert target in paths
    assert any(e.method == "POST" and e.path.endswith("/object/create") and e.body for e in mix)
    reasons = {e.expect for e in mix}
    assert {None, Reason.ROLE_MISSING, Reason.INSUFFICIENT_SCOPE, Reason.UNKNOWN_TOKEN,
            Reason.QSH_MISMATCH} <= reasons
    assert all(e.headers["x-bench-direct"] == "1" for e in mix)
    assert 0.6 < workload.fraction_allowed() < 0.9


def test_store_holds_the_bulk_objects(workload: Workload) -> None:
    config = load_config(workload.config_path)
    assert config.store_path is not None
    snapshot = SqliteStore(config.store_path).load_snapshot()
    assert str(FIRST_BULK_OBJECT + OBJECTS - 1) in snapshot.objects
    assert snapshot.objects["88"] == "10"


def _entry(weight: int) -> MixEntry:
    return MixEntry("e", "GET", "/", {}, weight=weight)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1], (0,)),
        ([1, 1, 1], (0, 1, 2)),
        ([3, 1], (0, 0, 1, 0)),
        ([2, 2, 1], (0, 1, 2, 0, 1)),
    ],
)
def test_rotation_spreads_by_weight(weights: list[int], expected: tuple[int, ...]) -> None:
    order = rotation([_entry(w) for w in weights])
    assert order == expected
    assert Counter(order) == dict(enumerate(weights))


@pytest.mark.parametrize(
    ("objects", "type_id", "expected"),
    [
        (6, "10", FIRST_BULK_OBJECT + 0),
        (6, "30", FIRST_BULK_OBJECT + 5),
        (13, "10", FIRST_BULK_OBJECT + 12),
        (13, "11", FIRST_BULK_OBJECT + 7),
        (20_000, "11", FIRST_BULK_OBJECT + 19_999),
    ],
)
def test_bulk_object_ids(objects: int, type_id: str, expected: int) -> None:
    assert bulk_object(objects, type_id) == str(expected)


def test_too_few_objects_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        build_workload(tmp_path, grpc_port=1, http_port=2, objects=5)
