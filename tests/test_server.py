"""The sidecar over real gRPC: Check, health, Explain, ops endpoint, reloads, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar._proto import explain_pb2_grpc
from sidecar.explain import check_request
from sidecar.testing.ports import free_port
from sidecar.testing.resolver_upstream import ResolverUpstream
from sidecar.testing.running import SidecarThread

from .world import SECRETS, World

BASE = "/jsm/assets/workspace/ws-1/v1"


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Any:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        return stub.Check(check_request(method, path, headers or {}, body), timeout=5)


def headers_of(resp: Any) -> dict[str, str]:
    part = resp.ok_response if resp.HasField("ok_response") else resp.denied_response
    return {h.header.key: h.header.value for h in part.headers}


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_allow_over_grpc(sidecar: SidecarThread, world: World) -> None:
    resp = call(sidecar.serving.grpc_port, "GET", f"{BASE}/object/88",
                {"authorization": world.basic("acc-ann"), "x-assets-role": "admin"})
    assert resp.status.code == 0
    h = headers_of(resp)
    assert h["x-assets-account-id"] == "acc-ann"
    assert h["x-assets-role"] == "manager"
    assert "authorization" in resp.ok_response.headers_to_remove


def test_deny_over_grpc_is_a_response_not_an_rpc_error(sidecar: SidecarThread) -> None:
    resp = call(sidecar.serving.grpc_port, "GET", f"{BASE}/object/88")
    assert resp.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert resp.denied_response.status.code == 401
    assert headers_of(resp)["x-assets-authz-reason"] == "missing_credential"


def test_network_filter_request_without_http_is_denied(sidecar: SidecarThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.serving.grpc_port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        resp = stub.Check(external_auth_pb2.CheckRequest(), timeout=5)
    assert resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.denied_response.status.code == 400


def test_body_above_grpc_default_limit(sidecar: SidecarThread, world: World) -> None:
    body = json.dumps({"objectTypeId": "10", "pad": "x" * (5 * 1024 * 1024)}).encode()
    resp = call(sidecar.serving.grpc_port, "POST", f"{BASE}/object/create",
                {"authorization": world.basic("acc-bob")}, body)
    assert resp.status.code == 0, headers_of(resp)


def test_health(sidecar: SidecarThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.serving.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.auth.v3.Authorization"):
            out = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert out.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as exc:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_ops_endpoints_and_metrics(sidecar: SidecarThread, world: World) -> None:
    port = sidecar.serving.http_port
    call(sidecar.serving.grpc_port, "GET", "/elsewhere")
    assert http_get(port, "/healthz")[0] == 200
    code, body = http_get(port, "/readyz")
    assert code == 200, body
    code, text = http_get(port, "/metrics")
    assert code == 200
    assert metric(text, "assets_authz_decisions_total", result="deny",
                  reason="unmanaged_path", auth_type="none") >= 1
    assert metric(text, "assets_authz_build_info") == 1
    assert metric(text, "assets_authz_dry_run") == 0
    assert metric(text, "assets_authz_jwks_keys", issuer=world.jwks_server.issuer) == 1
    assert "assets_authz_check_duration_seconds_bucket" in text
    assert 'le="5e-05"' in text
    assert http_get(port, "/nope")[0] == 404


def test_explain_service(sidecar: SidecarThread, world: World) -> None:
    port = sidecar.serving.explain_port
    assert port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = explain_pb2_grpc.ExplainStub(channel)
        out = stub.Explain(
            check_request("DELETE", f"{BASE}/object/88",
                          {"authorization": world.basic("acc-bob")}, None),
            timeout=5,
        )
    assert (out.decision, out.status, out.reason, out.layer) == (
        "deny", 403, "role_missing", "role"
    )
    assert [s.layer for s in out.trace][-1] == "role"
    assert out.check_response.denied_response.status.code == 403


def test_token_minted_after_start_is_picked_up(sidecar: SidecarThread, world: World) -> None:
    _, text = world.store.mint_api("acc-eve", None, None, "late", time.time())
    world.api_tokens["acc-eve:late"] = text
    deadline = time.monotonic() + 10
    while True:
        resp = call(sidecar.serving.grpc_port, "GET", f"{BASE}/object/89",
                    {"authorization": world.basic("acc-eve:late")})
        if resp.status.code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.status.code == 0, headers_of(resp)


@pytest.fixture
def own_sidecar(fresh_world: World) -> Iterator[SidecarThread]:
    with SidecarThread(fresh_world.config) as running:
        yield running


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_config_reload_rejects_invalid_and_applies_valid(
    own_sidecar: SidecarThread, fresh_world: World
) -> None:
    http = own_sidecar.serving.http_port
    grpc_port = own_sidecar.serving.grpc_port
    path = fresh_world.config_path
    original = path.read_text()
    path.write_text(original + "bogus_key: 1\n")
    assert _wait_for(lambda: metric(http_get(http, "/metrics")[1], "assets_authz_reloads_total",
                                    what="config", result="failure") >= 1)
    denied = call(grpc_port, "GET", f"{BASE}/object/88")
    assert denied.status.code != 0  # the old config keeps serving
    path.write_text(original + "dry_run: true\n")
    assert _wait_for(lambda: metric(http_get(http, "/metrics")[1], "assets_authz_dry_run") == 1)
    text = http_get(http, "/metrics")[1]
    assert metric(text, "assets_authz_config_generation") == 2
    allowed = call(grpc_port, "GET", f"{BASE}/object/88")
    assert allowed.status.code == 0  # dry run: the deny is logged and counted, but allowed
    text = http_get(http, "/metrics")[1]
    assert metric(text, "assets_authz_decisions_total", result="deny",
                  reason="missing_credential") >= 2


async def test_an_edit_followed_by_sighup_is_loaded_once(fresh_world: World) -> None:
    import asyncio

    from sidecar.metrics import Metrics
    from sidecar.runtime import Runtime

    runtime = Runtime(fresh_world.config, Metrics(), poll_seconds=0.1)
    await runtime.start()
    try:
        path = fresh_world.config_path
        path.write_text(path.read_text() + "dry_run: true\n")
        assert await runtime.reload_config()  # what SIGHUP does, before the watcher's next tick
        await asyncio.sleep(2.5)  # two ticks of the file watcher
        assert runtime.generation == 2  # was 3: the watcher loaded the same edit again
        assert runtime.config.dry_run
    finally:
        await runtime.stop()


def test_allow_sample_rate_follows_a_reload(
    own_sidecar: SidecarThread, fresh_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    http, grpc_port = own_sidecar.serving.http_port, own_sidecar.serving.grpc_port
    auth = {"authorization": fresh_world.basic("acc-ann")}
    caplog.set_level("INFO", logger="assets_authz.decision")

    def logged_allows() -> int:
        return sum(1 for r in caplog.records
                   if r.name == "assets_authz.decision" and r.fields["result"] == "allow")

    assert call(grpc_port, "GET", f"{BASE}/object/88", auth).status.code == 0
    assert logged_allows() == 1  # the world logs every allow
    path = fresh_world.config_path
    path.write_text(path.read_text().replace("allow_sample_rate: 1.0", "allow_sample_rate: 0.0"))
    assert _wait_for(lambda: metric(http_get(http, "/metrics")[1],
                                    "assets_authz_config_generation") == 2)
    for _ in range(20):
        assert call(grpc_port, "GET", f"{BASE}/object/88", auth).status.code == 0
    assert logged_allows() == 1


def test_readyz_names_missing_connect_secret(fresh_world: World) -> None:
    saved = os.environ.pop("ASSETS_AUTHZ_TEST_WRITER_SECRET")
    try:
        with SidecarThread(fresh_world.config) as running:
            code, body = http_get(running.serving.http_port, "/readyz")
            assert code == 503
            assert "jira:def-456" in body and saved not in body
            with grpc.insecure_channel(f"127.0.0.1:{running.serving.grpc_port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                status = {
                    name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                    for name in ("", "envoy.service.auth.v3.Authorization")
                }
            assert status == {  # one app's secret fails only that app: the replica keeps serving
                "": health_pb2.HealthCheckResponse.SERVING,
                "envoy.service.auth.v3.Authorization": health_pb2.HealthCheckResponse.SERVING,
            }
            token = fresh_world.connect("GET", f"{BASE}/object/88", iss="jira:def-456",
                                        secret=saved)
            resp = call(running.serving.grpc_port, "GET", f"{BASE}/object/88",
                        {"authorization": f"JWT {token}"})
            assert headers_of(resp)["x-assets-authz-reason"] == "dependency_unavailable"
            assert resp.denied_response.status.code == 503
            text = http_get(running.serving.http_port, "/metrics")[1]
            assert metric(text, "assets_authz_connect_secrets_unavailable") == 1
            assert "jira:def-456" not in text and saved not in text
    finally:
        os.environ["ASSETS_AUTHZ_TEST_WRITER_SECRET"] = saved


def _serve_process(world: World, tmp_path: Path, extra: str = "") -> tuple[
    subprocess.Popen[str], int, int
]:
    """`assets-authz serve` as a process of its own (signals, exit status, stderr logs)."""
    grpc_port, http_port = free_port(), free_port()
    config = tmp_path / "serve.yaml"
    text = world.config_path.read_text()
    text = text.replace("grpc: '127.0.0.1:0'", f"grpc: '127.0.0.1:{grpc_port}'")
    text = text.replace("http: '127.0.0.1:0'", f"http: '127.0.0.1:{http_port}'")
    text = text.replace("store: sqlite:///state.db", f"store: sqlite:///{world.root}/state.db")
    config.write_text(text + extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if not _wait_for(lambda: http_get(http_port, "/readyz")[0] == 200, 20):
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    return proc, grpc_port, http_port


def test_sigterm_drains_and_exits_zero(fresh_world: World, tmp_path: Path) -> None:
    proc, _, _ = _serve_process(fresh_world, tmp_path, "shutdown_grace_seconds: 2\n")
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "NOT_SERVING" in err


def test_sigterm_flips_health_at_once_and_finishes_in_flight_checks(
    fresh_world: World, tmp_path: Path
) -> None:
    upstream = ResolverUpstream(lambda _path: 1.5)
    url = upstream.url
    proc, port, _ = _serve_process(
        fresh_world, tmp_path,
        f"shutdown_grace_seconds: 8\nresolver: {{url: '{url}', timeout_ms: 5000}}\n",
    )
    auth = {"authorization": fresh_world.basic("acc-ann")}
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="envoy.service.auth.v3.Authorization"),
            timeout=20,
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = [
            stub.Check.future(check_request(
                "GET", f"{BASE}/object/{700 + i}", {**auth, "x-request-id": f"drain-{i}"}, None
            ), timeout=20)
            for i in range(8)
        ]
        for _ in in_flight:  # every Check is inside the sidecar, waiting on the resolver
            assert upstream.asked.acquire(timeout=10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        flipped = time.monotonic() - sent
        assert flipped < 1.0, flipped  # long before the in-flight Checks can finish
        results = [f.result() for f in in_flight]
        watch.cancel()  # an open Watch stream would hold the exit for the whole grace period
        _, err = proc.communicate(timeout=15)
    finally:
        channel.close()
        upstream.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [r.status.code for r in results] == [0] * 8
    # (gRPC itself may also print a raw traceback when the Watch stream is cancelled.)
    logged = {
        entry["request_id"]: entry
        for entry in (json.loads(line) for line in err.splitlines() if line.startswith("{"))
        if entry.get("msg") == "decision"
    }
    for i in range(8):  # each drained Check also wrote its decision line before the exit
        assert logged[f"drain-{i}"]["result"] == "allow"
        assert logged[f"drain-{i}"]["latency_ms"] >= 1400


def test_no_credential_ever_reaches_the_logs(
    sidecar: SidecarThread, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.logs import JsonFormatter

    api = world.api_tokens["acc-ann"]
    oauth = world.oauth("acc-ann", "read:cmdb-object:jira").split(" ", 1)[1]
    ctr = world.container_tokens["is-1"]
    connect = world.connect("GET", f"{BASE}/object/88")
    basic = world.basic("acc-ann").split(" ", 1)[1]
    secrets = [api, oauth, ctr, connect, basic, *SECRETS.values()]
    attempts = [
        api, f"Bearer\t{oauth}", f"Basic\t{basic}", f"JWT{connect}", f"Bearer {ctr}x",
        f"Bearer {oauth}x", f"Basic {basic}=", f"Token {api}", f"Bearer {ctr} extra",
        world.basic("acc-ann", email="bob@example.test"), f"JWT {connect}",
    ]
    caplog.set_level("INFO")
    for value in attempts:
        call(sidecar.serving.grpc_port, "GET", f"{BASE}/object/89", {"authorization": value})
    call(sidecar.serving.grpc_port, "GET", f"{BASE}/object/89?jwt={connect}")
    time.sleep(0.2)
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "decision" in text
    for secret in secrets:
        for piece in (secret, secret.lower(), secret[-24:], secret[-24:].lower()):
            assert piece not in text


def test_store_outage_serves_stale_then_goes_not_serving_and_recovers(tmp_path: Path) -> None:
    from .world import build_world

    w = build_world(tmp_path / "w", store_stale_max_seconds="1")
    db = w.root / "state.db"
    moved = w.root / "state.db.away"
    try:
        with SidecarThread(w.config, poll_seconds=0.1) as running:
            port, http = running.serving.grpc_port, running.serving.http_port
            auth = {"authorization": w.basic("acc-ann")}

            def health_status() -> int:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    return int(health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(
                            service="envoy.service.auth.v3.Authorization"), timeout=5).status)

            assert call(port, "GET", f"{BASE}/object/88", auth).status.code == 0
            db.rename(moved)
            assert call(port, "GET", f"{BASE}/object/88", auth).status.code == 0  # last snapshot
            assert _wait_for(
                lambda: health_status() == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            resp = call(port, "GET", f"{BASE}/object/88", auth)
            assert headers_of(resp)["x-assets-authz-reason"] == "dependency_unavailable"
            assert http_get(http, "/readyz")[0] == 503
            moved.rename(db)
            assert _wait_for(lambda: health_status() == health_pb2.HealthCheckResponse.SERVING)
            assert call(port, "GET", f"{BASE}/object/88", auth).status.code == 0
    finally:
        w.stop()


def _writer_secret_from_file(secret_file: str) -> dict[str, Any]:
    """The fixture policy with the writer app's secret read from `secret_file`."""
    import yaml

    from .world import FIXTURES

    data: dict[str, Any] = yaml.safe_load((FIXTURES / "policy.yaml").read_text())
    for inst in data["connect_installations"]:
        if inst["client_key"] == "jira:def-456":
            del inst["shared_secret_env"]
            inst["shared_secret_file"] = secret_file
    return data


