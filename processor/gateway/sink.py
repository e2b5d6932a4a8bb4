"""Where accepted events go: Kafka, through an idempotent aiokafka producer (acks=all).

aiokafka can hang forever while Kafka is down (issues #1101 and #759), so every send is bounded
by our own timeout, a failed producer is replaced in the background, and a send never waits on
a producer that has not started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Any, Final, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest

from processor.config import Settings
from processor.errors import MsgkpiError, SinkUnavailable
from processor.events import ConversationEvent
from processor.kafka_security import KafkaSecurity

__all__ = [
    "MAX_EVENT_BYTES",
    "EventSink",
    "EventTooLarge",
    "KafkaEventSink",
    "ProduceFailed",
    "Producer",
]

log = logging.getLogger(__name__)

MAX_EVENT_BYTES: Final = 1_000_000
"""Below Kafka's default message.max.bytes (1,048,588) and aiokafka's max_request_size."""
_BACKOFF_FIRST_S: Final = 0.5
_BACKOFF_MAX_S: Final = 5.0
_LATEST_OFFSET: Final = -1
"""ListOffsets timestamp meaning the end of the partition."""


class EventSink(Protocol):
    """What the gateway needs from the place events are written to."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, events: Sequence[ConversationEvent]) -> None:
        """Return only once every event is durable; raise `SinkUnavailable` otherwise."""
        ...

    async def ready(self) -> bool:
        """True when a write now would likely succeed (answers within about 2 s)."""
        ...


class ProduceFailed(SinkUnavailable):
    """A write was not acknowledged; `reason` is a metric label (timeout, kafka_error,
    not_connected, stopped)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EventTooLarge(MsgkpiError):
    """One event is larger than Kafka accepts; nothing of the request was written."""

    def __init__(self, event_id: str, size: int, limit: int) -> None:
        super().__init__(f"event {event_id!r} is {size} bytes, the limit is {limit}")
        self.event_id = event_id


class Producer(Protocol):
    """The part of AIOKafkaProducer the sink uses (a seam for tests)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]: ...


ProducerFactory = Callable[[], Producer]


