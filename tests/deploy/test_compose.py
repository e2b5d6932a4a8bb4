"""docker-compose.yml: valid for docker-compose, and in step with the code and the configs it
mounts: every variable set on an msgkpi container is one the code reads, ports and scrape
targets match the services, the topic set-up matches the topics the code expects, and the
Prometheus and Alertmanager files, laid out as the containers see them, pass promtool and amtool.

docker-compose (Debian's 1.29) resolves anchors, merges and paths offline; the tests read its
resolved output. No Docker engine runs here, so nothing is started.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from processor.config import Settings
from processor.policy_file import load_policy_file
from processor.topics import topic_specs
from tests.deploy.settings_names import variables_the_code_reads

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
LOCAL_PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = REPO_ROOT / "deploy" / "grafana" / "provisioning"
PORT_VARIABLES = {"gateway": ("MSGKPI_GATEWAY_PORT", 8080), "worker": ("MSGKPI_WORKER_PORT", 6066)}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make test` installs it (deploy/install-tools.sh)")
    return found


def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("docker-compose"), "-f", str(COMPOSE_FILE), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPO_ROOT)


@cache
def resolved() -> dict[str, Any]:
    result = docker_compose("config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def services() -> dict[str, Any]:
    found: dict[str, Any] = resolved()["services"]
    return found


def msgkpi_services() -> dict[str, Any]:
    """The services that run the project's image, by name."""
    return {name: service for name, service in services().items() if "build" in service}


def subcommand(service: dict[str, Any]) -> str:
    return str(service["command"][0])


