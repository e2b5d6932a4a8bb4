"""Where the worker goes under faust-streaming, all in one place, for the pinned version only.

1. **Batch delivery.** Faust hands every record to its stream one at a time: `_drain_messages`
   awaits `wait_first(callback(message), suspend_flow.wait())` per record (four tasks and an
   `asyncio.wait`), then the conductor queues it for the stream, whose iterator and ack take
   their own turns: about 70 us per record on the bench machine, a quarter of the worker's time
   (bench/RESULTS.md). faust-streaming has no supported way to receive a fetch as a batch:
   `take` buffers the same per-record stream (upstream: robinhood/faust issue #563, "Message
   consumption is slow", still open; faust-streaming/faust pull request #192, a manually
   acknowledged `take`, unmerged). `BatchConsumer` drains
   each fetch itself: the records of a topic registered with `deliver_batches` go to its
   handler as one list, are acknowledged at the stage's checkpoint after it returns, and never
   enter a stream; every other topic (table changelogs in recovery) goes one record at a time
   to Faust's callback, as Faust does (see 4).
2. **Batches straight to the Kafka client.** `ProducerBatches` gives aiokafka's producer
   (Faust's own, so Faust's flush before each offset commit waits for them too) whole record
   batches, already serialized, instead of one Faust send per record.
3. **Tables read as plain dicts.** A memory-store table's `data` is a `FastUserDict` whose
   `get` of a missing key goes through `__getitem__` and a caught KeyError, on every event;
   `local_dict` gives the worker the dict inside it (created once per store, only ever
   cleared), which Faust's recovery itself writes to.
4. **Restoring tables without a race per record.** Changelog records go to the recovery's
   queue directly while it has room and the flow runs (`_restores_without_waiting`).
5. **Fetched records are never lost in Faust's loop.** `getmany` seeks a partition back to
   the first record of a fetch it did not hand on (Faust skips a partition missing from an
   active set taken before the fetch, and drops the rest of a fetch when a rebalance starts);
   a changelog in recovery would otherwise wait for them forever, or restore a table without
   them. `processor.worker.recovery_guard` watches recoveries as a second line.
6. **Tables with our own codec.** Faust derives a table's changelog serializers from its
   key and value types only; `string_keyed_table` makes one with raw string keys and a given
   value codec (`_serializer_from_type`).
7. **Holes are not acknowledged by Faust.** Faust counts offsets it never delivered as done
   ("gaps"); the delivery guard (processor.worker.delivery) reads and processes them and
   acknowledges them itself, so `_add_gap` does nothing here.

`check_faust_version` refuses any other faust-streaming than the one these were written and
tested against (tests/unit/worker/test_faust_seams.py fails if the seam stops being used).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.stores.memory import Store as MemoryStore
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.errors import ConfigError
from processor.kpi.event_step import Record

__all__ = [
    "FAUST_VERSION",
    "RECOVERY_CHECK_S",
    "BatchCollector",
    "BatchConsumer",
    "BatchHandler",
    "BatchTransport",
    "ProducerBatches",
    "batch_consumer",
    "check_faust_version",
    "deliver_batches",
    "handed_out",
    "kafka_producer",
    "local_dict",
    "string_keyed_table",
    "use_batch_consumer",
]

log = logging.getLogger("msgkpi.worker.faust")

FAUST_VERSION: Final = "0.15.3"
"""The faust-streaming release whose consumer internals the seams below rely on."""
RECOVERY_CHECK_S: Final = 5.0
"""How often `BatchConsumer.recovery_checks` run."""
_YIELD_EVERY: Final = 100
"""Records of other topics between two turns given to the event loop (as Faust does)."""

BatchHandler = Callable[[list[Record]], Awaitable[None]]
"""Processes one fetch's records of a topic (offset order per partition); returns once done."""