def _writer_status(world: World, port: int, url: str, secret: str) -> int:
    """The Check status of a writer-app Connect request signed with `secret`."""
    token = world.connect("GET", url, iss="jira:def-456", secret=secret)
    return int(call(port, "GET", url, {"authorization": f"JWT {token}"}).status.code)


def test_rotated_connect_secret_file_takes_effect_while_serving(tmp_path: Path) -> None:
    from sidecar.store.policy import parse_policy

    from .world import build_world

    w = build_world(tmp_path / "w")
    secret_file = tmp_path / "writer.secret"
    secret_file.write_text("old-writer-secret-0123456789abcdef\n")
    data = _writer_secret_from_file(str(secret_file))
    w.store.apply(parse_policy(data, base=tmp_path), dry_run=False)
    url = f"{BASE}/object/89"
    try:
        with SidecarThread(w.config, poll_seconds=0.1) as running:
            port = running.serving.grpc_port

            def status(secret: str) -> int:
                return _writer_status(w, port, url, secret)

            assert status("old-writer-secret-0123456789abcdef") == 0
            secret_file.write_text("new-writer-secret-0123456789abcdef\n")
            assert _wait_for(lambda: status("new-writer-secret-0123456789abcdef") == 0, 10)
            assert status("old-writer-secret-0123456789abcdef") != 0
    finally:
        w.stop()


