"""The gateway against the real broker (deploy/kafka/kafka.sh start): events posted over HTTP
are in Kafka, keyed and partitioned by conversation; Kafka down or a topic missing gives 503.

Each test uses its own topic names, created with `ensure_topics`, and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import test_utils
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from processor.channels.canonical import CanonicalAdapter
from processor.config import Settings, Topics
from processor.events import event_from_dict
from processor.gateway.app import create_app
from processor.gateway.sink import KafkaEventSink
from processor.topics import (
    TopicsUnavailable,
    ensure_settings_topics,
    ensure_topics,
    facts_topic,
    topic_specs,
)

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TIMEOUT_S = 60


def unique_topics() -> Topics:
    tag = uuid.uuid4().hex[:10]
    return Topics(
        events=f"msgkpi-test-gw-{tag}.events",
        kpi=f"msgkpi-test-gw-{tag}.kpi",
        sla=f"msgkpi-test-gw-{tag}.sla",
        dlq=f"msgkpi-test-gw-{tag}.dlq",
        events_partitions=6,
    )


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="msgkpi-test-gw-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def topics(admin: AIOKafkaAdminClient) -> AsyncIterator[Topics]:
    """Fresh topic names; created by the test (or not), always deleted afterwards."""
    names = unique_topics()
    yield names
    existing = set(await admin.list_topics())
    doomed = [s.name for s in topic_specs(names) if s.name in existing]
    if doomed:
        await admin.delete_topics(doomed, timeout_ms=10_000)


async def gateway(settings: Settings) -> test_utils.TestClient[Any, Any]:
    app = create_app(
        settings,
        KafkaEventSink.from_settings(settings),
        {"canonical": CanonicalAdapter()},
        CollectorRegistry(),
    )
    client = test_utils.TestClient(test_utils.TestServer(app))
    await client.start_server()
    return client


def event(i: int, conversation: str) -> dict[str, Any]:
    return {
        "event_id": f"evt-{i}",
        "type": "message",
        "channel": "whatsapp",
        "conversation_id": conversation,
        "occurred_at": f"2026-03-01T10:{i // 60:02d}:{i % 60:02d}+01:00",
        "author": "customer" if i % 2 else "agent",
        "agent_id": "agent-1",
    }


async def read_all(topic: str, partitions: int) -> list[tuple[int, bytes, bytes]]:
    """Every committed record of `topic`: (partition, key, value), in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[tuple[int, bytes, bytes]] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batches = await consumer.getmany(timeout_ms=500)
            for tp, batch in batches.items():
                records.extend((tp.partition, r.key, r.value) for r in batch)
        return records
    finally:
        await consumer.stop()


