"""KafkaEventSink's failure handling, with fake producers that can refuse to start, never
acknowledge, or hang on stop (the aiokafka behaviours of issues #759 and #1101). The happy path
against the real broker is in tests/integration/test_gateway_kafka.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, NotEnoughReplicasError

from processor.errors import SinkUnavailable
from processor.events import ConversationEvent, event_from_dict
from processor.gateway.sink import EventTooLarge, KafkaEventSink, ProduceFailed
from tests.unit.gateway.conftest import event


@dataclass
class FakeKafka:
    """How the fake producers behave, and what was acknowledged."""

    acked: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    failing_starts: int = 0
    hang_start: bool = False
    ack: bool = True
    ack_error: Exception | None = None
    hang_stop: bool = False

    def producer(self) -> FakeProducer:
        producer = FakeProducer(self)
        self.producers.append(producer)
        return producer


@dataclass
class FakeProducer:
    kafka: FakeKafka
    started: bool = False
    stopped: bool = False
    pending: list[asyncio.Future[Any]] = field(default_factory=list)

    async def start(self) -> None:
        if self.kafka.hang_start:
            await asyncio.Event().wait()
        if self.kafka.failing_starts > 0:
            self.kafka.failing_starts -= 1
            raise KafkaConnectionError("Unable to bootstrap")
        self.started = True

    async def stop(self) -> None:
        if self.kafka.hang_stop:
            await asyncio.Event().wait()
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        assert self.started and not self.stopped, "send on a producer that is not running"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.kafka.ack_error is not None:
            future.set_exception(self.kafka.ack_error)
        elif self.kafka.ack:
            self.kafka.acked.append((topic, key, value))
            future.set_result(None)
        else:
            self.pending.append(future)
        return future


def events(*ids: str, conversation: str = "conv-1") -> list[ConversationEvent]:
    return [event_from_dict(event(event_id=i, conversation_id=conversation)) for i in ids]


def make_sink(kafka: FakeKafka, **options: Any) -> KafkaEventSink:
    options.setdefault("produce_timeout_s", 0.5)
    options.setdefault("connect_timeout_s", 0.3)
    options.setdefault("stop_timeout_s", 0.3)
    return KafkaEventSink("fake:9092", "msgkpi.events", producer_factory=kafka.producer, **options)


async def wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_writes_key_and_value_in_order() -> None:
    kafka = FakeKafka()
    batch = [*events("a", "b"), *events("c", conversation="conv-2"), *events("d")]
    async with make_sink(kafka) as sink:
        await sink.send(batch)
    assert kafka.acked == [("msgkpi.events", e.conversation_id.encode(), e.to_json())
                           for e in batch]
    assert len(kafka.producers) == 1
    assert kafka.producers[0].stopped


async def test_sending_nothing_needs_no_kafka() -> None:
    kafka = FakeKafka(failing_starts=10**6)
    sink = make_sink(kafka)
    await sink.send([])
    assert kafka.producers == []


async def test_unacknowledged_send_times_out_and_the_producer_is_replaced() -> None:
    kafka = FakeKafka(ack=False)
    async with make_sink(kafka, produce_timeout_s=0.3) as sink:
        started = time.monotonic()
        with pytest.raises(ProduceFailed) as caught:
            await sink.send(events("a", "b"))
        assert 0.25 <= time.monotonic() - started < 1.5
        assert caught.value.reason == "timeout"
        assert isinstance(caught.value, SinkUnavailable)

        kafka.ack = True
        await wait_until(lambda: sink.connected and len(kafka.producers) == 2)
        assert kafka.producers[0].stopped
        await sink.send(events("c"))
        assert [k[2] for k in kafka.acked] == [e.to_json() for e in events("c")]
        assert kafka.producers[1].started and not kafka.producers[1].stopped


async def test_concurrent_failures_replace_the_producer_once() -> None:
    kafka = FakeKafka(ack=False)
    async with make_sink(kafka, produce_timeout_s=0.3) as sink:
        results = await asyncio.gather(
            *(sink.send(events(str(i))) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ProduceFailed) for r in results)
        await wait_until(lambda: sink.connected)
        assert len(kafka.producers) == 2


async def test_kafka_error_on_acknowledgement_is_unavailable() -> None:
    kafka = FakeKafka(ack_error=NotEnoughReplicasError())
    async with make_sink(kafka) as sink:
        with pytest.raises(ProduceFailed) as caught:
            await sink.send(events("a"))
        assert caught.value.reason == "kafka_error"
        kafka.ack_error = None
        await wait_until(lambda: sink.connected and len(kafka.producers) == 2)
        await sink.send(events("b"))
    assert len(kafka.acked) == 1


async def test_start_with_kafka_down_returns_and_recovers_in_the_background() -> None:
    kafka = FakeKafka(failing_starts=2)
    sink = make_sink(kafka, produce_timeout_s=5.0)
    started = time.monotonic()
    await sink.start()
    assert time.monotonic() - started < 1.0
    assert not sink.connected
    assert not await sink.ready()
    await sink.send(events("a"))  # waits for the background reconnect (0.5 s + 1 s backoff)
    assert sink.connected and await sink.ready()
    assert len(kafka.producers) == 3
    assert [p.stopped for p in kafka.producers] == [True, True, False]
    await sink.stop()
    assert all(p.stopped for p in kafka.producers)


@pytest.mark.parametrize("hang_start", [False, True])
async def test_send_while_kafka_stays_down_fails_within_the_timeout(hang_start: bool) -> None:
    kafka = FakeKafka(failing_starts=10**6, hang_start=hang_start)
    sink = make_sink(kafka, produce_timeout_s=0.5, connect_timeout_s=0.2)
    async with asyncio.timeout(2):
        await sink.start()
        started = time.monotonic()
        with pytest.raises(ProduceFailed) as caught:
            await sink.send(events("a"))
        assert 0.45 <= time.monotonic() - started < 1.5
        assert caught.value.reason == "not_connected"
        await sink.stop()
    assert kafka.acked == []
    assert all(p.stopped or not p.started for p in kafka.producers)


async def test_a_producer_that_hangs_on_stop_is_abandoned() -> None:
    kafka = FakeKafka()
    sink = make_sink(kafka, stop_timeout_s=0.2)
    await sink.start()
    kafka.hang_stop = True
    async with asyncio.timeout(2):
        await sink.stop()
    assert not sink.connected


async def test_an_event_too_large_for_kafka_writes_nothing() -> None:
    kafka = FakeKafka()
    small = events("a")[0]
    big = event_from_dict(event(event_id="big", pad="x" * 500))
    async with make_sink(kafka, max_event_bytes=400) as sink:
        with pytest.raises(EventTooLarge):
            await sink.send([small, big])
    assert kafka.acked == []


async def test_send_after_stop_is_unavailable_and_no_task_is_left() -> None:
    kafka = FakeKafka(failing_starts=1)
    sink = make_sink(kafka)
    await sink.start()  # fails once, reconnect runs in the background
    await sink.stop()
    with pytest.raises(ProduceFailed) as caught:
        await sink.send(events("a"))
    assert caught.value.reason == "stopped"
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("msgkpi-sink")]
    assert leftover == []


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KafkaEventSink("x:1", "t", produce_timeout_s=0)
