"""deploy/k8s (a kustomize base): valid against the Kubernetes API schemas (strict, offline,
the schemas bundled in the kubernetes-validate package) and in step with the code: probes,
ports, settings, replicas versus partitions, the policy file, the image's user.

The base is rendered here from kustomization.yaml (resources and common labels, all it uses);
where `kubectl kustomize` exists, its rendering must be the same objects.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from processor.config import Settings
from processor.policy_file import load_policy_file
from tests.deploy.settings_names import variables_the_code_reads

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SERVED = {"gateway": ("MSGKPI_GATEWAY_PORT", "/readyz"),
          "worker": ("MSGKPI_WORKER_PORT", "/healthz"),
          "ui": ("MSGKPI_UI_PORT", "/readyz")}
"""Port variable and readiness path of each process (the worker serves no /readyz)."""
SCRAPED = ("gateway", "worker")
"""The processes with a /metrics page (the live page has none)."""


@cache
def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def common_labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for entry in kustomization().get("labels", []):
        assert entry.get("includeSelectors") is False and not entry.get("includeTemplates")
        labels.update(entry["pairs"])
    return labels


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    assert set(kustomization()) <= {"apiVersion", "kind", "labels", "resources"}, \
        "this renderer knows resources and labels only; extend it with the kustomization"
    objects = []
    for resource in kustomization()["resources"]:
        for document in yaml.safe_load_all((BASE / resource).read_text()):
            labels = document["metadata"].setdefault("labels", {})
            labels.update(common_labels())
            objects.append(document)
    return tuple(objects)


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in rendered() if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def workload(component: str) -> dict[str, Any]:
    """The Deployment or StatefulSet of a component (gateway, worker, ui)."""
    [found] = [o for o in rendered() if o["kind"] in ("Deployment", "StatefulSet")
               and o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, pod spec's single container) of the gateway, the worker and the ui."""
    for component in SERVED:
        containers = workload(component)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        yield component, containers[0]


def pod_spec(component: str) -> dict[str, Any]:
    spec: dict[str, Any] = workload(component)["spec"]["template"]["spec"]
    return spec


def settings_map() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap", "msgkpi-settings")["data"]
    return data


def container_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            env.update(one("ConfigMap", name)["data"])
    env.update({item["name"]: item["value"] if "value" in item else field_value(item)
                for item in container.get("env", [])})
    return env


def field_value(item: dict[str, Any]) -> str:
    """What a variable gets from elsewhere: the pod's own name (downward API), or an optional
    Secret's key."""
    source = item["valueFrom"]
    if "secretKeyRef" in source:
        assert source["secretKeyRef"]["optional"] is True, item
        return "from-a-secret"
    assert source["fieldRef"]["fieldPath"] == "metadata.name", item
    return "msgkpi-worker-0"