def port_pairs(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(published, container) for each port, whichever syntax docker-compose printed."""
    pairs = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.append((int(port["published"]), int(port["target"])))
        else:
            published, target = str(port).split("/")[0].split(":")[-2:]
            pairs.append((int(published), int(target)))
    return pairs


def container_ports(service: dict[str, Any]) -> list[int]:
    return [target for _, target in port_pairs(service)]


def served_port(service: dict[str, Any]) -> int:
    variable, default = PORT_VARIABLES[subcommand(service)]
    return int(service["environment"].get(variable, default))


def compose_prometheus() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(mounted_source("prometheus",
                                                           "/etc/prometheus/prometheus.yml")
                                            .read_text())
    return config


def bind_mounts(service_name: str) -> Iterator[tuple[Path, str]]:
    for volume in services()[service_name].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            yield Path(source), target


def mounted_source(service_name: str, container_path: str) -> Path:
    """The host file or folder a service sees at `container_path` (or inside a mount)."""
    for source, target in bind_mounts(service_name):
        if container_path == target:
            return source
        if container_path.startswith(target + "/"):
            return source / container_path[len(target) + 1:]
    raise AssertionError(f"{service_name} mounts nothing at {container_path}")


def container_root(service_name: str, root: Path) -> Path:
    """Copy a service's bind mounts under `root` at their container paths."""
    for source, target in bind_mounts(service_name):
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy2(source, destination)
    return root


def test_docker_compose_validates_the_file() -> None:
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_stack_has_every_part_and_the_simulator_behind_a_profile() -> None:
    names = set(services())
    assert {"kafka", "kafka-setup", "gateway", "worker-1", "worker-2", "prometheus",
            "alertmanager", "grafana", "simulator"} <= names
    assert services()["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in s for n, s in services().items() if n != "simulator")


def test_the_names_the_code_reads_are_learnt_from_settings() -> None:
    names = variables_the_code_reads()
    assert {"MSGKPI_KAFKA_BOOTSTRAP", "MSGKPI_WHATSAPP_SECRET", "MSGKPI_X_VERIFY_TOKEN",
            "MSGKPI_KAFKA_SASL_PASSWORD_FILE", "MSGKPI_REPLICATION_FACTOR"} <= names
    assert all(name.startswith("MSGKPI_") for name in names)


def test_msgkpi_containers_set_only_variables_the_code_reads() -> None:
    known = variables_the_code_reads()
    for name, service in msgkpi_services().items():
        unknown = set(service.get("environment", {})) - known
        assert not unknown, f"{name} sets variables msgkpi never reads: {sorted(unknown)}"


def test_every_msgkpi_container_settings_are_valid() -> None:
    for service in msgkpi_services().values():
        Settings.from_env({k: str(v) for k, v in service.get("environment", {}).items()})


def test_two_workers_form_one_group_each_with_its_own_data() -> None:
    workers = [s for s in msgkpi_services().values() if subcommand(s) == "worker"]
    assert len(workers) == 2
    assert len({w["environment"]["MSGKPI_APP_ID"] for w in workers}) == 1
    data = [w["environment"]["MSGKPI_WORKER_DATA_DIR"] for w in workers]
    volumes = [{v.split(":")[0] for v in w["volumes"] if v.split(":")[1] in data[0]}
               for w in workers]
    assert volumes[0] and volumes[0].isdisjoint(volumes[1]), volumes


def test_the_workers_policy_file_is_mounted_and_valid() -> None:
    for name, service in msgkpi_services().items():
        path = service["environment"].get("MSGKPI_CONFIG")
        if path is not None:
            assert load_policy_file(str(mounted_source(name, path))).policies, name


def test_servers_publish_the_port_they_serve_and_host_ports_are_unique() -> None:
    for name, service in msgkpi_services().items():
        if subcommand(service) in PORT_VARIABLES:
            assert container_ports(service) == [served_port(service)], name
    published = [host for s in services().values() for host, _ in port_pairs(s)]
    assert len(published) == len(set(published)), published


def test_prometheus_scrapes_every_msgkpi_server_at_its_port() -> None:
    jobs = {job["job_name"]: {t for c in job["static_configs"] for t in c["targets"]}
            for job in compose_prometheus()["scrape_configs"]}
    for command in PORT_VARIABLES:
        expected = {f"{name}:{served_port(s)}" for name, s in msgkpi_services().items()
                    if subcommand(s) == command}
        assert jobs[f"msgkpi-{command}"] == expected


def test_prometheus_sends_alerts_to_the_alertmanager_service() -> None:
    managers = compose_prometheus()["alerting"]["alertmanagers"]
    targets = {t for m in managers for c in m["static_configs"] for t in c["targets"]}
    assert targets == {"alertmanager:9093"}
    assert container_ports(services()["alertmanager"]) == [9093]


def test_compose_prometheus_differs_from_the_local_one_only_in_targets() -> None:
    def without_targets(config: dict[str, Any]) -> dict[str, Any]:
        for job in config["scrape_configs"]:
            job.pop("static_configs")
        config.pop("alerting")
        return config

    local = yaml.safe_load(LOCAL_PROMETHEUS.read_text())
    assert without_targets(compose_prometheus()) == without_targets(local)


def test_the_mounted_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    root = container_root("prometheus", tmp_path)
    config = root / "etc" / "prometheus" / "prometheus.yml"
    result = subprocess.run([tool("promtool"), "check", "config", str(config)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout + result.stderr


def test_the_mounted_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    root = container_root("alertmanager", tmp_path)
    config = root / "etc" / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([tool("amtool"), "check-config", str(config)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_gets_exactly_the_variables_its_provisioning_reads() -> None:
    grafana = services()["grafana"]
    referenced = set()
    for source, _ in bind_mounts("grafana"):
        if source.is_relative_to(GRAFANA_PROVISIONING):
            for path in source.glob("*.yaml"):
                settings = re.sub(r"#.*", "", path.read_text())  # comments show examples
                referenced |= set(re.findall(r"\$\{(\w+)\}", settings))
    assert set(grafana["environment"]) == referenced
    assert grafana["environment"]["MSGKPI_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert container_ports(services()["prometheus"]) == [9090]
    dashboards = mounted_source("grafana", grafana["environment"]["MSGKPI_GRAFANA_DASHBOARDS"])
    assert len(list(dashboards.glob("*.json"))) == 2


def test_the_topic_setup_creates_the_topics_the_code_expects() -> None:
    setup = services()["kafka-setup"]
    script = " ".join(setup["command"])
    created = dict(re.findall(r"([\w.-]+):(\d+)", script.split(";")[0]))
    gateway = next(s for s in msgkpi_services().values() if subcommand(s) == "gateway")
    settings = Settings.from_env({k: str(v) for k, v in gateway["environment"].items()})
    assert {name: int(n) for name, n in created.items()} == {
        spec.name: spec.partitions for spec in topic_specs(settings.topics)}
    replication = re.search(r"--replication-factor (\d+)", script)
    assert replication is not None
    assert int(replication.group(1)) == settings.replication_factor


def test_msgkpi_reaches_the_broker_on_its_internal_listener() -> None:
    kafka = services()["kafka"]["environment"]
    advertised = {address: listener for listener, address in
                  (item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))}
    for service in msgkpi_services().values():
        bootstrap = service["environment"].get("MSGKPI_KAFKA_BOOTSTRAP")
        if bootstrap is not None:
            assert advertised[bootstrap] == "PLAINTEXT"


def test_compose_runs_the_kafka_version_the_local_broker_runs() -> None:
    local = re.search(r'DEFAULT_KAFKA_VERSION="([\d.]+)"', KAFKA_SH.read_text())
    assert local is not None
    for name in ("kafka", "kafka-setup"):
        assert services()[name]["image"] == f"apache/kafka:{local.group(1)}"
