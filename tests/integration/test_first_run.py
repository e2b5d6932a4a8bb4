"""What a newcomer meets first: brand-new topics and group, one conversation, a restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.services import (
    MSGKPI,
    Deployment,
    Service,
    free_port,
    http_get,
    http_post,
    wait_until,
)

pytestmark = pytest.mark.integration

CHANNEL = "telegram"


def one_conversation() -> bytes:
    customer_at = int(time.time() * 1000) - 180_000
    return orjson.dumps([
        {"event_id": "first-1", "type": "message", "channel": CHANNEL,
         "conversation_id": "first-run", "occurred_at": customer_at, "author": "customer"},
        {"event_id": "first-2", "type": "message", "channel": CHANNEL,
         "conversation_id": "first-run", "occurred_at": customer_at + 30_000,
         "author": "agent", "agent_id": "ana"},
    ])


def window_series(worker: Service) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    return [key for key in worker.metrics()
            if key[0] == "msgkpi_window_first_response_seconds"
            and ("channel", CHANNEL) in key[1]]


def lag_by_partition(worker: Service) -> dict[str, float]:
    return {dict(labels)["partition"]: value for (name, labels), value in worker.metrics().items()
            if name == "msgkpi_worker_consumer_lag"}


def test_one_conversation_on_new_topics_gets_window_kpis_and_no_lag_after_restart(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env={"MSGKPI_SNAPSHOT_INTERVAL_S": "1"})
    gateway = Service(deployment, "gateway", free_port(), tmp_path)
    port = free_port()
    worker = Service(deployment, "worker", port, tmp_path)
    try:
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        status, body = http_post(gateway.url + "/webhooks/canonical", one_conversation())
        assert status == 200, body
        wait_until(lambda: worker.sample("msgkpi_first_response_seconds_count",
                                         channel=CHANNEL, responder="agent") == 1,
                   60, what="the first response on /metrics")
        # Five of the six events partitions never receive a record; the windows must not
        # wait for them.
        wait_until(lambda: len(window_series(worker)) > 0, 60,
                   what=f"msgkpi_window_first_response_seconds for {CHANNEL}")
        assert worker.sample("msgkpi_window_first_response_seconds", channel=CHANNEL,
                             window="1h", stat="avg") == 30.0
        # Both events and facts came through the batch seam (faust_seams), not Faust streams.
        events_topic = f"msgkpi-test-{deployment.tag}.events"
        assert worker.sample("msgkpi_worker_batched_records_total", topic=events_topic) >= 2
        assert worker.sample("msgkpi_worker_batches_total",
                             topic=f"msgkpi-test-{deployment.tag}-facts") >= 1
        wait_until(lambda: len(lag_by_partition(worker)) == 6
                   and set(lag_by_partition(worker).values()) == {0.0}, 30,
                   what="consumer lag 0 on all six partitions")
        time.sleep(3)  # past a commit (1 s interval)
        worker.stop()

        worker = Service(deployment, "worker", port, tmp_path, name="worker-again")
        worker.wait_http("/metrics")
        wait_until(lambda: len(lag_by_partition(worker)) == 6, 60,
                   what="lag reported for all six partitions after the restart")
        # Idle and caught up: nothing new was posted, so no partition is behind, including
        # the one whose two records were processed (and committed) before the restart.
        time.sleep(3)
        assert lag_by_partition(worker) == {str(p): 0.0 for p in range(6)}, worker.log_tail()
        assert http_get(worker.url + "/healthz")[0] == 200
        # Nothing but the metrics and health pages: Faust's views would show table contents.
        for path in ("/", "/router/", "/table/conversations/first-run/", "/graph/",
                     "/stats/", "/performance/"):
            assert http_get(worker.url + path)[0] == 404, path
    finally:
        worker.stop()
        gateway.stop()


def test_a_worker_without_a_broker_says_so_in_one_line(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    result = subprocess.run(
        [str(MSGKPI), "worker"], capture_output=True, text=True, timeout=120,
        env={**Deployment(f"127.0.0.1:{closed}").env(),
             "MSGKPI_WORKER_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 69, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{closed}" in lines[0] and "Kafka" in lines[0]


@pytest.mark.parametrize(("level", "info_lines"), [("warning", False), ("info", True)])
def test_the_gateway_logs_at_msgkpi_log_level(kafka_bootstrap: str, tmp_path: Path,
                                              level: str, info_lines: bool) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env={"MSGKPI_LOG_LEVEL": level})
    gateway = Service(deployment, "gateway", free_port(), tmp_path)
    try:
        gateway.wait_http("/readyz")
    finally:
        gateway.stop()
    assert (" INFO " in gateway.log_path.read_text()) is info_lines
