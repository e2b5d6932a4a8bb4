"""Smoke test of the real Kafka broker started by ``deploy/kafka/kafka.sh start``.

Checks what the engine relies on, with aiokafka against the broker version we pin
(Kafka 4.x removed old protocol versions, KIP-896): explicit topic creation, idempotent
produce, transactions (commit and abort), a read_committed consumer that joins a group
and commits offsets, and offsets committed inside a transaction (exactly-once style).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code
from aiokafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
PARTITIONS = 3
TIMEOUT_S = 60


def _check_topic_errors(response: object, field: str = "topic_errors") -> None:
    for entry in getattr(response, field):
        topic, code = entry[0], entry[1]
        if code:
            message = entry[2] if len(entry) > 2 else ""
            raise for_code(code)(f"{topic}: {message}")


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="msgkpi-test-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def topic(admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    name = f"msgkpi-test-broker-{uuid.uuid4().hex[:12]}"
    response = await admin.create_topics(
        [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=10_000
    )
    _check_topic_errors(response)
    # CreateTopics answers before every broker's metadata has the topic (a KRaft node too,
    # when it is busy): wait until it is described like a topic in use would be.
    async with asyncio.timeout(TIMEOUT_S):
        while (await admin.describe_topics([name]))[0]["error_code"] != 0:
            await asyncio.sleep(0.1)
    try:
        yield name
    finally:
        response = await admin.delete_topics([name], timeout_ms=10_000)
        _check_topic_errors(response, "topic_error_codes")


def _value(kind: str, partition: int, i: int) -> bytes:
    return f"{kind}-p{partition}-{i}".encode()


async def _consume_to_end(consumer: AIOKafkaConsumer, topic: str) -> dict[int, list[bytes]]:
    """Read every partition up to its end offset (the LSO under read_committed)."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)  # drives the group join
    assert consumer.assignment() == set(tps)
    end = await consumer.end_offsets(tps)
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            got[tp.partition].extend(r.value for r in records)
        if all([await consumer.position(tp) >= end[tp] for tp in tps]):
            return got


async def test_broker_topics_idempotence_transactions_and_groups(
    admin: AIOKafkaAdminClient, topic: str
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        # The topic exists with the partition count we asked for.
        (meta,) = await admin.describe_topics([topic])
        assert meta["error_code"] == 0
        assert len(meta["partitions"]) == PARTITIONS

        expected: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        aborted: set[bytes] = set()

        # 1. Idempotent producer.
        producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for i in range(3):
                for p in range(PARTITIONS):
                    await producer.send_and_wait(topic, _value("idem", p, i), partition=p)
                    expected[p].append(_value("idem", p, i))
        finally:
            await producer.stop()

        # 2. Transactional producer: commit, abort, commit again (after the abort marker).
        txn = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, transactional_id=f"msgkpi-test-txn-{uuid.uuid4().hex}"
        )
        await txn.start()
        try:
            async with txn.transaction():
                for p in range(PARTITIONS):
                    await txn.send(topic, _value("commit1", p, 0), partition=p)
                    expected[p].append(_value("commit1", p, 0))

            await txn.begin_transaction()
            for p in range(PARTITIONS):
                await txn.send(topic, _value("aborted", p, 0), partition=p)
                aborted.add(_value("aborted", p, 0))
            await txn.flush()
            await txn.abort_transaction()

            async with txn.transaction():
                for p in range(PARTITIONS):
                    await txn.send(topic, _value("commit2", p, 0), partition=p)
                    expected[p].append(_value("commit2", p, 0))
        finally:
            await txn.stop()

        # 3. read_committed consumer in a group: exactly the committed records, in order.
        group = f"msgkpi-test-group-{uuid.uuid4().hex[:12]}"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=BOOTSTRAP,
            group_id=group,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        await consumer.start()
        try:
            got = await _consume_to_end(consumer, topic)
            assert got == expected
            assert not aborted & {v for values in got.values() for v in values}

            # Group offset commit and fetch.
            await consumer.commit()
            for p in range(PARTITIONS):
                tp = TopicPartition(topic, p)
                assert await consumer.committed(tp) == await consumer.position(tp)
        finally:
            await consumer.stop()

        # 4. Offsets committed inside a transaction (consume-transform-produce).
        eos_group = f"msgkpi-test-eos-{uuid.uuid4().hex[:12]}"
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(1, "") for p in range(PARTITIONS)}
        txn = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, transactional_id=f"msgkpi-test-eos-{uuid.uuid4().hex}"
        )
        await txn.start()
        try:
            async with txn.transaction():
                await txn.send(topic, b"eos", partition=0)
                await txn.send_offsets_to_transaction(offsets, eos_group)
        finally:
            await txn.stop()
        # The coordinator writes the commit markers asynchronously after EndTxn returns,
        # so the offsets become visible to OffsetFetch shortly afterwards.
        want = {tp: 1 for tp in offsets}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            committed = await admin.list_consumer_group_offsets(eos_group)
            seen = {tp: om.offset for tp, om in committed.items()}
            if seen == want or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert seen == want


def _accepts_connections(port: int) -> bool:
    host = BOOTSTRAP.split(",")[0].rsplit(":", 1)[0]
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_controller_listener_leaves_alertmanagers_port_free() -> None:
    """The KRaft controller listens on port + 100 (or MSGKPI_KAFKA_CONTROLLER_PORT), so
    Alertmanager's default 9093 (the broker's 9092 + 1) stays free beside ``make up``."""
    port = int(BOOTSTRAP.split(",")[0].rsplit(":", 1)[1])
    controller = int(os.environ.get("MSGKPI_KAFKA_CONTROLLER_PORT", port + 100))
    assert _accepts_connections(controller), f"no controller listener on {controller}"
    assert not _accepts_connections(port + 1), f"port {port + 1} is taken beside the broker"
