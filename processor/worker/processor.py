"""The worker's processing step, apart from Faust so it runs and tests on a plain dict.

A batch of records -> decode -> each conversation's Timeline -> ingest -> facts to metrics.
Conversations changed by the batch are returned once each, to be persisted (changelog) before
the batch's offsets can be committed.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import NamedTuple

from processor.errors import InvalidEvent
from processor.events import ConversationEvent, event_from_json
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.timeline import Ingested, Timeline

__all__ = ["BatchOutcome", "EventProcessor", "Record", "Rejected", "StoredConversation"]


class Record(NamedTuple):
    """One Kafka record of msgkpi.events."""

    partition: int
    key: bytes | None
    value: bytes | None


class Rejected(NamedTuple):
    """A record that could not be processed; it goes to the DLQ with this reason."""

    reason: str
    error: str


@dataclass(slots=True)
class StoredConversation:
    """A conversation's state as kept in the table: its timeline and the partition it lives on
    (so a revoked partition's conversations can be dropped from memory)."""

    partition: int
    timeline: Timeline


class BatchOutcome(NamedTuple):
    changed: dict[str, StoredConversation]
    """Conversations to persist, once each however many of their events the batch held."""
    rejected: list[tuple[int, Rejected]]
    """(index in the batch, why) for records that go to the DLQ."""


class EventProcessor:
    """Applies canonical events to per-conversation timelines held in `table`."""

    def __init__(
        self,
        table: MutableMapping[str, StoredConversation],
        metrics: WorkerMetrics,
        awaiting: AwaitingIndex,
        grace_ms: int,
    ) -> None:
        self._table = table
        self._metrics = metrics
        self._awaiting = awaiting
        self._grace_ms = grace_ms

    def process_batch(self, records: Iterable[Record]) -> BatchOutcome:
        """Apply every record in order; never raises for bad input."""
        changed: dict[str, StoredConversation] = {}
        rejected: list[tuple[int, Rejected]] = []
        for index, record in enumerate(records):
            outcome = self.process_record(record)
            if isinstance(outcome, Rejected):
                rejected.append((index, outcome))
            elif outcome is not None:
                changed[outcome[0]] = outcome[1]
        return BatchOutcome(changed, rejected)

    def process_record(self, record: Record) -> tuple[str, StoredConversation] | Rejected | None:
        """Decode and apply one record: what changed, why it was rejected, or None for a
        duplicate."""
        if record.value is None:
            return self._reject("empty", "record has no value")
        try:
            event = event_from_json(record.value)
        except InvalidEvent as exc:
            return self._reject("invalid", str(exc))
        if record.key is not None and record.key != event.conversation_id.encode():
            return self._reject("wrong_key", "record key is not the event's conversation_id")
        stored = self._table.get(event.conversation_id)
        if stored is None:
            stored = StoredConversation(record.partition, Timeline(grace_ms=self._grace_ms))
            self._table[event.conversation_id] = stored
        outcome = self.apply(stored.timeline, event)
        return None if outcome.duplicate else (event.conversation_id, stored)

    def apply(self, timeline: Timeline, event: ConversationEvent) -> Ingested:
        outcome = timeline.ingest(event)
        metrics = self._metrics
        metrics.events.inc()
        if outcome.duplicate:
            metrics.duplicates.inc()
            return outcome
        metrics.record_change(outcome.added, outcome.retracted)
        if outcome.late:
            metrics.late.inc()
        elif outcome.reordered:
            metrics.reordered.inc()
        self._awaiting.update(event.conversation_id, event.channel, timeline.state.waiting_since_ms)
        return outcome

    def forget_partitions(self, partitions: set[int]) -> int:
        """Drop revoked partitions' conversations from memory (not from the changelog)."""
        gone = [key for key, stored in self._table.items() if stored.partition in partitions]
        for key in gone:
            del self._table[key]
            self._awaiting.update(key, "", None)
        return len(gone)

    def rebuild_awaiting(self) -> None:
        """After a rebalance: index exactly the conversations now in the table."""
        self._awaiting.clear()
        for conversation_id, stored in self._table.items():
            timeline = stored.timeline
            self._awaiting.update(
                conversation_id, timeline.channel, timeline.state.waiting_since_ms
            )

    def _reject(self, reason: str, error: str) -> Rejected:
        self._metrics.events.inc()
        self._metrics.dlq.labels(reason).inc()
        return Rejected(reason, error)
