"""Exactness on the real broker: the KPI snapshots of closed windows equal the oracle's
computation over the same event log, with duplicates and reordering in the input,
(0) with one worker, as a baseline,
(a) with one worker killed with SIGKILL twice mid-stream and restarted, and
(b) with two workers sharing the partitions, one joining mid-stream (a rebalance); afterwards
each channel's window gauges come from exactly one worker."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from processor.config import Topics
from processor.topics import KPI_PARTITIONS, ensure_topics
from tests.integration.exactness import (
    ENV,
    GRACE_S,
    REOPEN_WINDOW_S,
    SLA,
    WINDOWS,
    closed_snapshots,
    deliveries,
    event_log,
    produce,
    read_all,
)
from tests.integration.services import Deployment, Service, free_port, wait_until
from tests.oracle.windowed import assert_snapshots_equal_oracle, expected_windows

pytestmark = pytest.mark.integration


def load(deployment: Deployment, seed: int, count: int) -> tuple[list[Any], int]:
    events = event_log(count, seed)
    delivered = deliveries(events, seed, max_shift_s=GRACE_S / 3, duplicate_share=0.05)
    topics = Topics.with_prefix(f"msgkpi-test-{deployment.tag}")
    asyncio.run(ensure_topics(deployment.bootstrap, topics))
    asyncio.run(produce(deployment.bootstrap, topics.events, delivered))
    return events, len(delivered)


def settled(workers: list[Service], total: int, expected: dict[Any, Any],
            deployment: Deployment) -> dict[tuple[str, str, int], Any]:
    """Wait until every record is processed and every expected window was emitted closed."""
    topic = f"msgkpi-test-{deployment.tag}.kpi"
    wait_until(lambda: sum(w.sample("msgkpi_worker_events_total") for w in workers) >= total,
               240, what="all events processed")
    found: dict[tuple[str, str, int], Any] = {}

    def all_closed() -> bool:
        found.clear()
        records = asyncio.run(read_all(deployment.bootstrap, topic, KPI_PARTITIONS))
        found.update(closed_snapshots(records))
        return set(expected) <= set(found)

    with contextlib.suppress(AssertionError):  # the comparison below says what is missing
        wait_until(all_closed, 180, interval_s=2, what="every expected window closed")
    return found


def test_one_worker_gives_the_oracle_windows(kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env=ENV)
    events, total = load(deployment, seed=10, count=1500)
    expected = expected_windows(events, WINDOWS, GRACE_S * 1000, REOPEN_WINDOW_S * 1000, SLA)
    worker = Service(deployment, "worker", free_port(), tmp_path)
    try:
        closed = settled([worker], total, expected, deployment)
        assert_snapshots_equal_oracle(closed, expected)
        lag = {dict(labels)["partition"]: value for (name, labels), value
               in worker.metrics().items() if name == "msgkpi_worker_consumer_lag"}
        assert lag == {str(p): 0 for p in range(6)}, lag  # every record processed
    finally:
        worker.stop()


def test_sigkill_twice_mid_stream_gives_the_oracle_windows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env=ENV)
    events, total = load(deployment, seed=11, count=4000)
    expected = expected_windows(events, WINDOWS, GRACE_S * 1000, REOPEN_WINDOW_S * 1000, SLA)
    port = free_port()
    processed_before_crash = 0.0
    for attempt in (1, 2):
        worker = Service(deployment, "worker", port, tmp_path, name=f"worker-{attempt}")
        wait_until(lambda w=worker: w.sample("msgkpi_worker_events_total") >= total // 3,
                   240, interval_s=0.05, what="progress before the kill")
        processed_before_crash += worker.sample("msgkpi_worker_events_total")
        worker.kill()
    worker = Service(deployment, "worker", port, tmp_path, name="worker-final")
    try:
        wait_until(lambda: worker.sample("msgkpi_worker_events_total") > 0, 120,
                   what="restarted worker processing")
        closed = settled([worker], 0, expected, deployment)
        progress = {k: v for k, v in worker.metrics().items()
                    if k[0] in ("msgkpi_window_source_newest_seconds",
                                "msgkpi_worker_consumer_lag")}
        assert set(expected) <= set(closed), f"progress: {progress}"
        assert_snapshots_equal_oracle(closed, expected)
        assert processed_before_crash > 0
    finally:
        worker.stop()


def test_two_workers_with_a_rebalance_give_the_oracle_windows_and_disjoint_gauges(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env=ENV)
    events, total = load(deployment, seed=12, count=3000)
    expected = expected_windows(events, WINDOWS, GRACE_S * 1000, REOPEN_WINDOW_S * 1000, SLA)
    first = Service(deployment, "worker", free_port(), tmp_path, name="worker-a")
    second: Service | None = None
    try:
        wait_until(lambda: first.sample("msgkpi_worker_events_total") > total / 4, 240,
                   interval_s=0.05, what="first worker under way")
        second = Service(deployment, "worker", free_port(), tmp_path, name="worker-b")
        workers = [first, second]
        closed = settled(workers, total, expected, deployment)
        assert_snapshots_equal_oracle(closed, expected)

        def gauge_channels(worker: Service) -> set[str]:
            return {dict(labels)["channel"] for (name, labels) in worker.metrics()
                    if name == "msgkpi_window_messages"}

        def disjoint_and_complete() -> bool:
            a, b = gauge_channels(first), gauge_channels(second)
            return not (a & b) and (a | b) == {e.channel for e in events} and bool(a and b)

        wait_until(disjoint_and_complete, 60, interval_s=1,
                   what="each channel's window gauges on exactly one worker")
    finally:
        if second is not None:
            second.stop()
        first.stop()
