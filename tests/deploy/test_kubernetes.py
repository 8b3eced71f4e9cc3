"""deploy/kubernetes: schema-valid offline (kubernetes-validate ships the schemas) and secure.

Validated strictly (unknown fields are errors) against the oldest Kubernetes that has everything
the manifests use (mixed UDP+TCP LoadBalancer: 1.26) and the newest schema kubernetes-validate
knows. The security settings are asserted here one by one; test_checkov.py adds checkov's view.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from gslb.config.loader import load
from tests.deploy.manifests import (
    EXAMPLE_ZONE,
    KUBERNETES,
    Doc,
    find,
    gslb_check,
    image_uid,
    kubernetes_docs,
    kubernetes_files,
    pod_templates,
)

VERSIONS = ("1.26.0", kubernetes_validate.latest_version())
GSLB_WORKLOADS = {"gslb-responder": "serve", "gslb-prober": "probe", "gslb-api": "api"}


def docs() -> list[Doc]:
    return kubernetes_docs()


def containers(pod: Doc) -> list[Doc]:
    found: list[Doc] = pod["containers"]
    return found


def responder() -> Doc:
    return find(docs(), "Deployment", "gslb-responder")


def config_dir(tmp_path: Path) -> Path:
    """The ConfigMap as a pod mounts it on /etc/gslb."""
    configmap = find(docs(), "ConfigMap", "gslb-config")
    for key, text in configmap["data"].items():
        (tmp_path / key).write_text(text)
    return tmp_path


def test_every_file_is_in_the_kustomization() -> None:
    listed = {path.name for path in kubernetes_files()}
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for doc in docs():
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert len(checked) >= 12, checked


def test_the_schema_check_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(responder())
    probe = containers(broken["spec"]["template"]["spec"])[0].pop("readinessProbe")
    containers(broken["spec"]["template"]["spec"])[0]["readinessprobe"] = probe
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    "workload",
    ["Deployment/gslb-responder", "Deployment/gslb-prober", "Deployment/gslb-api", "StatefulSet/redis"],
)
def test_pods_run_non_root_read_only_without_capabilities(workload: str) -> None:
    pods = dict(pod_templates(docs()))
    assert set(pods) == {
        "Deployment/gslb-responder",
        "Deployment/gslb-prober",
        "Deployment/gslb-api",
        "StatefulSet/redis",
    }
    pod = pods[workload]
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork", False) and not pod.get("hostPID", False)
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert isinstance(security["runAsUser"], int) and security["runAsUser"] >= 10000
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    for container in containers(pod):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and isinstance(context["runAsUser"], int)
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert not context.get("privileged", False)
        assert context["capabilities"]["drop"] == ["ALL"]
        added = context["capabilities"].get("add", [])
        assert added == (["NET_BIND_SERVICE"] if workload == "Deployment/gslb-responder" else [])
        assert "memory" in container["resources"]["requests"]
        assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("name", sorted(GSLB_WORKLOADS))
def test_gslb_workloads_run_the_image_user_with_the_configmap(name: str) -> None:
    pod = find(docs(), "Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == image_uid()
    (container,) = containers(pod)
    assert container["args"] == [GSLB_WORKLOADS[name]]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = mounts["/etc/gslb"]
    assert config["readOnly"] is True
    assert volumes[config["name"]]["configMap"]["name"] == "gslb-config"
    # the only writable paths on a read-only root (state snapshot, steering maps, temp files)
    for path in ("/var/lib/gslb", "/var/cache/gslb", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path


def test_configmap_holds_a_valid_config_and_the_example_zone(tmp_path: Path) -> None:
    configmap = find(docs(), "ConfigMap", "gslb-config")
    assert configmap["data"]["gslb.example.com.zone"] == EXAMPLE_ZONE.read_text()
    assert "OK" in gslb_check(config_dir(tmp_path))


def test_responder_serves_53_with_probes_on_its_metrics_listener(tmp_path: Path) -> None:
    config = load(config_dir(tmp_path) / "gslb.yaml")
    pod = responder()["spec"]["template"]["spec"]
    (container,) = containers(pod)
    ports = {p["name"]: p for p in container["ports"]}
    assert {(p["containerPort"], p["protocol"]) for p in ports.values()} >= {(53, "UDP"), (53, "TCP")}
    assert {listen.port for listen in config.server.listen} == {53}
    sysctls = {s["name"]: s["value"] for s in pod["securityContext"]["sysctls"]}
    assert int(sysctls["net.ipv4.ip_unprivileged_port_start"]) <= 53
    metrics = config.server.metrics_listen
    assert metrics is not None and metrics.host == "0.0.0.0", "kubelet probes come from outside the pod"

    def probe(kind: str) -> dict[str, Any]:
        get: dict[str, Any] = container[kind]["httpGet"]
        assert ports[get["port"]]["containerPort"] == metrics.port, kind
        return get

    assert probe("readinessProbe")["path"] == "/readyz"
    assert probe("livenessProbe")["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > config.server.lame_duck_s > 0
    # the lame duck must outlast the time the kubelet needs to see /readyz fail
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < config.server.lame_duck_s


def test_disruption_budget_and_service_select_the_responders() -> None:
    deployment = responder()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = find(docs(), "PodDisruptionBudget", "gslb-responder")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    service = find(docs(), "Service", "gslb-dns")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    named = {p["name"] for p in containers(deployment["spec"]["template"]["spec"])[0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    # the resolver's own address must reach gslb: it steers by it when there is no ECS
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_redis_is_a_persistent_statefulset_behind_the_configured_url(tmp_path: Path) -> None:
    config = load(config_dir(tmp_path) / "gslb.yaml")
    redis = find(docs(), "StatefulSet", "redis")
    (container,) = containers(redis["spec"]["template"]["spec"])
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/data")
    assert data["name"] in claims
    service = find(docs(), "Service", redis["spec"]["serviceName"])
    assert config.state.redis_url == f"redis://{service['metadata']['name']}:6379/0"
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()


def test_only_gslb_pods_reach_redis() -> None:
    policy = find(docs(), "NetworkPolicy", "redis")
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "gslb"}
    assert find(docs(), "NetworkPolicy", "default-deny-ingress")["spec"]["podSelector"] == {}
