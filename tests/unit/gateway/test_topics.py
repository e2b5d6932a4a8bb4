"""Topic layout and ensure_topics' bound when Kafka is unreachable (creation itself is covered
against the real broker in tests/integration/test_gateway_kafka.py)."""

from __future__ import annotations

import time

import pytest

from processor.config import Topics
from processor.topics import TopicSpec, TopicsUnavailable, ensure_topics, topic_specs


def test_every_topic_has_an_explicit_partition_count() -> None:
    specs = topic_specs(Topics(events="e", kpi="k", sla="s", dlq="d", events_partitions=12))
    assert [s.name for s in specs] == ["e", "k", "s", "d"]
    assert specs[0] == TopicSpec("e", 12)
    assert all(s.partitions >= 1 for s in specs)


def test_default_events_topic_has_six_partitions() -> None:
    assert topic_specs(Topics())[0] == TopicSpec("msgkpi.events", 6)


async def test_unreachable_kafka_is_reported_within_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(TopicsUnavailable):
        await ensure_topics("127.0.0.1:1", Topics(), timeout_s=2.0)
    assert time.monotonic() - started < 4.0


async def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        await ensure_topics("127.0.0.1:1", Topics(), timeout_s=0)