class KafkaEventSink:
    """Writes canonical events to `topic`, key = conversation id, value = event JSON."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        produce_timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        ready_timeout_s: float = 2.0,
        stop_timeout_s: float = 5.0,
        max_event_bytes: int = MAX_EVENT_BYTES,
        producer_factory: ProducerFactory | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if produce_timeout_s <= 0:
            raise ValueError(f"produce_timeout_s must be positive, got {produce_timeout_s}")
        self._bootstrap = bootstrap
        self._topic = topic
        self._produce_timeout_s = produce_timeout_s
        self._connect_timeout_s = connect_timeout_s or max(produce_timeout_s, 5.0)
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._max_event_bytes = max_event_bytes
        self._security = security or KafkaSecurity()
        self._factory = producer_factory or self._aiokafka_producer
        self._producer: Producer | None = None
        self._connecting: asyncio.Task[Producer] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._stopped = False

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> KafkaEventSink:
        return cls(
            settings.kafka_bootstrap,
            settings.topics.events,
            produce_timeout_s=settings.produce_timeout_s,
            security=settings.kafka_security,
            **options,
        )

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect (one attempt, bounded by the connect timeout); if Kafka is not there yet,
        keep trying in the background: the gateway starts anyway and answers 503 meanwhile."""
        self._stopped = False
        if self._producer is not None or self._connecting is not None:
            return
        self._producer = await self._try_start(attempt=1)
        if self._producer is not None:
            log.info("Kafka producer connected to %s", self._bootstrap)
        else:
            log.warning("Kafka at %s not reachable yet; retrying in the background",
                        self._bootstrap)
            self._ensure_connecting()

    async def stop(self) -> None:
        self._stopped = True
        if self._connecting is not None:
            self._connecting.cancel()
            # asyncio.wait never swallows our own cancellation; bounded in case a library does
            await asyncio.wait({self._connecting}, timeout=self._connect_timeout_s)
            self._connecting = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close_producer(producer)
        if self._retiring:
            await asyncio.wait(self._retiring)

    async def send(self, events: Sequence[ConversationEvent]) -> None:
        """Write all events, in order, and wait for Kafka's acknowledgement of every one,
        all within `produce_timeout_s`; raise `ProduceFailed` (a `SinkUnavailable`) if not."""
        if not events:
            return
        records = [self._record(event) for event in events]
        deadline = asyncio.get_running_loop().time() + self._produce_timeout_s
        producer = await self._producer_within(self._produce_timeout_s)
        try:
            async with asyncio.timeout_at(deadline):
                await self._produce(producer, records)
        except TimeoutError:
            self._replace(producer)
            raise ProduceFailed(
                "timeout", f"Kafka did not acknowledge within {self._produce_timeout_s}s"
            ) from None
        except KafkaError as exc:
            self._replace(producer)
            raise ProduceFailed("kafka_error", f"Kafka refused the write: {exc!r}") from exc

    async def ready(self) -> bool:
        """A started producer (so its producer id is assigned) whose own metadata names a
        leader for every partition of the events topic, and every leader answering for its
        partitions; within ~2 s."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(self._ready_timeout_s):
                return await _topic_writable(producer, self._topic)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.info("readiness check failed: %r", exc)
            return False

    def _record(self, event: ConversationEvent) -> tuple[bytes, bytes]:
        key = event.conversation_id.encode()
        value = event.to_json()
        size = len(key) + len(value)
        if size > self._max_event_bytes:
            raise EventTooLarge(event.event_id, size, self._max_event_bytes)
        return key, value

    async def _produce(self, producer: Producer, records: list[tuple[bytes, bytes]]) -> None:
        futures = []
        for key, value in records:  # sequential: keeps the order within each partition
            future = await producer.send(self._topic, value=value, key=key)
            future.add_done_callback(_mark_retrieved)
            futures.append(future)
        await asyncio.wait(futures)  # does not cancel them when the timeout hits
        for future in futures:
            future.result()

    async def _producer_within(self, timeout_s: float) -> Producer:
        if self._producer is not None:
            return self._producer
        if self._stopped:
            raise ProduceFailed("stopped", "the Kafka sink is stopped")
        task = self._ensure_connecting()
        await asyncio.wait({task}, timeout=timeout_s)
        if self._producer is None:
            raise ProduceFailed("not_connected", f"Kafka at {self._bootstrap} is not reachable")
        return self._producer

    def _ensure_connecting(self) -> asyncio.Task[Producer]:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect(), name="msgkpi-sink-connect")
        return self._connecting

    def _replace(self, failed: Producer) -> None:
        """Drop a producer that did not deliver in time; build a fresh one meanwhile."""
        if self._producer is not failed:
            return  # another request already replaced it
        log.warning("Kafka producer failed; replacing it")
        self._producer = None
        self._retire(failed)
        if not self._stopped:
            self._ensure_connecting()

    def _retire(self, producer: Producer) -> None:
        task = asyncio.create_task(self._close_producer(producer), name="msgkpi-sink-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _connect(self) -> Producer:
        """Try until a producer starts, backing off; the result becomes the current one."""
        delay = _BACKOFF_FIRST_S
        attempt = 1
        while (producer := await self._try_start(attempt)) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
            attempt += 1
        log.info("Kafka producer connected to %s", self._bootstrap)
        self._producer = producer
        return producer

    async def _try_start(self, attempt: int) -> Producer | None:
        producer = self._factory()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await producer.start()
        except asyncio.CancelledError:
            await self._close_producer(producer)
            raise
        except Exception as exc:  # whatever went wrong, this producer is not usable
            log.warning("Kafka at %s: start attempt %d failed: %r", self._bootstrap, attempt, exc)
            await self._close_producer(producer)
            return None
        return producer

    async def _close_producer(self, producer: Producer) -> None:
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await producer.stop()
        except TimeoutError:
            log.warning("Kafka producer did not stop within %ss; abandoning it",
                        self._stop_timeout_s)
            await _abandon(producer)
        except Exception as exc:
            log.warning("stopping the Kafka producer failed: %r", exc)

    def _aiokafka_producer(self) -> Producer:
        producer: Producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id="msgkpi-gateway",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            partitioner=KeyHashCache(),
            **self._security.aiokafka_options(),
        )
        return producer


class KeyHashCache:
    """aiokafka's default partitioner (Kafka's murmur2 of the key, so every producer of the
    events topic agrees), remembering the hash of recent keys: a conversation sends many
    events, and murmur2 in pure Python cost ~7 us, a twentieth of a request."""

    def __init__(self, size: int = 65_536) -> None:
        self._hash = lru_cache(maxsize=size)(murmur2)
        self._keyless = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int],
                 available: list[int]) -> int:
        if key is None:
            return int(self._keyless(key, all_partitions, available))
        return int(all_partitions[(self._hash(key) & 0x7FFFFFFF) % len(all_partitions)])


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    """A future nobody awaits any more (after a timeout) must not log 'never retrieved'."""
    if not future.cancelled():
        future.exception()


async def _topic_writable(producer: Producer, topic: str) -> bool:
    """True when a write to any partition of `topic` would be taken now.

    A topic is listed with partitions before its leaders serve them: on a new broker the first
    writes then come back NOT_LEADER_OR_FOLLOWER and are retried for seconds. So every
    partition must have a leader, and every leader must answer for its partitions' end offsets,
    which a broker does only for partitions it leads. The metadata request never creates the
    topic, whatever the cluster's auto-creation setting.
    """
    client = getattr(producer, "client", None)
    if client is None:
        return True  # not an aiokafka producer: started is all we can know
    node = client.get_random_node()
    if node is None:
        return False
    response = await client.send(node, MetadataRequest([topic], allow_auto_topic_creation=False))
    leaders = _partitions_by_leader(response.to_object(), topic)
    if not leaders:
        return False
    answers = await asyncio.gather(*(
        _leads_all(client, leader, topic, owned) for leader, owned in leaders.items()
    ))
    if not all(answers):
        return False
    if client.cluster.partitions_for_topic(topic) is None:
        client.add_topic(topic)  # so the first send finds the topic in the producer's metadata
        await client.force_metadata_update()
    return True


def _partitions_by_leader(metadata: dict[str, Any], topic: str) -> dict[int, list[int]]:
    """{leader: [partition, ...]} when the topic and every partition of it have a leader."""
    leaders: dict[int, list[int]] = {}
    for meta in metadata["topics"]:
        if meta["topic"] != topic or meta["error_code"] != 0:
            continue
        for partition in sorted(meta["partitions"], key=lambda p: int(p["partition"])):
            if partition["error_code"] != 0 or partition["leader"] < 0:
                return {}
            leaders.setdefault(partition["leader"], []).append(partition["partition"])
    return leaders


async def _leads_all(client: Any, node: int, topic: str, partitions: list[int]) -> bool:
    request = OffsetRequest(-1, 0, [(topic, [(p, _LATEST_OFFSET) for p in partitions])])
    response = await client.send(node, request)
    errors = {
        partition: error_code
        for name, answers in response.topics if name == topic
        for partition, error_code, *_ in answers
    }
    return sorted(errors) == partitions and not any(errors.values())


async def _abandon(producer: Producer) -> None:
    """Last resort when `stop()` hangs (aiokafka #1101): stop the sender task, fail its
    pending batches and close the connections. Reaches into aiokafka's internals on
    purpose; every step is optional so a change there only loses the clean-up."""
    sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if sender_task is not None:
        sender_task.cancel()
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is not None:
        accumulator.fail_all(KafkaConnectionError("producer abandoned after a timeout"))
    client = getattr(producer, "client", None)
    if client is not None:
        try:
            async with asyncio.timeout(2.0):
                await client.close()
        except Exception as exc:
            log.warning("closing an abandoned Kafka client failed: %r", exc)