def test_policy_file_changes_are_applied_while_serving(tmp_path: Path) -> None:
    import shutil

    from .world import FIXTURES, build_world

    policy = tmp_path / "policy.yaml"
    shutil.copy(FIXTURES / "policy.yaml", policy)
    w = build_world(tmp_path / "w", policy_file=str(policy))
    url, auth = f"{BASE}/object/89", {"authorization": ""}
    try:
        with SidecarThread(w.config, poll_seconds=0.1) as running:
            port, http = running.serving.grpc_port, running.serving.http_port
            auth["authorization"] = w.basic("acc-zed")
            assert headers_of(call(port, "GET", url, auth))["x-assets-authz-reason"] == (
                "role_missing"
            )
            text = policy.read_text().replace(
                "viewer: {apps: [connect:com.example.reporting, oauth:svc-client]}",
                "viewer: {users: [acc-zed], apps: [connect:com.example.reporting, "
                "oauth:svc-client]}",
            )
            assert "acc-zed]" in text
            policy.write_text(text)
            assert _wait_for(lambda: call(port, "GET", url, auth).status.code == 0)
            policy.write_text(text + "bogus: 1\n")  # rejected: the last good policy stays
            assert _wait_for(lambda: metric(http_get(http, "/metrics")[1],
                                            "assets_authz_reloads_total", what="policy",
                                            result="failure") >= 1)
            assert call(port, "GET", url, auth).status.code == 0
    finally:
        w.stop()


