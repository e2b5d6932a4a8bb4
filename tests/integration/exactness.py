"""Shared pieces of the exactness tests: a realistic event log with duplicates and bounded
reordering, a fast idempotent loader, and a committed read of the KPI topic."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processor.events import ConversationEvent
from processor.traffic.scenario import Scenario, generate_events
from tests.oracle.windowed import SlaTargets

WINDOWS = {"5m": 300_000, "1h": 3_600_000}
GRACE_S = 300
REOPEN_WINDOW_S = 900
POLICY_FILE = Path(__file__).with_name("exactness-policies.yaml")
SLA: SlaTargets = {
    "whatsapp": ("chat-fast", {"first_response": 120, "next_reply": 300, "resolution": 1800}),
    "telegram": ("chat-fast", {"first_response": 120, "next_reply": 300, "resolution": 1800}),
    "messenger": ("social-replies", {"next_reply": 180}),
    "instagram": ("social-replies", {"next_reply": 180}),
}
"""The oracle's view of POLICY_FILE."""
ENV = {
    "MSGKPI_WINDOWS": ",".join(WINDOWS),
    "MSGKPI_GRACE_S": str(GRACE_S),
    "MSGKPI_SNAPSHOT_INTERVAL_S": "1",
    "MSGKPI_BATCH_MAX": "200",
    "MSGKPI_REOPEN_WINDOW_S": str(REOPEN_WINDOW_S),
    "MSGKPI_CONFIG": str(POLICY_FILE),
}
"""Worker settings of the exactness and replay tests: small windows, a 5-minute grace,
snapshots every second (so closed windows appear within seconds), a 15-minute reopen window
(so FCR is decided inside the log's two hours) and SLA policies (attainment in the windows)."""


def event_log(count: int, seed: int, span_s: float = 7200.0) -> list[ConversationEvent]:
    """`count` simulator events spread over `span_s` of event time, ending 30 minutes ago."""
    rate = count / span_s / 6
    start_ms = int(time.time() * 1000) - int((span_s + 1800) * 1000)
    scenario = Scenario(seed=seed, start_ms=start_ms, run_id=f"x{seed}",
                        conversations_per_s=rate)
    events = []
    for scheduled in generate_events(scenario):
        events.append(scheduled.event)
        if len(events) == count:
            break
    return events


def deliveries(events: list[ConversationEvent], seed: int, max_shift_s: float,
               duplicate_share: float) -> list[ConversationEvent]:
    """Delivery order: each event moved by up to `max_shift_s` of event time (so never later
    than the grace period), plus duplicates delivered again a little later."""
    rng = random.Random(seed)
    keyed = [(e.occurred_at_ms + rng.uniform(0, max_shift_s * 1000), i, e)
             for i, e in enumerate(events)]
    keyed += [(e.occurred_at_ms + rng.uniform(0, max_shift_s * 1000), len(events) + i, e)
              for i, e in enumerate(events) if rng.random() < duplicate_share]
    return [e for _, _, e in sorted(keyed)]


async def produce(bootstrap: str, topic: str, events: Iterable[ConversationEvent]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=10)
    await producer.start()
    try:
        pending = [await producer.send(topic, e.to_json(), key=e.conversation_id.encode())
                   for e in events]
        await asyncio.gather(*pending)
        return len(pending)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, partitions_count: int) -> list[tuple[bytes, Any]]:
    """Every committed record of `topic` up to its end offsets at the time of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[tuple[bytes, Any]] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(*partitions, timeout_ms=1000, max_records=10_000)
            for tp, items in batch.items():
                records.extend((r.key, orjson.loads(r.value)) for r in items
                               if r.offset < ends[tp])
        return records
    finally:
        await consumer.stop()


def closed_snapshots(records: list[tuple[bytes, Any]]) -> dict[tuple[str, str, int], Any]:
    """Closed snapshots by (channel, window, end). A window emitted closed more than once
    (allowed: at least once) must be identical each time; a differing repeat is kept under
    the key ("conflict", channel, window, end) so the comparison reports it."""
    closed: dict[tuple[Any, ...], Any] = {}
    for _, snapshot in records:
        if snapshot["state"] != "closed":
            continue
        key = (snapshot["channel"], snapshot["window"], snapshot["window_end"])
        if key in closed and closed[key] != snapshot:
            closed[("conflict", *key)] = snapshot
        closed.setdefault(key, snapshot)
    return closed
