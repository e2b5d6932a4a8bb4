"""Idle conversations expire on the real broker: the worker drops a conversation resolved more
than 8 days (event time) before its partition's newest event, writes a tombstone to the
conversation changelog, and a restarted worker does not bring it back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.config import Topics
from processor.events import event_from_dict
from processor.topics import ensure_topics
from tests.integration.exactness import produce
from tests.integration.services import Deployment, Service, free_port, wait_until

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def changelog_values(bootstrap: str, topic: str, key: bytes) -> list[bytes | None]:
    """Every value written for `key` to the changelog, in order (None: a tombstone)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()  # topic created after start
            partitions = [TopicPartition(topic, p)
                          for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes | None] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
            for items in batch.values():
                values.extend(r.value for r in items if r.key == key)
        return values
    finally:
        await consumer.stop()


def _event(event_id: str, conversation: str, at_ms: int, **fields: object) -> object:
    return event_from_dict({"event_id": event_id, "type": "message", "channel": "telegram",
                            "conversation_id": conversation, "occurred_at": at_ms, **fields})


def test_idle_conversation_is_expired_with_a_tombstone_and_stays_gone(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, extra_env={"MSGKPI_EVENTS_PARTITIONS": "1"})
    topics = Topics.with_prefix(f"msgkpi-test-{deployment.tag}", 1)
    asyncio.run(ensure_topics(kafka_bootstrap, topics))
    now = int(time.time() * 1000)
    old = now - 9 * DAY_MS
    events = [
        _event("q", "idle", old, author="customer"),
        event_from_dict({"event_id": "done", "type": "resolved", "channel": "telegram",
                         "conversation_id": "idle", "occurred_at": old + 1000}),
        _event("w", "waiting", old, author="customer"),  # open: never expires
        _event("fresh", "busy", now, author="customer"),
    ]
    asyncio.run(produce(kafka_bootstrap, topics.events, events))  # type: ignore[arg-type]
    changelog = f"msgkpi-test-{deployment.tag}-conversations-changelog"
    port = free_port()
    worker = Service(deployment, "worker", port, tmp_path)
    try:
        wait_until(lambda: worker.sample("msgkpi_worker_conversations_expired_total") >= 1, 120,
                   what="the idle conversation expired")
        assert worker.sample("msgkpi_worker_conversations_expired_total") == 1
        wait_until(lambda: asyncio.run(changelog_values(kafka_bootstrap, changelog, b"idle"))
                   [-1:] == [None], 60, what="a tombstone in the changelog")
        assert asyncio.run(changelog_values(kafka_bootstrap, changelog, b"waiting"))[-1]
    finally:
        worker.stop()
    restarted = Service(deployment, "worker", port, tmp_path, name="worker-restarted")
    try:
        restarted.wait_http("/metrics")
        wait_until(lambda: restarted.sample("msgkpi_awaiting_reply", channel="telegram") == 2,
                   120, what="the restored table (two conversations waiting)")
        # Its first message delivered again: a restored conversation would drop it as a
        # duplicate; the expired one has forgotten it, so it opens a cycle.
        asyncio.run(produce(kafka_bootstrap, topics.events, events[:1]))  # type: ignore[arg-type]
        wait_until(lambda: restarted.sample("msgkpi_worker_events_total") >= 1, 60,
                   what="the redelivery processed")
        assert restarted.sample("msgkpi_worker_duplicates_total") == 0
        assert restarted.sample("msgkpi_cycles_total", channel="telegram", event="opened") == 1
    finally:
        restarted.stop()
