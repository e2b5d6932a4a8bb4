"""Every record from the committed offset on is processed, even when Faust skips some.

faust-streaming can lose records it has already fetched: records queued for a stream when a
recovery or rebalance resumes the flow are dropped, and the fetcher goes on after them. Seen
on the real broker: a worker restarted after SIGKILL received offsets 0-101 and 108-178 of one
facts partition and never 102-107. Faust then either commits past such a hole (its "gap"
bookkeeping counts the skipped offsets as done) or never commits past it again.

So each agent passes its batches through a `DeliveryGuard`. Per partition it knows the next
offset it must process: the group's committed offset when the partition is (re)assigned, then
one past the last record processed. A record below that was processed already (Faust delivers
again after a seek) and is dropped; a record above it reveals a hole, which the guard reads
straight from Kafka and puts in front, in offset order. A hole at the end of a partition (or a
partition that delivered nothing since its assignment) shows when the partition stays short of
its high-water mark (`stalled`). The records the guard read itself are acknowledged to Faust
after they are processed (`acknowledgement`, at the stage's checkpoint), so the commit moves
past them only then; `faust_seams.BatchConsumer` stops Faust from counting holes as done on its
own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP, Message
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.kafka_security import KafkaSecurity
from processor.kpi.event_step import Record
from processor.worker.faust_seams import handed_out

__all__ = [
    "DELIVERY_CHECK_S",
    "DeliveryCollector",
    "DeliveryGuard",
    "KafkaRanges",
    "stop_unprocessed",
]

log = logging.getLogger("msgkpi.worker.delivery")

EXIT_UNPROCESSED = 70
"""Exit status of a worker that stopped rather than let Faust commit unprocessed records."""
DELIVERY_CHECK_S = 2.0
"""How often partitions that stopped short of their high-water mark are looked at."""

Handler = Callable[[list[Record]], Awaitable[None]]
"""What an agent does with a batch of records (in offset order per partition)."""


class KafkaRanges:
    """Reads committed offsets and offset ranges of one topic outside the consumer group."""

    def __init__(self, bootstrap: str, group_id: str, topic: str,
                 security: KafkaSecurity | None = None) -> None:
        self._bootstrap = bootstrap
        self._security = security or KafkaSecurity()
        self._group_id = group_id
        self.topic = topic
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def committed(self, partition: int) -> int:
        """The group's committed offset, or the log start when nothing is committed yet
        (the worker's consumers start at the earliest record)."""
        tp = TopicPartition(self.topic, partition)
        admin = await self._admin_client()
        offsets = await admin.list_consumer_group_offsets(self._group_id, partitions=[tp])
        found = offsets.get(tp)
        if found is not None and found.offset >= 0:
            return int(found.offset)
        reader = await self._consumer()
        return int((await reader.beginning_offsets([tp]))[tp])

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        """Records with start <= offset < end, in offset order."""
        tp = TopicPartition(self.topic, partition)
        reader = await self._consumer()
        reader.assign([tp])
        reader.seek(tp, start)
        found: list[Record] = []
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=1000,
                                         max_records=min(end - start, 10_000))
            for item in batch.get(tp, []):
                if item.offset < end:
                    found.append(Record(partition, item.key, item.value, item.offset,
                                        item.timestamp))
            if not batch and await reader.position(tp) >= (await reader.end_offsets([tp]))[tp]:
                break
        return found

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap,
                                              **self._security.aiokafka_options())
            await self._admin.start()
        return self._admin

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            # earliest: a start that retention deleted reads from the log start on
            self._reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap,
                                            enable_auto_commit=False,
                                            auto_offset_reset="earliest",
                                            **self._security.aiokafka_options())
            await self._reader.start()
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
        if self._admin is not None:
            await self._admin.close()