def mount_of(component: str, container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume whose mount holds `path`, with `key`: the path inside the volume."""
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            volumes = {v["name"]: v for v in pod_spec(component).get("volumes", [])}
            volume = dict(volumes.get(mount["name"], {"name": mount["name"]}))
            volume["key"] = path[len(mount["mountPath"].rstrip("/")) + 1:]
            return volume
    raise AssertionError(f"{component}: nothing mounted at {path}")


def test_kubectl_kustomize_renders_the_same_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the base is rendered by this test alone")
    result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    theirs = sorted(yaml.safe_load_all(result.stdout), key=key)
    assert theirs == sorted(rendered(), key=key)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_passes_the_kubernetes_api_schema(version: str) -> None:
    for document in rendered():
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_what_the_api_would_reject() -> None:
    broken = yaml.safe_load(yaml.safe_dump(one("StatefulSet")))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_base_has_every_object_the_deployment_needs() -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered())
    assert kinds == sorted([
        ("ConfigMap", "msgkpi-settings"), ("ConfigMap", "msgkpi-policy"),
        ("Deployment", "msgkpi-gateway"), ("Service", "msgkpi-gateway"),
        ("HorizontalPodAutoscaler", "msgkpi-gateway"), ("PodDisruptionBudget", "msgkpi-gateway"),
        ("StatefulSet", "msgkpi-worker"), ("Service", "msgkpi-worker"),
        ("PodDisruptionBudget", "msgkpi-worker"),
        ("Deployment", "msgkpi-ui"), ("Service", "msgkpi-ui")])


def test_containers_set_only_variables_the_code_reads() -> None:
    known = variables_the_code_reads()
    for component, container in workloads():
        unknown = set(container_env(container)) - known
        assert not unknown, f"{component}: {sorted(unknown)}"


def test_settings_are_valid_once_the_secret_files_are_mounted(tmp_path: Path) -> None:
    for component, container in workloads():
        env = container_env(container)
        for name, value in env.items():
            if name.endswith("_FILE") and name != "MSGKPI_CONFIG":
                volume = mount_of(component, container, value)
                assert volume["secret"]["secretName"] == "msgkpi-kafka", name
                assert volume["key"] in ("username", "password", "ca.crt")
                env[name] = str(tmp_path / volume["key"])
                (tmp_path / volume["key"]).write_text("x")
        settings = Settings.from_env(env)
        assert settings.kafka_security.protocol == "SASL_SSL"
        assert settings.replication_factor == 3
        assert settings.topic_configs() == {"min.insync.replicas": "2"}


def test_workers_do_not_outnumber_the_events_partitions() -> None:
    partitions = int(settings_map()["MSGKPI_EVENTS_PARTITIONS"])
    assert one("StatefulSet")["spec"]["replicas"] <= partitions


def test_probes_use_healthz_and_readyz_on_the_port_each_process_serves() -> None:
    for component, container in workloads():
        variable, readiness_path = SERVED[component]
        port = int(container_env(container)[variable])
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", readiness_path)):
            check = container[probe]["httpGet"]
            assert check["path"] == path, f"{component} {probe}"
            assert named[check["port"]] == port, f"{component} {probe}"
        assert container_env(container)[variable.replace("PORT", "HOST")] == "0.0.0.0"


def test_every_pod_with_metrics_is_scraped_on_its_metrics_port() -> None:
    for component, container in workloads():
        if component not in SCRAPED:
            continue
        annotations = workload(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]


def test_services_budgets_and_the_autoscaler_point_at_their_pods() -> None:
    for component in SERVED:
        found = workload(component)
        pod_labels = found["spec"]["template"]["metadata"]["labels"]
        assert found["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        service = one("Service", f"msgkpi-{component}")
        assert service["spec"]["selector"].items() <= pod_labels.items()
        port_names = {p["name"] for p in found["spec"]["template"]["spec"]["containers"][0]
                      ["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
        if component in SCRAPED:  # the single live page needs no disruption budget
            budget = one("PodDisruptionBudget", f"msgkpi-{component}")
            assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "msgkpi-gateway")
    statefulset = one("StatefulSet")
    assert one("Service", statefulset["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_the_worker_keeps_its_data_on_its_own_volume_and_reads_the_policy_map() -> None:
    container = dict(workloads())["worker"]
    env = container_env(container)
    data = mount_of("worker", container, env["MSGKPI_WORKER_DATA_DIR"])
    claims = {c["metadata"]["name"] for c in one("StatefulSet")["spec"]["volumeClaimTemplates"]}
    assert data["name"] in claims
    policy = mount_of("worker", container, env["MSGKPI_CONFIG"])
    assert policy["configMap"]["name"] == "msgkpi-policy"
    assert policy["key"] in one("ConfigMap", "msgkpi-policy")["data"]


def test_the_policy_map_is_the_sample_policy_file_and_valid(tmp_path: Path) -> None:
    text = one("ConfigMap", "msgkpi-policy")["data"]["policy.yaml"]
    assert text == (REPO_ROOT / "deploy" / "msgkpi.yaml").read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert load_policy_file(str(path)).policies


def test_pods_run_as_the_images_user_without_privileges() -> None:
    user = re.search(r"^USER (\d+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    for component, container in workloads():
        pod = pod_spec(component)["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == int(user.group(1))
        # secret and data volumes are group-owned by fsGroup: the user must be in it
        assert pod["fsGroup"] == pod["runAsGroup"] == int(user.group(1)), component
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]


def test_requests_and_limits_are_set_and_are_the_documented_figures() -> None:
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for component, container in workloads():
        resources = container["resources"]
        for section in ("requests", "limits"):
            assert set(resources[section]) == {"cpu", "memory"}, component
        row = (f"| {component} | {resources['requests']['cpu']} / "
               f"{resources['requests']['memory']} | {resources['limits']['cpu']} / "
               f"{resources['limits']['memory']} |")
        assert row in docs, f"docs/deploy.md has no sizing row {row!r}"


def test_each_worker_pod_is_a_static_group_member_under_its_own_name() -> None:
    """Restarted pods get their partitions back at once (Kafka static membership); a
    StatefulSet's pod names are stable and unique, as the ids must be."""
    workers = [c for component, c in workloads() if component == "worker"]
    assert workers
    for container in workers:
        [item] = [i for i in container["env"] if i["name"] == "MSGKPI_WORKER_INSTANCE_ID"]
        assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
