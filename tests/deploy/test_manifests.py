"""Every YAML file under deploy/ parses, and the Kubernetes, Istio and container files agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import parse_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def test_the_kit_is_all_there() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in YAML_FILES}
    assert {
        "envoy/envoy.yaml", "examples/config.yaml", "examples/policy.yaml",
        "kubernetes/deployment.yaml", "kubernetes/configmap.yaml", "istio/mesh-config.yaml",
        "istio/service-entry.yaml", "istio/authorization-policy.yaml", "istio/deployment.yaml",
        "istio/service.yaml", "istio/networkpolicy.yaml", "istio/destination-rule.yaml",
        "istio/kustomization.yaml", "istio/shared/kustomization.yaml",
        "prometheus/prometheus-rules.yaml", "prometheus/scrape-config.yaml",
        "prometheus/podmonitor.yaml",
    } <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=[str(p.relative_to(DEPLOY)) for p in YAML_FILES])
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


OBJECTS = k8s_objects()
POD = OBJECTS[("Deployment", "assets-api")]["spec"]["template"]
SPEC = POD["spec"]
(SIDECAR,) = [c for c in SPEC["initContainers"] if c["name"] == "assets-authz"]
CONTAINERS = SPEC["initContainers"] + SPEC["containers"]
CONFIGMAP = OBJECTS[("ConfigMap", "assets-authz-config")]["data"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_sidecar_runs_beside_the_app_as_a_native_sidecar() -> None:
    assert SIDECAR["restartPolicy"] == "Always"
    assert SIDECAR["args"] == ["serve", "--config", "/etc/assets-authz/config.yaml"]
    assert {c["name"] for c in SPEC["containers"]} == {"envoy", "app"}
    ports = {p["containerPort"] for p in SIDECAR["ports"]}
    assert ports == {9191, 9192}


def test_probes_use_grpc_health() -> None:
    assert SIDECAR["livenessProbe"]["grpc"] == {"port": 9191, "service": ""}
    assert SIDECAR["readinessProbe"]["grpc"] == {"port": 9191, "service": AUTHZ_SERVICE}
    assert SIDECAR["startupProbe"]["grpc"] == {"port": 9191, "service": AUTHZ_SERVICE}


def test_connect_secrets_come_from_a_secret() -> None:
    policy = yaml.safe_load(CONFIGMAP["policy.yaml"])
    wanted = {i["shared_secret_env"] for i in policy["connect_installations"]}
    from_secrets = {
        e["name"] for e in SIDECAR["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert wanted and wanted <= from_secrets
    assert all("value" not in e for e in SIDECAR["env"] if e["name"] in wanted)


@pytest.mark.parametrize("container", CONTAINERS, ids=[c["name"] for c in CONTAINERS])
def test_containers_are_locked_down(container: dict[str, Any]) -> None:
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container["resources"].keys()
    assert container["resources"]["limits"]["memory"]


def test_pod_runs_as_non_root() -> None:
    ctx = SPEC["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert SPEC["automountServiceAccountToken"] is False


def test_the_store_lives_on_the_writable_volume(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(CONFIGMAP["policy.yaml"])
    data = yaml.safe_load(CONFIGMAP["config.yaml"])
    mounts = {m["mountPath"]: m for m in SIDECAR["volumeMounts"]}
    assert data["policy_file"] == "/etc/assets-authz/policy.yaml"
    assert mounts["/etc/assets-authz"]["readOnly"] is True
    data["policy_file"] = str(policy_file)
    config = parse_config(data, source="configmap", base=Path("/etc/assets-authz"))
    assert config.store_path is not None
    assert config.store_path.parent == Path("/var/lib/assets-authz")
    state = mounts["/var/lib/assets-authz"]
    volume = next(v for v in SPEC["volumes"] if v["name"] == state["name"])
    assert "emptyDir" in volume or "persistentVolumeClaim" in volume
    assert not state.get("readOnly", False)


def test_prometheus_annotations_point_at_the_metrics_listener() -> None:
    annotations = POD["metadata"]["annotations"]
    config = yaml.safe_load(CONFIGMAP["config.yaml"])
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert config["listen"]["http"].endswith(":" + annotations["prometheus.io/port"])


def test_only_envoy_is_published() -> None:
    service = OBJECTS[("Service", "assets-api")]
    (port,) = service["spec"]["ports"]
    envoy = next(c for c in SPEC["containers"] if c["name"] == "envoy")
    assert port["targetPort"] in {p["name"] for p in envoy["ports"]}
    app = next(c for c in SPEC["containers"] if c["name"] == "app")
    assert "ports" not in app


def test_envoy_mounts_its_configmap() -> None:
    envoy = next(c for c in SPEC["containers"] if c["name"] == "envoy")
    (mount,) = envoy["volumeMounts"]
    volume = next(v for v in SPEC["volumes"] if v["name"] == mount["name"])
    assert (("ConfigMap", volume["configMap"]["name"])) in OBJECTS
    assert envoy["args"][:2] == ["-c", f"{mount['mountPath']}/envoy.yaml"]


# The Istio variant (deploy/istio) has its own tests: test_istio.py.


CONTAINERFILE = (DEPLOY / "container" / "Containerfile").read_text()


def test_containerfile_builds_a_non_root_sidecar_image() -> None:
    assert re.findall(r"^FROM (\S+)", CONTAINERFILE, re.M) == ["python:3.11-slim"] * 2
    (user,) = re.findall(r"^USER (\S+)", CONTAINERFILE, re.M)
    assert user.split(":")[0] not in {"0", "root"}
    assert re.search(r"^EXPOSE 9191 9192$", CONTAINERFILE, re.M)
    assert 'ENTRYPOINT ["assets-authz"]' in CONTAINERFILE
    assert 'CMD ["serve", "--config", "/etc/assets-authz/config.yaml"]' in CONTAINERFILE


def test_ignore_file_keeps_what_the_containerfile_copies() -> None:
    ignore = (DEPLOY / "container" / "Containerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        src.rstrip("/")
        for line in re.findall(r"^COPY (?!--)(.+)$", CONTAINERFILE, re.M)
        for src in line.split()[:-1]
    }
    assert "*" in ignore and copied and copied <= kept
    assert all((REPO / path).exists() for path in copied)


def test_prometheus_scrapes_the_sidecar_port() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape-config.yaml").read_text())
    job = next(j for j in scrape["scrape_configs"] if "kubernetes_sd_configs" in j)
    keep_port = next(
        r["regex"] for r in job["relabel_configs"]
        if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    )
    (port,) = [p for p in SIDECAR["ports"] if p["name"] == keep_port]
    assert str(port["containerPort"]) == POD["metadata"]["annotations"]["prometheus.io/port"]
    for rule_file in scrape["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()


def test_podmonitor_scrapes_the_sidecar_port_of_the_api_pods() -> None:
    (monitor,) = load_all(DEPLOY / "prometheus" / "podmonitor.yaml")
    assert monitor["kind"] == "PodMonitor"
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= POD["metadata"]["labels"].items()
    (endpoint,) = spec["podMetricsEndpoints"]
    (port,) = [p for p in SIDECAR["ports"] if p["name"] == endpoint["port"]]
    assert str(port["containerPort"]) == POD["metadata"]["annotations"]["prometheus.io/port"]
    assert endpoint["path"] == POD["metadata"]["annotations"]["prometheus.io/path"]
    namespace = OBJECTS[("Namespace", "assets")]["metadata"]["name"]
    assert monitor["metadata"]["namespace"] == namespace
