"""The worker's per-event step, apart from Faust so it runs and tests on a plain dict.

decode -> the conversation's Timeline from the table -> ingest -> write back -> record.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import NamedTuple

from processor.errors import InvalidEvent
from processor.events import ConversationEvent, event_from_json
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.timeline import Ingested, Timeline

__all__ = ["EventProcessor", "Rejected"]


class Rejected(NamedTuple):
    """A record that could not be processed; it goes to the DLQ with this reason."""

    reason: str
    error: str


class EventProcessor:
    """Applies canonical events to per-conversation timelines held in `table`."""

    def __init__(
        self,
        table: MutableMapping[str, Timeline],
        metrics: WorkerMetrics,
        awaiting: AwaitingIndex,
        grace_ms: int,
    ) -> None:
        self._table = table
        self._metrics = metrics
        self._awaiting = awaiting
        self._grace_ms = grace_ms

    def process_record(self, key: bytes | None, value: bytes | None) -> Ingested | Rejected:
        """Decode one Kafka record and apply it; never raises for bad input."""
        if value is None:
            return self._reject("empty", "record has no value")
        try:
            event = event_from_json(value)
        except InvalidEvent as exc:
            return self._reject("invalid", str(exc))
        if key is not None and key != event.conversation_id.encode():
            return self._reject("wrong_key", "record key is not the event's conversation_id")
        return self.process(event)

    def process(self, event: ConversationEvent) -> Ingested:
        timeline = self._table.get(event.conversation_id)
        if timeline is None:
            timeline = Timeline(grace_ms=self._grace_ms)
        outcome = timeline.ingest(event)
        metrics = self._metrics
        metrics.events.inc()
        if outcome.duplicate:
            metrics.duplicates.inc()
            return outcome
        self._table[event.conversation_id] = timeline
        metrics.record(outcome.added)
        if outcome.retracted:
            metrics.retractions.inc(len(outcome.retracted))
        if outcome.late:
            metrics.late.inc()
        elif outcome.reordered:
            metrics.reordered.inc()
        self._awaiting.update(event.conversation_id, event.channel, timeline.state.waiting_since_ms)
        return outcome

    def rebuild_awaiting(self) -> None:
        """After a rebalance: index exactly the conversations now in the table."""
        self._awaiting.clear()
        for conversation_id, timeline in self._table.items():
            self._awaiting.update(
                conversation_id, timeline.channel, timeline.state.waiting_since_ms
            )

    def _reject(self, reason: str, error: str) -> Rejected:
        self._metrics.events.inc()
        self._metrics.dlq.labels(reason).inc()
        return Rejected(reason, error)