class KubeletMount:
    """A folder laid out like a mounted ConfigMap or Secret, updated the way the kubelet does:
    `name -> ..data/name`, `..data -> ..<version>`; an update writes a new version folder,
    swaps `..data` atomically and deletes the old folder."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root, self.version = root, 0
        root.mkdir(parents=True)
        self._current: Path | None = None
        self.update(files)
        for name in files:
            (root / name).symlink_to(Path("..data") / name)

    def update(self, files: dict[str, str]) -> None:
        self.version += 1
        folder = self.root / f"..2026_12_03_00_00_{self.version:02d}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        link = self.root / "..data_tmp"
        link.symlink_to(folder.name)
        os.replace(link, self.root / "..data")
        if self._current is not None:
            import shutil

            shutil.rmtree(self._current)
        self._current = folder


def test_kubernetes_mounted_policy_and_secret_updates_take_effect(tmp_path: Path) -> None:
    """Before: paths were resolved once into the kubelet's version folder, which an update
    deletes: the new secret was never read and the policy never re-applied."""
    import yaml

    from .world import build_world

    secrets = KubeletMount(tmp_path / "secrets", {"writer": "old-writer-secret-0123456789abcdef"})
    data = _writer_secret_from_file("../secrets/writer")  # relative to the policy's mount
    text = yaml.safe_dump(data)
    policies = KubeletMount(tmp_path / "config", {"policy.yaml": text})
    w = build_world(tmp_path / "w", policy_file=str(policies.root / "policy.yaml"))
    url = f"{BASE}/object/89"
    try:
        with SidecarThread(w.config, poll_seconds=0.1) as running:
            port = running.serving.grpc_port

            def connect_status(secret: str) -> int:
                return _writer_status(w, port, url, secret)

            zed = {"authorization": w.basic("acc-zed")}
            assert _wait_for(lambda: connect_status("old-writer-secret-0123456789abcdef") == 0)
            assert call(port, "GET", url, zed).status.code != 0
            secrets.update({"writer": "new-writer-secret-0123456789abcdef"})
            assert _wait_for(lambda: connect_status("new-writer-secret-0123456789abcdef") == 0)
            assert connect_status("old-writer-secret-0123456789abcdef") != 0
            (itsm,) = [schema for schema in data["schemas"] if schema["key"] == "ITSM"]
            itsm["roles"]["viewer"]["users"] = ["acc-zed"]
            policies.update({"policy.yaml": yaml.safe_dump(data)})
            assert _wait_for(lambda: call(port, "GET", url, zed).status.code == 0)
    finally:
        w.stop()


def test_a_listener_that_cannot_be_bound_exits_1_with_a_json_line(
    fresh_world: World, tmp_path: Path
) -> None:
    # Before: a taken HTTP port ended `serve` with a raw traceback (OSError: [Errno 98] Address
    # already in use), a taken Explain port with another (RuntimeError: Failed to bind), and an
    # Explain port held by a gRPC server (SO_REUSEPORT, gRPC's default) was silently shared.
    from concurrent.futures import ThreadPoolExecutor

    first, grpc_port, http_port = _serve_process(fresh_world, tmp_path)
    other = grpc.server(ThreadPoolExecutor(1))  # someone else's gRPC listener
    explain_port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    running = (tmp_path / "serve.yaml").read_text()

    def second(grpc: int | None = None, http: int | None = None, explain: int = 0) -> str:
        """The first sidecar's configuration with other ports (free ones when not given)."""
        return (running
                .replace(f"'127.0.0.1:{grpc_port}'", f"'127.0.0.1:{grpc or free_port()}'")
                .replace(f"'127.0.0.1:{http_port}'", f"'127.0.0.1:{http or free_port()}'")
                .replace("explain: '127.0.0.1:0'", f"explain: '127.0.0.1:{explain}'"))

    cases = {  # listener -> (the second sidecar's configuration, the address it cannot bind)
        "http": (second(http=http_port), f"127.0.0.1:{http_port}"),
        "explain": (second(explain=explain_port), f"127.0.0.1:{explain_port}"),
        "grpc": (second(grpc=grpc_port), f"127.0.0.1:{grpc_port}"),
    }
    try:
        for listener, (text, address) in cases.items():
            config = tmp_path / f"second-{listener}.yaml"
            config.write_text(text)
            second = subprocess.run(
                [sys.executable, "-m", "sidecar", "serve", "--config", str(config)],
                capture_output=True, text=True, timeout=30,
            )
            assert second.returncode == 1, (listener, second.stderr)
            assert "Traceback" not in second.stderr, second.stderr
            logged = [json.loads(line) for line in second.stderr.splitlines()
                      if line.startswith("{")]
            failed = [e for e in logged if e["msg"].startswith("cannot listen on")]
            assert [(e["listener"], e["address"], e["level"]) for e in failed] == [
                (listener, address, "error")
            ], second.stderr
            if listener == "http":  # gRPC core adds a line of its own for the gRPC listeners
                assert len(logged) == len(second.stderr.splitlines()), second.stderr
        assert http_get(http_port, "/readyz")[0] == 200  # the first sidecar was not disturbed
    finally:
        other.stop(None)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=15)
    assert first.returncode == 0, err


@pytest.mark.parametrize("taken", ["grpc", "http", "explain"])
def test_serve_returns_1_and_lets_go_of_every_port_when_one_is_taken(
    fresh_world: World, taken: str
) -> None:
    # In-process (tests, demo): `serve` returns 1 instead of raising, and the listeners it had
    # already bound are free again (a bound but never started gRPC server keeps its port).
    import socket
    from dataclasses import replace

    holder = socket.create_server(("127.0.0.1", 0))
    ports = {name: free_port() for name in ("grpc", "http", "explain")}
    ports[taken] = holder.getsockname()[1]
    config = fresh_world.config
    config = replace(config, listen=replace(
        config.listen, **{name: f"127.0.0.1:{port}" for name, port in ports.items()}
    ))
    try:
        sidecar = SidecarThread(config)
        with pytest.raises(RuntimeError, match="exit 1"):
            sidecar.start()
        assert sidecar.error is None  # returned 1, did not raise
    finally:
        holder.close()
    for name, port in ports.items():
        if name != taken:
            with socket.create_server(("127.0.0.1", port)):
                pass
