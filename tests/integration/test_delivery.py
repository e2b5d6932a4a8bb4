"""KafkaRanges on the real broker: the group's committed offset (or the log start when nothing
is committed) and exact offset ranges, the two answers the worker's DeliveryGuard relies on,
also after retention deleted the start of the log."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from processor.worker.delivery import KafkaRanges

pytestmark = pytest.mark.integration


async def _scenario(bootstrap: str) -> None:
    topic, group = f"msgkpi-test-delivery-{uuid.uuid4().hex[:8]}", "msgkpi-test-delivery"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for n in range(10):
        await producer.send_and_wait(topic, f"v{n}".encode(), key=b"k", partition=1)
    await producer.stop()
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                 enable_auto_commit=False)
    await committer.start()
    committer.assign([TopicPartition(topic, 1)])
    await committer.commit({TopicPartition(topic, 1): 6})
    await committer.stop()

    ranges = KafkaRanges(bootstrap, group, topic)
    try:
        assert await ranges.committed(1) == 6
        assert await ranges.committed(0) == 0  # nothing committed: the log start
        middle = await ranges.read(1, 2, 5)
        assert [(r.partition, r.offset, r.value) for r in middle] == [
            (1, 2, b"v2"), (1, 3, b"v3"), (1, 4, b"v4")]
        assert all(r.timestamp_ms and r.timestamp_ms > 1_700_000_000_000 for r in middle)
        assert [r.offset for r in await ranges.read(1, 8, 50)] == [8, 9]  # past the end
        assert await ranges.read(0, 0, 3) == []  # an empty partition
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.delete_records({TopicPartition(topic, 1): RecordsToDelete(3)})
        await admin.close()
        assert [r.offset for r in await ranges.read(1, 0, 5)] == [3, 4]  # from the log start
        fresh = KafkaRanges(bootstrap, "msgkpi-test-delivery-new", topic)
        try:
            assert await fresh.committed(1) == 3  # nothing committed: the new log start
        finally:
            await fresh.close()
    finally:
        await ranges.close()


def test_committed_offsets_and_ranges_come_from_the_broker(kafka_bootstrap: str) -> None:
    asyncio.run(asyncio.wait_for(_scenario(kafka_bootstrap), 60))