async def test_ensure_topics_creates_all_with_their_partitions_once(
    admin: AIOKafkaAdminClient, topics: Topics
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        specs = topic_specs(topics)
        assert await ensure_topics(BOOTSTRAP, topics, timeout_s=30) == [s.name for s in specs]
        assert await ensure_topics(BOOTSTRAP, topics, timeout_s=30) == []  # idempotent
        described = await admin.describe_topics([s.name for s in specs])
        counts = {meta["topic"]: len(meta["partitions"]) for meta in described}
        assert counts == {s.name: s.partitions for s in specs}
        assert counts[topics.events] == 6


async def test_replication_factor_reaches_kafka_which_refuses_more_than_it_has_brokers(
    admin: AIOKafkaAdminClient, topics: Topics
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(TopicsUnavailable, match=r"(?i)replication factor"):
            await ensure_topics(BOOTSTRAP, topics, timeout_s=30, replication_factor=2)
        assert await ensure_topics(BOOTSTRAP, topics, timeout_s=30, replication_factor=1,
                                   topic_configs={"min.insync.replicas": "1"})
        described = await admin.describe_topics([topics.events])
        assert len(described[0]["partitions"][0]["replicas"]) == 1


async def test_posted_events_are_in_kafka_keyed_and_partitioned_by_conversation(
    topics: Topics,
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await ensure_topics(BOOTSTRAP, topics, timeout_s=30)
        settings = Settings(kafka_bootstrap=BOOTSTRAP, topics=topics, produce_timeout_s=10)
        conversations = [f"conv-{c}" for c in range(8)]
        sent = [event(i, conversations[i % 8]) for i in range(40)]
        client = await gateway(settings)
        try:
            # Ready once every new partition's leader serves it (a moment after creation).
            while (await client.get("/readyz")).status != 200:
                await asyncio.sleep(0.1)
            for chunk in (sent[:30], sent[30:39], sent[39]):  # two arrays, then one event
                response = await client.post("/webhooks/canonical", data=orjson.dumps(chunk))
                assert response.status == 200, await response.text()
            metrics = await (await client.get("/metrics")).text()
            assert 'msgkpi_gateway_events_total{channel="canonical"} 40.0' in metrics
        finally:
            await client.close()

        records = await read_all(topics.events, topics.events_partitions)
        expected = [event_from_dict(e) for e in sent]
        assert len(records) == len(expected)
        assert sorted(v for _, _, v in records) == sorted(e.to_json() for e in expected)
        partitioner = DefaultPartitioner()
        partition_of: dict[bytes, int] = {}
        for partition, key, value in records:
            assert key == orjson.loads(value)["conversation_id"].encode()
            assert partition_of.setdefault(key, partition) == partition  # one partition per key
            assert partition == partitioner(key, list(range(6)), list(range(6)))
        for conversation in conversations:  # each conversation's events in the order sent
            got = [v for _, k, v in records if k == conversation.encode()]
            assert got == [e.to_json() for e in expected if e.conversation_id == conversation]


async def test_kafka_down_gives_503_within_the_produce_timeout() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", topics=unique_topics(),
                        produce_timeout_s=2.0)
    async with asyncio.timeout(TIMEOUT_S):
        client = await gateway(settings)
        try:
            started = time.monotonic()
            response = await client.post(
                "/webhooks/canonical", data=orjson.dumps(event(1, "conv-1"))
            )
            elapsed = time.monotonic() - started
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert elapsed < 2.0 + 1.0
            assert (await client.get("/readyz")).status == 503
            assert (await client.get("/healthz")).status == 200
        finally:
            await client.close()


async def test_missing_topic_is_503_then_recovers_once_created(topics: Topics) -> None:
    settings = Settings(kafka_bootstrap=BOOTSTRAP, topics=topics, produce_timeout_s=2.0)
    async with asyncio.timeout(TIMEOUT_S):
        client = await gateway(settings)
        try:
            body = orjson.dumps(event(1, "conv-1"))
            assert (await client.get("/readyz")).status == 503  # connected, topic missing
            started = time.monotonic()
            assert (await client.post("/webhooks/canonical", data=body)).status == 503
            assert time.monotonic() - started < 2.0 + 1.0

            await ensure_topics(BOOTSTRAP, topics, timeout_s=30)
            while (await client.get("/readyz")).status != 200:
                await asyncio.sleep(0.2)
            response = await client.post("/webhooks/canonical", data=body)
            assert response.status == 200, await response.text()
        finally:
            await client.close()
        records = await read_all(topics.events, topics.events_partitions)
        assert [v for _, _, v in records] == [event_from_dict(event(1, "conv-1")).to_json()]


async def test_ready_on_a_new_topic_means_every_partition_takes_a_write_at_once(
    admin: AIOKafkaAdminClient, caplog: pytest.LogCaptureFixture,
) -> None:
    """A topic is listed with partitions a moment before its leaders serve them; a gateway
    that said ready then answered its first event with a 503 after 10 s on a brand-new broker
    (#10 item 3). Ready must mean that a write to every partition is taken without a
    NOT_LEADER retry. Several fresh topics, each polled for readiness while it is created."""
    partitioner = DefaultPartitioner()
    conversations = {partitioner(f"c{i}".encode(), list(range(6)), list(range(6))): f"c{i}"
                     for i in range(200)}
    assert sorted(conversations) == list(range(6))
    caplog.set_level(logging.WARNING, logger="aiokafka.producer.sender")
    for _ in range(4):
        names = unique_topics()
        try:
            async with asyncio.timeout(TIMEOUT_S), KafkaEventSink(
                    BOOTSTRAP, names.events, produce_timeout_s=10) as sink:
                creating = asyncio.create_task(ensure_topics(BOOTSTRAP, names, timeout_s=30))
                while not await sink.ready():
                    await asyncio.sleep(0.005)
                started = time.monotonic()
                await sink.send([event_from_dict(event(p, conversation))
                                 for p, conversation in sorted(conversations.items())])
                elapsed = time.monotonic() - started
                await creating
        finally:
            await admin.delete_topics([s.name for s in topic_specs(names)], timeout_ms=10_000)
        retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
        assert retries == []
        assert elapsed < 1.0


async def test_a_worker_creates_its_facts_topic_before_faust_subscribes(
        admin: AIOKafkaAdminClient, topics: Topics) -> None:
    """Faust declared `<app>-facts` a moment before subscribing; under load the subscription
    missed the new topic for good and no window ever got a fact. The worker creates it with
    the other topics now; a gateway does not."""
    app_id = f"msgkpi-test-gw-{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka_bootstrap=BOOTSTRAP, topics=topics, app_id=app_id)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await ensure_settings_topics(settings)
            assert facts_topic(app_id) not in set(await admin.list_topics())
            created = await ensure_settings_topics(settings, worker=True)
            assert created == [facts_topic(app_id)]
            [described] = await admin.describe_topics([facts_topic(app_id)])
            assert len(described["partitions"]) == topics.events_partitions
    finally:
        if facts_topic(app_id) in set(await admin.list_topics()):
            await admin.delete_topics([facts_topic(app_id)], timeout_ms=10_000)
