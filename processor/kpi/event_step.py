"""The worker's event step, apart from Faust so it runs and tests on a plain dict.

A batch of records -> decode -> each conversation's Timeline -> ingest -> facts to metrics.
Conversations changed by the batch are returned once each, to be persisted (changelog) before
the batch's offsets can be committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, replace
from typing import Final, NamedTuple, Protocol

from processor.errors import InvalidEvent
from processor.events import ConversationEvent, event_from_json
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.conversation import DEFAULT_REOPEN_WINDOW_MS
from processor.kpi.facts import Fact
from processor.kpi.sla_record import SlaRecord
from processor.kpi.timeline import DEDUPE_HORIZON_MS, Ingested, Timeline

__all__ = [
    "Applied",
    "AppliedObserver",
    "BatchOutcome", "EventProcessor", "FactDelta", "Record", "Rejected", "StepMetrics",
    "StoredConversation",
]


MAX_FUTURE_MS: Final = 5 * 60 * 1000
"""How far an event's own time may lie after its Kafka record's timestamp (clock drift)."""


class Record(NamedTuple):
    """One Kafka record of msgkpi.events."""

    partition: int
    key: bytes | None
    value: bytes | None
    offset: int = -1
    timestamp_ms: int | None = None
    """Kafka's record timestamp (when the gateway produced it): an event cannot have happened
    much later than that."""


class FactDelta(NamedTuple):
    """A fact added (weight 1) or withdrawn (weight -1) by the record at (partition, offset).
    (partition, offset, seq) identifies it: reprocessing the same record after a crash
    produces the same deltas with the same ids, so the window stage can skip them."""

    partition: int
    offset: int
    seq: int
    weight: int
    fact: Fact


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
    sla: SlaRecord | None = None
    """The SLA stage's record (policy match, alerts already emitted, attainment still open to
    a reordering); persisted with the conversation so nothing is emitted twice after a
    restart."""


class _Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Labelled(Protocol):
    def labels(self, *values: str) -> _Count: ...


class StepMetrics(Protocol):
    """What the step counts (processor.export.worker_metrics.WorkerMetrics is one)."""

    @property
    def events(self) -> _Count: ...

    @property
    def duplicates(self) -> _Count: ...

    @property
    def late(self) -> _Count: ...

    @property
    def reordered(self) -> _Count: ...

    @property
    def future(self) -> _Count: ...

    @property
    def expired(self) -> _Count: ...

    @property
    def dlq(self) -> _Labelled: ...


    def record_change(self, added: list[Fact], retracted: list[Fact]) -> None: ...


class AppliedObserver(Protocol):
    """Called after a new (non-duplicate) event changed a conversation; returns facts it
    derived for the windows, weighted +1 (added) or -1 (withdrawn)."""

    def __call__(self, conversation_id: str, stored: StoredConversation,
                 event: ConversationEvent, ingested: Ingested) -> list[tuple[int, Fact]]: ...


class Applied(NamedTuple):
    """A new event applied to its conversation."""

    conversation_id: str
    stored: StoredConversation
    ingested: Ingested
    derived: list[tuple[int, Fact]]
    """The observer's weighted facts (SLA attainment)."""


class BatchOutcome(NamedTuple):
    changed: dict[str, StoredConversation]
    """Conversations to persist, once each however many of their events the batch held."""
    rejected: list[tuple[int, Rejected]]
    """(index in the batch, why) for records that go to the DLQ."""
    deltas: list[FactDelta]
    """Every fact the batch added or withdrew, in order, for the windows."""