class DeliveryGuard:
    """Per partition, the next offset to process; see the module docstring."""

    def __init__(self, ranges: KafkaRanges) -> None:
        self._ranges = ranges
        self._next: dict[int, int] = {}
        self._quiet: dict[int, int] = {}
        """Partition -> next offset when `stalled` last looked, while it stood still."""
        self.refilled: list[Record] = []
        """Records read from Kafka and not yet acknowledged to Faust."""
        self._holes: list[Record] = []
        """Offsets with no record any more (retention deleted them), to acknowledge as well."""
        self.skipped = 0
        self.duplicates = 0

    @property
    def topic(self) -> str:
        return self._ranges.topic

    def reset(self, partitions: Iterable[int]) -> None:
        """Partitions assigned or revoked: their next offset is the committed one again."""
        for partition in partitions:
            self._next.pop(partition, None)
            self._quiet.pop(partition, None)

    async def complete(self, records: Iterable[Record]) -> list[Record]:
        """`records` without the ones already processed, and with any hole before a record
        filled from Kafka."""
        out: list[Record] = []
        for record in records:
            expected = self._next.get(record.partition)
            if expected is None:
                expected = await self._ranges.committed(record.partition)
            if record.offset < expected:
                self.duplicates += 1
                self._next[record.partition] = expected
                continue
            if record.offset > expected:
                out += await self._fill(record.partition, expected, record.offset)
            out.append(record)
            self._next[record.partition] = record.offset + 1
        return out

    async def stalled(self, highwaters: Mapping[int, int | None],
                      handed_out: Mapping[int, int | None] | None = None) -> list[Record]:
        """Records of partitions that stopped short of their high-water mark and made no
        progress since the previous call (Faust dropped their tail, or everything it was to
        deliver since the assignment). `handed_out` is, per partition where the Kafka client
        knows it, the next offset it will hand to Faust (-1: nothing handed out since the
        assignment): a partition whose records up to there
        were all processed is only waiting for its fetch (a backlog serves partitions in turn,
        for seconds each), and what is missing is read up to there only. Call only while no
        rebalance or recovery is under way (`forget_looks` when one is)."""
        handed_out = handed_out or {}
        out: list[Record] = []
        for partition, highwater in highwaters.items():
            expected = self._next.get(partition)
            fetched = handed_out.get(partition)
            if highwater is None or (expected is not None and
                                     (expected >= highwater or _waiting(expected, fetched))):
                self._quiet.pop(partition, None)
                continue
            mark = -1 if expected is None else expected
            if self._quiet.get(partition) != mark:
                self._quiet[partition] = mark  # look again next time
                continue
            self._quiet.pop(partition, None)
            if expected is None:
                expected = self._next[partition] = await self._ranges.committed(partition)
                if expected >= highwater or _waiting(expected, fetched):
                    continue
            end = highwater if fetched is None else min(highwater, fetched)
            found = await self._fill(partition, expected, end)
            if not found:  # nothing there any more (retention)
                self._next[partition] = end
            out += found  # `complete` takes them from `expected` on
        return out

    def forget_looks(self) -> None:
        """A rebalance or recovery is under way: what `stalled` saw before does not count."""
        self._quiet.clear()

    async def _fill(self, partition: int, start: int, end: int) -> list[Record]:
        found = await self._ranges.read(partition, start, end)
        self.skipped += len(found)
        self.refilled += found
        log.warning("%s[%d]: offsets %d-%d were not delivered by the stream; read %d "
                    "records from Kafka", self.topic, partition, start, end - 1, len(found))
        present = {record.offset for record in found}
        self._holes += [Record(partition, None, None, offset) for offset in range(start, end)
                        if offset not in present]
        return found

    def acknowledgement(self, ack: Callable[[Any], Any]) -> Callable[[], None]:
        """The refilled records are processed: what lets Faust commit past them, to be done
        at the stage's next checkpoint."""
        records, self.refilled, self._holes = self.refilled + self._holes, [], []

        def acknowledge() -> None:
            for record in records:
                ack(_faust_message(self.topic, record))

        return acknowledge

    async def process(self, app: faust.App, records: list[Record], handle: Handler,
                      hold: Callable[[Callable[[], None]], None]) -> None:
        """`handle` the batch as completed by `complete`, then give the acknowledgement of what
        the guard read itself to `hold`. The caller holds the agent's lock. A failure half-way
        stops the worker."""
        try:
            await handle(await self.complete(records))
            hold(self.acknowledgement(app.consumer.ack))
        except Exception as error:
            stop_unprocessed(self.topic, error)

    async def process_stalled(self, app: faust.App, handle: Handler,
                              hold: Callable[[Callable[[], None]], None]) -> None:
        """The tail check (every `DELIVERY_CHECK_S`, the caller holding the agent's lock):
        not while a rebalance or table recovery is under way."""
        if app.rebalancing or app.in_recovery:
            self.forget_looks()
            return
        consumer = app.consumer
        owned = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        tails = await self.stalled({tp.partition: consumer.highwater(tp) for tp in owned},
                                   {tp.partition: handed_out(consumer, tp) for tp in owned})
        if tails:
            await self.process(app, tails, handle, hold)


def _waiting(expected: int, fetched: int | None) -> bool:
    """Everything the client handed out is processed: the rest is still to be fetched."""
    return fetched is not None and fetched <= expected


class DeliveryCollector(Collector):
    """What the guards had to mend, per topic."""

    def __init__(self, guards: Iterable[DeliveryGuard]) -> None:
        self._guards = list(guards)

    def collect(self) -> Iterator[Metric]:
        skipped = CounterMetricFamily(
            "msgkpi_worker_undelivered_records",
            "Records the Faust stream skipped; the worker read them from Kafka and processed "
            "them in order.", labels=["topic"])
        again = CounterMetricFamily(
            "msgkpi_worker_redelivered_records",
            "Records the Faust stream delivered again after they were processed (dropped).",
            labels=["topic"])
        for guard in self._guards:
            skipped.add_metric([guard.topic], guard.skipped)
            again.add_metric([guard.topic], guard.duplicates)
        yield from (skipped, again)


def _faust_message(topic: str, record: Record) -> Message:
    return Message(topic, record.partition, record.offset,
                   (record.timestamp_ms or 0) / 1000, 0, None, record.key, record.value, None,
                   tp=TP(topic, record.partition))


def stop_unprocessed(agent: str, error: BaseException) -> NoReturn:
    """An agent's batch failed half-way. Faust would acknowledge its records anyway (when the
    batch iterator closes) and commit them within a second, so they would never be processed:
    end the process now instead; after a restart they are processed again from the commit."""
    log.critical("%s: batch failed, stopping the worker so that its records are not "
                 "committed unprocessed", agent, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_UNPROCESSED)
