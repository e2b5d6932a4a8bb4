"""The UI's Kafka feed on the real broker: it reads every partition of msgkpi.kpi, msgkpi.sla
and msgkpi.events, is ready once it has read what the topics held at start, and a restarted
feed rebuilds the same view (snapshots, active and ended alerts) from the topics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processor.config import Settings, Topics
from processor.topics import ensure_topics
from processor.ui.alerts import AlertBook
from processor.ui.feed import UiFeed
from processor.ui.view import KpiBoard

pytestmark = pytest.mark.integration

MIN = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def snapshot(channel: str, end: int) -> dict[str, Any]:
    return {"schema": "msgkpi.kpi-snapshot.v1", "channel": channel, "window": "5m",
            "window_start": end - 5 * MIN, "window_end": end, "state": "open",
            "watermark": end - 1, "counts": {"messages.customer": 3}, "times": {}}


def sla_event(conversation: str, period_ms: int) -> dict[str, Any]:
    return {"schema": "msgkpi.sla-event.v1",
            "alert_id": f"{conversation}/1/first_response/at_risk/{period_ms}",
            "kind": "at_risk", "metric": "first_response", "policy": "gold", "cycle": 1,
            "period_ms": period_ms, "start_ms": period_ms, "due_ms": period_ms + 10 * MIN,
            "at_ms": period_ms + 8 * MIN, "detected_at_ms": period_ms + 8 * MIN,
            "channel": "telegram", "conversation_id": conversation, "account_id": None,
            "team": "emea", "priority": None}


def agent_reply(conversation: str, at_ms: int) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": "message", "channel": "telegram",
            "conversation_id": conversation, "occurred_at": at_ms, "author": "agent"}


async def produce(bootstrap: str, records: list[tuple[str, str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


def new_feed(settings: Settings, signals: list[int] | None = None) -> UiFeed:
    """A feed; each call of its alerts_changed appends the number of alerts to `signals`."""
    book = AlertBook()

    def alerts_changed() -> None:
        if signals is not None:
            signals.append(len(book.active("at_risk")))

    return UiFeed(settings, f"{settings.app_id}-ui", KpiBoard(("5m",)), book,
                  kpi_lookback_ms=2 * 3600_000, alerts_changed=alerts_changed, clock_ms=now_ms)


async def test_feed_reads_all_partitions_and_rebuilds_after_a_restart(
    kafka_bootstrap: str,
) -> None:
    tag = f"ui{uuid.uuid4().hex[:8]}"
    topics = Topics.with_prefix(f"msgkpi-test-{tag}", events_partitions=3)
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topics=topics, app_id=tag)
    await ensure_topics(kafka_bootstrap, topics)
    start = now_ms()
    channels = ["whatsapp", "telegram", "line", "chatwoot", "x"]  # keys spread over partitions
    await produce(kafka_bootstrap, [
        *[(topics.kpi, f"{c}|5m|{start}", snapshot(c, start)) for c in channels],
        (topics.sla, "open", sla_event("open", start - 8 * MIN)),
        (topics.sla, "answered", sla_event("answered", start - 8 * MIN)),
    ])

    signals: list[int] = []
    async with new_feed(settings, signals) as feed:
        await asyncio.wait_for(feed.ready.wait(), 60)
        assert signals and signals[-1] == 2  # the alert sender is woken for new alerts
        assert feed.board.channels() == sorted(channels)  # ready: everything held at start
        assert {a.event.conversation_id for a in feed.book.active("at_risk")} == {
            "open", "answered"}
        await produce(kafka_bootstrap, [(topics.events, "answered",
                                         agent_reply("answered", start - MIN))])
        await until(lambda: [a.event.conversation_id for a in feed.book.active("at_risk")]
                    == ["open"], 30, "the reply to end its conversation's alert")
        await until(lambda: signals[-1] == 1, 5, "the sender woken for the ended alert")
        assert feed.skipped == 0

    async with new_feed(settings) as restarted:
        await asyncio.wait_for(restarted.ready.wait(), 60)
        assert restarted.board.channels() == sorted(channels)
        # msgkpi.events is read again from before the oldest active alert: the reply is seen
        await until(lambda: [a.event.conversation_id for a in restarted.book.active("at_risk")]
                    == ["open"], 30, "the rebuilt view")
        ended = [a for a in restarted.book.alerts() if not a.active]
        assert [(a.event.conversation_id, a.ended_by) for a in ended] == [
            ("answered", "answered")]
