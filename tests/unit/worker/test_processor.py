"""The worker's per-event step on a plain dict table: decode, dedupe, DLQ reasons, metrics."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.timeline import Timeline
from processor.worker.processor import EventProcessor, Rejected

T0 = 1_767_225_600_000


def record(event_id: str, offset_s: float, **fields: object) -> bytes:
    event = {
        "event_id": event_id, "type": "message", "channel": "whatsapp",
        "conversation_id": "c1", "occurred_at": T0 + int(offset_s * 1000), **fields,
    }
    return orjson.dumps(event)


@pytest.fixture
def setup() -> tuple[EventProcessor, dict[str, Timeline], CollectorRegistry, AwaitingIndex]:
    registry = CollectorRegistry()
    table: dict[str, Timeline] = {}
    awaiting = AwaitingIndex()
    processor = EventProcessor(table, WorkerMetrics(registry), awaiting, grace_ms=600_000)
    return processor, table, registry, awaiting


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_customer_then_agent_reply_records_frt_and_clears_waiting(setup) -> None:  # type: ignore[no-untyped-def]
    processor, table, registry, awaiting = setup
    processor.process_record(b"c1", record("m1", 0, author="customer"))
    assert len(awaiting) == 1
    processor.process_record(b"c1", record("m2", 90, author="agent", agent_id="ana"))
    assert len(awaiting) == 0
    assert sample(registry, "msgkpi_first_response_seconds_sum",
                  channel="whatsapp", responder="agent") == 90.0
    assert sample(registry, "msgkpi_agent_first_responses_total",
                  channel="whatsapp", agent="ana") == 1.0
    assert sample(registry, "msgkpi_messages_total", channel="whatsapp", author="customer") == 1
    assert "c1" in table


def test_duplicate_is_counted_and_changes_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    processor, _, registry, _ = setup
    processor.process_record(b"c1", record("m1", 0, author="customer"))
    outcome = processor.process_record(b"c1", record("m1", 0, author="customer"))
    assert not isinstance(outcome, Rejected) and outcome.duplicate
    assert sample(registry, "msgkpi_worker_duplicates_total") == 1.0
    assert sample(registry, "msgkpi_messages_total", channel="whatsapp", author="customer") == 1
    assert sample(registry, "msgkpi_worker_events_total") == 2.0


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"c1", None, "empty"),
        (b"c1", b"{not json", "invalid"),
        (b"c1", orjson.dumps({"event_id": "x"}), "invalid"),
        (b"other", record("m1", 0, author="customer"), "wrong_key"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(setup, key, value, reason) -> None:  # type: ignore[no-untyped-def]
    processor, table, registry, _ = setup
    outcome = processor.process_record(key, value)
    assert isinstance(outcome, Rejected) and outcome.reason == reason
    assert table == {}
    assert sample(registry, "msgkpi_worker_dlq_total", reason=reason) == 1.0


def test_rebuild_awaiting_indexes_the_table(setup) -> None:  # type: ignore[no-untyped-def]
    processor, table, _, awaiting = setup
    processor.process_record(b"c1", record("m1", 0, author="customer"))
    awaiting.clear()
    processor.rebuild_awaiting()
    assert awaiting.by_channel(T0 + 30_000)["whatsapp"].waiting == 1
    assert awaiting.by_channel(T0 + 30_000)["whatsapp"].oldest_wait_seconds == 30.0
