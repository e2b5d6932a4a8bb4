"""Changelog writes of the worker's tables (the tables themselves: faust_seams)."""

from __future__ import annotations

import asyncio
from typing import Any

from processor.worker.delivery import stop_unprocessed
from processor.worker.faust_seams import ProducerBatches, kafka_producer

__all__ = ["ChangelogWriter"]


class ChangelogWriter:
    """A table's changelog writes, handed straight to the producer in the order the store
    changed.

    Faust's `send_changelog` puts the record in its own producer buffer, and the flush before
    an offset commit gives up as soon as one buffered record takes more than 0.1 s to leave:
    the offsets of the records that changed the table could be committed while the change was
    still buffered, and a crash lost it for good. Records handed to the producer itself are
    covered by that commit: it first waits until the producer has delivered everything it
    holds. A write Kafka refuses stops the worker (`stop_unprocessed`): the refusal reaches
    this writer's callback before the commit's wait for the producer returns, so the records
    that caused the write are not committed."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._queued: dict[str, tuple[int, Any]] = {}
        self._sending = asyncio.Lock()

    def write(self, partition: int, key: str, value: Any) -> None:
        """Queue `value` (None: delete) as the key's new state in the changelog. Values are the
        live objects of the table, serialized at `flush`: a key queued again before that is
        written once, with its state at the flush."""
        self._queued[key] = (partition, value)

    @property
    def queued(self) -> int:
        return len(self._queued)

    async def flush(self) -> None:
        """Hand everything queued so far to the producer (callers flush before the records
        that caused the writes are acknowledged)."""
        async with self._sending:  # one sender at a time, so the changelog keeps the order
            queued, self._queued = self._queued, {}
            if not queued:
                return
            # Serialized here and handed over as one producer batch per partition: Faust's
            # per-record send (its message wrappers and sensors) cost as much as the
            # serializing (bench/RESULTS.md).
            topic = self._table.changelog_topic.get_topic_name()
            codec = self._table.value_serializer
            batches = ProducerBatches(kafka_producer(self._table.app))
            for key, (partition, value) in queued.items():
                record = None if value is None else codec.dumps(value)
                await batches.append(topic, partition, key.encode(), record)
            for sent in await batches.send_all():
                sent.add_done_callback(_stop_if_refused)


def _stop_if_refused(sent: asyncio.Future[Any]) -> None:
    error = None if sent.cancelled() else sent.exception()
    if error is not None:
        stop_unprocessed("changelog", error)
