"""Gateway, worker and replay over SASL_SSL (SCRAM, a throwaway CA) on a real broker.

The module starts the opt-in secured broker (`deploy/kafka/kafka.sh start-secure`: its own run
dir and ports) and stops it afterwards unless it was already running.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from processor.kafka_security import EXIT_KAFKA_AUTH, KafkaSecurity, check_credentials
from tests.integration.services import (
    MSGKPI,
    REPO_ROOT,
    Deployment,
    Service,
    free_port,
    http_post,
    wait_until,
)

pytestmark = pytest.mark.integration

KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
CHANNEL = "line"


def _kafka_sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(KAFKA_SH), command], capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.fixture(scope="module")
def secure_env() -> Iterator[dict[str, str]]:
    """The MSGKPI_KAFKA_* settings of the secured broker (`kafka.sh env-secure`)."""
    was_running = _kafka_sh("status-secure").returncode == 0
    started = _kafka_sh("start-secure")
    assert started.returncode == 0, started.stderr[-3000:]
    printed = _kafka_sh("env-secure")
    assert printed.returncode == 0, printed.stderr
    env = dict(line.split("=", 1) for line in printed.stdout.splitlines() if "=" in line)
    try:
        yield env
    finally:
        if not was_running:
            _kafka_sh("stop-secure")


def test_kafka_sh_gives_clients_sasl_ssl_with_scram_and_a_ca(secure_env: dict[str, str]) -> None:
    assert secure_env["MSGKPI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert secure_env["MSGKPI_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert "BEGIN CERTIFICATE" in Path(secure_env["MSGKPI_KAFKA_SSL_CA_FILE"]).read_text()
    plain_bootstrap = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    assert secure_env["MSGKPI_KAFKA_BOOTSTRAP"] != plain_bootstrap


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_the_scram_user_logs_in_with_either_mechanism(
        secure_env: dict[str, str], mechanism: str) -> None:
    env = {**secure_env, "MSGKPI_KAFKA_SASL_MECHANISM": mechanism}
    await check_credentials(env["MSGKPI_KAFKA_BOOTSTRAP"], KafkaSecurity.from_env(env))


def _conversation() -> bytes:
    at = int(time.time() * 1000) - 120_000
    return orjson.dumps([
        {"event_id": "sec-1", "type": "message", "channel": CHANNEL,
         "conversation_id": "secured", "occurred_at": at, "author": "customer"},
        {"event_id": "sec-2", "type": "message", "channel": CHANNEL,
         "conversation_id": "secured", "occurred_at": at + 45_000, "author": "agent",
         "agent_id": "bo"},
    ])


async def _min_insync(env: dict[str, str], topics: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=env["MSGKPI_KAFKA_BOOTSTRAP"],
                                **KafkaSecurity.from_env(env).aiokafka_options())
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics])
    finally:
        await admin.close()
    found = {}
    for response in described:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "min.insync.replicas":
                    found[resource[3]] = entry[1]
    return found


def test_gateway_and_worker_end_to_end_over_sasl_ssl(
        secure_env: dict[str, str], tmp_path: Path) -> None:
    deployment = Deployment(secure_env["MSGKPI_KAFKA_BOOTSTRAP"], extra_env={
        **secure_env, "MSGKPI_REPLICATION_FACTOR": "1", "MSGKPI_MIN_INSYNC_REPLICAS": "1"})
    gateway = Service(deployment, "gateway", free_port(), tmp_path)
    worker = Service(deployment, "worker", free_port(), tmp_path)
    try:
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        status, body = http_post(gateway.url + "/webhooks/canonical", _conversation())
        assert status == 200, body
        wait_until(lambda: worker.sample("msgkpi_first_response_seconds_count",
                                         channel=CHANNEL, responder="agent") == 1,
                   90, what="the first response, processed over SASL_SSL")
        assert worker.sample("msgkpi_first_response_seconds_sum", channel=CHANNEL,
                             responder="agent") == 45.0
    finally:
        gateway.stop()
        worker.stop()
    prefix = deployment.env()["MSGKPI_TOPIC_PREFIX"]
    app_id = deployment.env()["MSGKPI_APP_ID"]
    topics = [f"{prefix}.events", f"{app_id}-conversations-changelog", f"{app_id}-facts"]
    configs = asyncio.run(_min_insync(secure_env, topics))
    assert configs == dict.fromkeys(topics, "1"), configs


def _with_wrong_password(secure_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **secure_env, "MSGKPI_KAFKA_SASL_PASSWORD": "not-the-password",
           "MSGKPI_TOPIC_PREFIX": "msgkpi-test-wrong-password",
           "MSGKPI_GATEWAY_PORT": str(free_port()), "MSGKPI_WORKER_PORT": str(free_port())}
    env.pop("MSGKPI_KAFKA_SASL_PASSWORD_FILE")
    return env


@pytest.mark.parametrize(("command", "status", "lines"), [
    (["worker"], EXIT_KAFKA_AUTH, 1),
    (["gateway"], EXIT_KAFKA_AUTH, 1),
    (["replay", "--no-progress", "EVENTS"], 1, 3),  # + what it would write, and its summary
])
def test_a_wrong_password_stops_with_one_line_naming_user_and_bootstrap(
        secure_env: dict[str, str], tmp_path: Path, command: list[str], status: int,
        lines: int) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in orjson.loads(_conversation())))
    args = [str(events) if arg == "EVENTS" else arg for arg in command]
    result = subprocess.run([str(MSGKPI), *args], env=_with_wrong_password(secure_env),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == status, result.stderr[-3000:]
    bootstrap = secure_env["MSGKPI_KAFKA_BOOTSTRAP"]
    cause = [line for line in result.stderr.splitlines()
             if f"authentication failed for user 'msgkpi' at bootstrap {bootstrap}" in line]
    assert len(cause) == 1, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == lines, result.stderr[-3000:]
    assert "invalid credentials" in cause[0]
    assert "Traceback" not in result.stderr
    assert "not-the-password" not in result.stderr


def test_an_untrusted_broker_certificate_stops_the_worker_with_one_line(
        secure_env: dict[str, str]) -> None:
    env = {**os.environ, **secure_env, "MSGKPI_WORKER_PORT": str(free_port())}
    env.pop("MSGKPI_KAFKA_SSL_CA_FILE")  # the system's CAs do not know the throwaway CA
    result = subprocess.run([str(MSGKPI), "worker"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == EXIT_KAFKA_AUTH, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"msgkpi worker: TLS handshake with Kafka at bootstrap "
        f"{secure_env['MSGKPI_KAFKA_BOOTSTRAP']} failed: CERTIFICATE_VERIFY_FAILED (check "
        "MSGKPI_KAFKA_SSL_CA_FILE and the broker's certificate)"]