def check_faust_version(installed: str | None = None) -> None:
    installed = installed or faust.__version__
    if installed != FAUST_VERSION:
        raise ConfigError(
            "faust-streaming",
            f"msgkpi's worker needs faust-streaming {FAUST_VERSION} (its batch delivery goes "
            f"under Faust's consumer), found {installed}",
        )


class BatchConsumer(AIOKafkaDriverConsumer):
    """Faust's aiokafka consumer, draining registered topics in batches (module docstring)."""

    batch_handlers: dict[str, Callable[[list[Message]], Awaitable[None]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recovery_checks: list[Callable[[], Awaitable[Any]]] = []
        """Run every `RECOVERY_CHECK_S` from the consumer's start: app timers only start once
        the first table recovery is complete, and that one needs watching too."""
        self.batch_handlers = {}
        self.fetched_again: Counter[str] = Counter()
        """Partitions sought back to records Faust's loop did not hand on, per topic."""
        self.batches: Counter[str] = Counter()
        """Batches handed to the handlers, per topic."""
        self.batched_records: Counter[str] = Counter()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's `getmany`, except that the records of a fetch it does not hand on are read
        again instead of lost. Faust skips the records of a partition missing from the active
        set it took before the fetch (the client, in its own thread, may already fetch a
        partition the recovery has just resumed) and drops the rest of the fetch when the
        flow stops or the generation changes; the client's position has moved past them
        either way. Each such partition is sought back to its first record not handed on."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:  # as Faust does: after a stop, back to the committed offsets
                await self.perform_seek()
            except Exception as exc:
                log.warning("exception performing seek when flow not active %r", exc)
            return
        unhanded = {tp: batch[0].offset for tp, batch in records.items() if batch}
        """Per partition, the first record of the fetch not handed on yet."""
        try:
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break
                if (active_partitions is None or tp in active_partitions
                        or tp in self._buffered_partitions):
                    if unhanded.get(tp) == record.offset:
                        unhanded[tp] = record.offset + 1
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    yield tp, self._to_message(tp, record)
        finally:
            await self._read_again(
                {tp: offset for tp, offset in unhanded.items()
                 if offset <= records[tp][-1].offset})

    async def _read_again(self, skipped: Mapping[TP, int]) -> None:
        if not skipped:
            return
        assigned = self.assignment()
        for tp, offset in skipped.items():
            if tp not in assigned:
                continue  # revoked: its next owner starts from the commit or the changelog
            self.fetched_again[tp.topic] += 1
            log.info("%s[%d]: records from offset %d were fetched but not handed on; "
                     "reading them again", tp.topic, tp.partition, offset)
            try:
                await self.seek(tp, offset)
            except Exception as exc:  # revoked meanwhile: the next owner reads them
                log.warning("%s[%d]: could not seek back to %d: %r", tp.topic, tp.partition,
                            offset, exc)

    @Service.task
    async def _watch_recoveries(self) -> None:
        while not self.should_stop:
            await self.sleep(RECOVERY_CHECK_S)
            for check in self.recovery_checks:
                try:
                    await check()
                except Exception:  # the watch must outlive any one check
                    log.exception("recovery check failed")

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Holes stay unacknowledged until the delivery guard has processed them."""

    async def _drain_messages(self, fetcher: Any) -> None:
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                await self.sleep(0)
                if self.should_stop:
                    continue
                batches = await self._drain_one_fetch()
                for topic, messages in batches.items():
                    await self.batch_handlers[topic](messages)
                    self.batches[topic] += 1
                    self.batched_records[topic] += len(messages)
                await self._commit_every_n_acks()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _drain_one_fetch(self) -> dict[str, list[Message]]:
        """One fetch: registered topics' records collected per topic, the others delivered
        one by one as Faust does."""
        batches: dict[str, list[Message]] = {}
        read_offset = self._read_offset
        since_yield = 0
        async for tp, message in self.getmany(timeout=1.0):
            last = read_offset[tp]
            if last is not None and message.offset < last:
                continue  # read already: Faust drops these too
            batch = batches.get(tp.topic)
            if batch is None and tp.topic in self.batch_handlers:
                batch = batches[tp.topic] = []
            if batch is not None:
                batch.append(message)
            else:
                since_yield += 1
                if since_yield > _YIELD_EVERY:
                    await asyncio.sleep(0)
                    since_yield = 0
                await self._deliver_one(tp, message, last)
            read_offset[tp] = message.offset
        return batches

    async def _deliver_one(self, tp: TP, message: Message, last: int | None) -> None:
        if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, last + 1, message.offset)
        await self._commit_every_n_acks()
        if self._restores_without_waiting(tp.topic):
            await self.callback(message)
            return
        await self.wait_first(self.callback(message), self.suspend_flow.wait())

    def _restores_without_waiting(self, topic: str) -> bool:
        """A table's changelog record goes to the recovery's queue. While that queue has room
        and neither the consumer's flow nor the app's flow control is suspended, the put cannot
        block, and `wait_first` (a task for the record, one for the suspend event, an
        `asyncio.wait`) would only race the put against a rebalance that has not begun:
        restoring 100,000 conversations spent a fifth of its time there (bench/RESULTS.md)."""
        tables: Any = self.app.tables
        return (topic in tables._changelogs and not self.suspend_flow.is_set()
                and self.app.flow_control.is_active() and not tables.changelog_queue.full())

    async def _commit_every_n_acks(self) -> None:
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def ack_offsets(self, tp: TP, offsets: Iterable[int]) -> None:
        """Faust's `ack` for many offsets of one partition at once: the commit may move past
        them now."""
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            acked = self._acked[tp]
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    self._n_acked += 1
            notify(self._waiting_for_ack)


class BatchTransport(AIOKafkaTransport):
    """Faust's aiokafka transport, building a `BatchConsumer`."""

    Consumer = BatchConsumer


def use_batch_consumer(app: faust.App) -> None:
    """Make `app` build a `BatchConsumer`; call before anything touches `app.consumer`."""
    check_faust_version()
    if app._consumer is not None:
        raise RuntimeError("use_batch_consumer: the app's consumer exists already")
    app.transport = BatchTransport(app.conf.broker_consumer, app)


def batch_consumer(app: faust.App) -> BatchConsumer:
    consumer = app.consumer
    if not isinstance(consumer, BatchConsumer):
        raise RuntimeError("the app has no BatchConsumer: call use_batch_consumer(app) first")
    return consumer


def deliver_batches(app: faust.App, topic: faust.TopicT, handle: BatchHandler,
                    hold: Callable[[Callable[[], None]], None]) -> None:
    """Subscribe to `topic` and give each fetch's records of it to `handle` as one batch; once
    `handle` returns, their acknowledgement to Faust (which lets them be committed) goes to
    `hold`, to be done at the stage's next checkpoint."""
    consumer = batch_consumer(app)

    async def on_fetch(messages: list[Message]) -> None:
        await handle([_record(message) for message in messages])
        by_partition: dict[TP, list[int]] = {}
        for message in messages:
            by_partition.setdefault(message.tp, []).append(message.offset)

        def acknowledge() -> None:
            for tp, offsets in by_partition.items():
                consumer.ack_offsets(tp, offsets)

        hold(acknowledge)

    for name in topic.topics:
        consumer.batch_handlers[name] = on_fetch
    app.topics.add(topic)


def handed_out(consumer: Any, tp: TP) -> int | None:
    """The next offset of `tp` the Kafka client will hand to Faust (its fetch position); -1
    when it has handed out nothing since the assignment (no position yet); None when it cannot
    tell (no client or assignment yet). Read from the client in Faust's consumer thread, as
    Faust's own `highwater` does."""
    try:
        client = consumer._thread._ensure_consumer()
        state = client._subscription.subscription.assignment.state_value(tp)
    except Exception:
        return None
    if state is None:
        return None
    return int(state.position) if state.has_valid_position else -1


class BatchCollector(Collector):
    """How the seam delivered: batches and records per topic (records / batches is the mean
    batch size, which sets how often each changed conversation is written)."""

    def __init__(self, consumer: BatchConsumer) -> None:
        self._consumer = consumer

    def collect(self) -> Iterator[Metric]:
        batches = CounterMetricFamily(
            "msgkpi_worker_batches", "Fetched batches handed to the worker's handlers.",
            labels=["topic"])
        records = CounterMetricFamily(
            "msgkpi_worker_batched_records", "Records in those batches.", labels=["topic"])
        again = CounterMetricFamily(
            "msgkpi_worker_refetched_partitions",
            "Partitions sought back to fetched records Faust's fetch loop did not hand on "
            "(around rebalances and recoveries), per topic.", labels=["topic"])
        for topic in sorted(self._consumer.batch_handlers):
            batches.add_metric([topic], self._consumer.batches[topic])
            records.add_metric([topic], self._consumer.batched_records[topic])
        for topic, count in sorted(self._consumer.fetched_again.items()):
            again.add_metric([topic], count)
        yield from (batches, records, again)


def _record(message: Message) -> Record:
    timestamp = message.timestamp
    return Record(message.partition, message.key, message.value, message.offset,
                  int(timestamp * 1000) if timestamp else None)


def kafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The aiokafka producer under Faust's (started with the app; the worker has no
    transactions, so there is just this one)."""
    producer: AIOKafkaProducer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    return producer


class ProducerBatches:
    """Records collected into one batch per (topic, partition), in order, then handed to the
    producer: a full batch goes at once, the rest on `send_all`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._sent: list[asyncio.Future[Any]] = []

    async def append(self, topic: str, partition: int, key: bytes | None,
                     value: bytes | None) -> None:
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[(topic, partition)] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is not None:
            return
        # Full: send it, then start the next one with this record.
        self._sent.append(await self._producer.send_batch(batch, topic, partition=partition))
        batch = self._open[(topic, partition)] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            raise ValueError(f"a record of {len(value or b'')} bytes does not fit a batch")

    async def send_all(self) -> list[asyncio.Future[Any]]:
        """Hand over every open batch; returns one future per batch sent since the start."""
        for (topic, partition), batch in self._open.items():
            if batch.record_count():
                self._sent.append(await self._producer.send_batch(batch, topic,
                                                                  partition=partition))
        self._open.clear()
        sent, self._sent = self._sent, []
        return sent


def local_dict(table: Any) -> dict[Any, Any]:
    """The plain dict holding a memory-store table's local data (see the module docstring)."""
    store = table.data
    if not isinstance(store, MemoryStore) or not isinstance(store.data, dict):
        raise RuntimeError(f"table {table.name} is not backed by Faust's memory store")
    return store.data


class _CodecTable(faust.Table):  # type: ignore[type-arg]
    """Faust derives a table's changelog serializers from key_type/value_type only (JSON
    unless the type is bytes or a faust Record), in __init__, when it creates the changelog
    topic. This table answers raw UTF-8 for the str keys and the given codec for the values,
    so writes and recovery agree."""

    def __init__(self, app: faust.App, *, value_codec: Any, **kwargs: Any) -> None:
        self._value_codec = value_codec
        super().__init__(app, **kwargs)

    def _serializer_from_type(self, typ: Any) -> Any:
        return "raw" if typ is str else self._value_codec


def string_keyed_table(app: faust.App, name: str, partitions: int, codec: Any) -> Any:
    """A changelog-backed table with raw UTF-8 string keys and `codec` values."""
    table = _CodecTable(app, name=name, default=None, beacon=app.tables.beacon,
                        partitions=partitions, key_type=str, value_type=None,
                        value_codec=codec)
    app.tables.add(table)
    return table