class EventProcessor:
    """Applies canonical events to per-conversation timelines held in `table`."""

    def __init__(
        self,
        table: MutableMapping[str, StoredConversation],
        metrics: StepMetrics,
        awaiting: AwaitingIndex,
        grace_ms: int,
        observer: AppliedObserver | None = None,
        reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS,
    ) -> None:
        self._table = table
        self.observer = observer
        self._metrics = metrics
        self._awaiting = awaiting
        self._grace_ms = grace_ms
        self._reopen_window_ms = reopen_window_ms
        self.partition_max_ms: dict[int, int] = {}
        """Newest event time seen per partition since start: the window stage's watermark."""
        self.partition_next_offset: dict[int, int] = {}
        """Per partition, the offset after the last record processed (facts handed over)."""
        self.idle_horizon_ms = max(DEDUPE_HORIZON_MS, reopen_window_ms + grace_ms)
        """A conversation with no open cycle and no event for this long (event time, against
        its partition's newest event) is dropped: nothing it holds can still change a KPI."""
        self._sweep: list[str] = []

    def process_batch(self, records: Iterable[Record]) -> BatchOutcome:
        """Apply every record in order; never raises for bad input."""
        changed: dict[str, StoredConversation] = {}
        rejected: list[tuple[int, Rejected]] = []
        deltas: list[FactDelta] = []
        for index, record in enumerate(records):
            self.partition_next_offset[record.partition] = record.offset + 1
            outcome = self.process_record(record)
            if isinstance(outcome, Rejected):
                rejected.append((index, outcome))
            elif outcome is not None:
                changed[outcome.conversation_id] = outcome.stored
                deltas.extend(_deltas(record, outcome.ingested, outcome.derived))
        return BatchOutcome(changed, rejected, deltas)

    def process_record(self, record: Record) -> Applied | Rejected | None:
        """Decode and apply one record: what changed and how, why it was rejected, or None for
        a duplicate."""
        if record.value is None:
            return self._reject("empty", "record has no value")
        try:
            event = event_from_json(record.value)
        except InvalidEvent as exc:
            return self._reject("invalid", str(exc))
        if record.key is not None and record.key != event.conversation_id.encode():
            return self._reject("wrong_key", "record key is not the event's conversation_id")
        event = self._clamp_future(event, record.timestamp_ms)
        stored = self._table.get(event.conversation_id)
        if stored is None:
            timeline = Timeline.new(self._grace_ms, self._reopen_window_ms)
            stored = StoredConversation(record.partition, timeline)
            self._table[event.conversation_id] = stored
        seen_max = self.partition_max_ms.get(record.partition, event.occurred_at_ms)
        self.partition_max_ms[record.partition] = max(seen_max, event.occurred_at_ms)
        outcome = self.apply(stored.timeline, event)
        if outcome.duplicate:
            return None
        derived = []
        if self.observer is not None:
            derived = self.observer(event.conversation_id, stored, event, outcome)
        return Applied(event.conversation_id, stored, outcome, derived)

    def _clamp_future(self, event: ConversationEvent, written_ms: int | None
                      ) -> ConversationEvent:
        """An event stamped more than MAX_FUTURE_MS after Kafka received it gets the record's
        timestamp instead (counted): one device with its clock a year ahead would otherwise
        carry the window watermark a year ahead and make every later event late. Uses the
        record's stored timestamp, so reprocessing after a crash or a replay decides alike."""
        if written_ms is None or event.occurred_at_ms <= written_ms + MAX_FUTURE_MS:
            return event
        self._metrics.future.inc()
        return replace(event, occurred_at_ms=written_ms)

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

    def expire_idle(self, limit: int) -> list[tuple[str, int]]:
        """Look at up to `limit` conversations (a round over the table takes several calls) and
        drop those idle past `idle_horizon_ms`; returns (id, partition) of each, for the
        changelog tombstones."""
        if not self._sweep:
            self._sweep = list(self._table)
        expired: list[tuple[str, int]] = []
        for _ in range(min(limit, len(self._sweep))):
            conversation_id = self._sweep.pop()
            stored = self._table.get(conversation_id)
            if stored is None or not self._idle(stored):
                continue
            del self._table[conversation_id]
            self._awaiting.update(conversation_id, "", None)
            expired.append((conversation_id, stored.partition))
        self._metrics.expired.inc(len(expired))
        return expired

    def _idle(self, stored: StoredConversation) -> bool:
        newest_on_partition = self.partition_max_ms.get(stored.partition)
        timeline = stored.timeline
        return (newest_on_partition is not None and not timeline.state.open
                and newest_on_partition - timeline.newest_ms > self.idle_horizon_ms)

    def forget_partitions(self, partitions: set[int]) -> int:
        """Drop revoked partitions' conversations from memory (not from the changelog)."""
        gone = [key for key, stored in self._table.items()
                if stored is None or stored.partition in partitions]
        for key in gone:
            del self._table[key]
            self._awaiting.update(key, "", None)
        return len(gone)

    def rebuild_awaiting(self) -> None:
        """After a rebalance: index exactly the conversations now in the table."""
        self._awaiting.clear()
        for conversation_id, stored in self._table.items():
            if stored is None:  # a changelog record that could not be decoded
                continue
            timeline = stored.timeline
            self._awaiting.update(
                conversation_id, timeline.channel, timeline.state.waiting_since_ms
            )

    def recover_newest_times(self) -> None:
        """After the table was restored: the newest event time per partition, from the
        conversations in it. A partition processed to its end before a crash is never read
        again, and only its conversations still know how far its event time went (the window
        watermark needs it; the changelog is written before offsets are committed)."""
        for stored in self._table.values():
            if stored is None:
                continue
            newest = stored.timeline.newest_ms
            if newest > self.partition_max_ms.get(stored.partition, -1):
                self.partition_max_ms[stored.partition] = newest

    def forget_watermarks(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.partition_max_ms.pop(partition, None)
            self.partition_next_offset.pop(partition, None)

    def _reject(self, reason: str, error: str) -> Rejected:
        self._metrics.events.inc()
        self._metrics.dlq.labels(reason).inc()
        return Rejected(reason, error)


def _deltas(record: Record, ingested: Ingested, derived: list[tuple[int, Fact]]
            ) -> Iterator[FactDelta]:
    weighted = [(-1, fact) for fact in ingested.retracted] + [(1, fact) for fact in ingested.added]
    for seq, (weight, fact) in enumerate(weighted + derived):
        yield FactDelta(record.partition, record.offset, seq, weight, fact)
