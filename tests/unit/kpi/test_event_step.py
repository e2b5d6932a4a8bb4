"""The worker's processing step on a plain dict table: decode, dedupe, DLQ reasons, metrics,
one write per changed conversation per batch, and forgetting revoked partitions."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import CollectorRegistry

from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.event_step import EventProcessor, Record, Rejected, StoredConversation

T0 = 1_767_225_600_000


def value(event_id: str, offset_s: float, conversation: str = "c1", **fields: object) -> bytes:
    event = {
        "event_id": event_id, "type": "message", "channel": "whatsapp",
        "conversation_id": conversation, "occurred_at": T0 + int(offset_s * 1000), **fields,
    }
    return orjson.dumps(event)


def rec(event_id: str, offset_s: float, conversation: str = "c1", partition: int = 0,
        **fields: object) -> Record:
    return Record(partition, conversation.encode(), value(event_id, offset_s, conversation,
                                                          **fields))


@dataclass
class Harness:
    processor: EventProcessor
    table: dict[str, StoredConversation]
    registry: CollectorRegistry
    awaiting: AwaitingIndex

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def h() -> Harness:
    registry = CollectorRegistry()
    table: dict[str, StoredConversation] = {}
    awaiting = AwaitingIndex()
    processor = EventProcessor(table, WorkerMetrics(registry), awaiting, grace_ms=600_000)
    return Harness(processor, table, registry, awaiting)


def test_customer_then_agent_reply_records_frt_and_clears_waiting(h: Harness) -> None:
    h.processor.process_batch([rec("m1", 0, author="customer")])
    assert len(h.awaiting) == 1
    h.processor.process_batch([rec("m2", 90, author="agent", agent_id="ana")])
    assert len(h.awaiting) == 0
    assert h.sample("msgkpi_first_response_seconds_sum", channel="whatsapp",
                    responder="agent") == 90.0
    assert h.sample("msgkpi_agent_first_responses_total", channel="whatsapp", agent="ana") == 1
    assert h.sample("msgkpi_messages_total", channel="whatsapp", author="customer") == 1


def test_a_batch_reports_each_changed_conversation_once_with_its_partition(h: Harness) -> None:
    outcome = h.processor.process_batch([
        rec("a1", 0, "a", partition=2, author="customer"),
        rec("b1", 1, "b", partition=5, author="customer"),
        rec("a2", 2, "a", partition=2, author="agent"),
    ])
    assert sorted(outcome.changed) == ["a", "b"]
    assert outcome.changed["a"].partition == 2 and outcome.changed["b"].partition == 5
    assert outcome.changed["a"] is h.table["a"]
    assert outcome.rejected == []


def test_duplicate_is_counted_and_changes_nothing(h: Harness) -> None:
    h.processor.process_batch([rec("m1", 0, author="customer")])
    outcome = h.processor.process_batch([rec("m1", 0, author="customer")])
    assert outcome.changed == {}
    assert h.sample("msgkpi_worker_duplicates_total") == 1.0
    assert h.sample("msgkpi_messages_total", channel="whatsapp", author="customer") == 1
    assert h.sample("msgkpi_worker_events_total") == 2.0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (Record(0, b"c1", None), "empty"),
        (Record(0, b"c1", b"{not json"), "invalid"),
        (Record(0, b"c1", orjson.dumps({"event_id": "x"})), "invalid"),
        (Record(0, b"other", value("m1", 0, author="customer")), "wrong_key"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(h: Harness, record: Record, reason: str) -> None:
    outcome = h.processor.process_batch([rec("ok", 0, "ok", author="customer"), record])
    assert outcome.rejected[0][0] == 1
    assert isinstance(outcome.rejected[0][1], Rejected)
    assert outcome.rejected[0][1].reason == reason
    assert list(h.table) == ["ok"]
    assert h.sample("msgkpi_worker_dlq_total", reason=reason) == 1.0


def test_reordering_that_only_moves_a_message_into_a_cycle_counts_it_once(h: Harness) -> None:
    h.processor.process_batch([rec("r", 100, author="agent", agent_id="dan")])
    h.processor.process_batch([rec("q", 40, author="customer")])
    assert h.sample("msgkpi_messages_total", channel="whatsapp", author="agent") == 1
    assert h.sample("msgkpi_first_response_seconds_sum", channel="whatsapp",
                    responder="agent") == 60
    assert h.sample("msgkpi_worker_fact_retractions_total") == 0
    assert h.sample("msgkpi_worker_reordered_events_total") == 1


def test_a_retraction_that_cannot_be_undone_is_counted(h: Harness) -> None:
    h.processor.process_batch([rec("q1", 0, author="customer"),
                               rec("r", 100, author="agent", agent_id="dan")])
    # A resolution stamped before the reply: the FRT of 100 s is withdrawn.
    h.processor.process_batch([Record(0, b"c1", orjson.dumps({
        "event_id": "res", "type": "resolved", "channel": "whatsapp", "conversation_id": "c1",
        "occurred_at": T0 + 50_000}))])
    assert h.sample("msgkpi_worker_fact_retractions_total") == 2  # the FRT and the reply time


def test_forget_partitions_drops_only_those_conversations(h: Harness) -> None:
    h.processor.process_batch([
        rec("a1", 0, "a", partition=1, author="customer"),
        rec("b1", 0, "b", partition=3, author="customer"),
    ])
    assert h.processor.forget_partitions({1}) == 1
    assert list(h.table) == ["b"]
    assert h.awaiting.by_channel(T0)["whatsapp"].waiting == 1


def test_rebuild_awaiting_indexes_the_table(h: Harness) -> None:
    h.processor.process_batch([rec("m1", 0, author="customer")])
    h.awaiting.clear()
    h.processor.rebuild_awaiting()
    assert h.awaiting.by_channel(T0 + 30_000)["whatsapp"].waiting == 1
    assert h.awaiting.by_channel(T0 + 30_000)["whatsapp"].oldest_wait_seconds == 30.0


DAY_S = 86_400


def resolved(event_id: str, offset_s: float, conversation: str, partition: int = 0) -> Record:
    return Record(partition, conversation.encode(), orjson.dumps({
        "event_id": event_id, "type": "resolved", "channel": "whatsapp",
        "conversation_id": conversation, "occurred_at": T0 + int(offset_s * 1000)}))


def test_idle_closed_conversations_expire_by_event_time_open_ones_never(h: Harness) -> None:
    """Expiry needs no open cycle and no event for 8 days (the dedupe horizon, longer than
    the reopen window plus grace), measured against the partition's newest event."""
    assert h.processor.idle_horizon_ms == 8 * DAY_S * 1000
    h.processor.process_batch([
        rec("c1", 0, "closed", author="customer"), resolved("r1", 10, "closed"),
        rec("o1", 0, "open", author="customer"),
        rec("p1", 0, "other-partition", partition=1, author="customer"),
        resolved("r2", 10, "other-partition", partition=1),
    ])
    h.processor.process_batch([rec("n1", 8 * DAY_S + 10, "new", author="customer")])
    assert h.processor.expire_idle(100) == []  # exactly 8 days: not yet
    h.processor.process_batch([rec("n2", 8 * DAY_S + 11, "new", author="customer")])
    assert h.processor.expire_idle(100) == [("closed", 0)]
    # "open" still waits for a reply; partition 1 has seen nothing newer
    assert sorted(h.table) == ["new", "open", "other-partition"]
    assert h.sample("msgkpi_worker_conversations_expired_total") == 1
    assert len(h.awaiting) == 2  # "open" and "new" still wait


def test_expiry_scans_a_bounded_number_per_call(h: Harness) -> None:
    h.processor.process_batch([rec(f"m{n}", 0, f"c{n}", author="customer") for n in range(5)]
                              + [resolved(f"r{n}", 1, f"c{n}") for n in range(5)])
    h.processor.process_batch([rec("late", 9 * DAY_S, "now", author="customer")])
    first = h.processor.expire_idle(2)
    assert len(first) <= 2
    rest = h.processor.expire_idle(10)
    assert sorted(c for c, _ in first + rest) == [f"c{n}" for n in range(5)]


def test_an_expired_conversation_starts_afresh(h: Harness) -> None:
    h.processor.process_batch([rec("m1", 0, "c", author="customer"), resolved("r1", 5, "c")])
    h.processor.process_batch([rec("x", 9 * DAY_S, "busy", author="customer")])
    assert h.processor.expire_idle(10) == [("c", 0)]
    h.processor.process_batch([rec("m2", 9 * DAY_S + 1, "c", author="customer")])
    assert h.table["c"].timeline.state.cycles == 1


def test_an_event_stamped_far_after_its_kafka_record_takes_the_record_time(h: Harness) -> None:
    """A device clock a year ahead must not carry the window watermark a year ahead."""
    written = T0 + 1000 * DAY_S * 1000
    ahead = Record(0, b"c1", value("m1", 1000 * DAY_S + 365 * DAY_S, author="customer"), 0,
                   written)
    drift = Record(0, b"c2", value("m2", 1000 * DAY_S + 299, "c2", author="customer"), 1,
                   written)
    h.processor.process_batch([ahead, drift])
    assert h.table["c1"].timeline.newest_ms == written
    assert h.table["c2"].timeline.newest_ms == written + 299_000  # within 5 minutes: kept
    assert h.processor.partition_max_ms[0] == written + 299_000
    assert h.sample("msgkpi_worker_future_events_total") == 1
    again = h.processor.process_batch([ahead])  # redelivered: the same decision, a duplicate
    assert again.changed == {} and h.sample("msgkpi_worker_duplicates_total") == 1


def test_newest_event_times_are_recovered_from_the_restored_table() -> None:
    """A partition processed to its end before a crash is not read again: its newest event
    time (which the window watermark needs) comes back from its conversations."""
    table: dict[str, StoredConversation] = {}
    before = EventProcessor(table, WorkerMetrics(CollectorRegistry()), AwaitingIndex(), 600_000)
    before.process_batch([rec("a", 10, "c1", partition=0, author="customer"),
                          rec("b", 50, "c2", partition=0, author="customer"),
                          rec("c", 30, "c3", partition=3, author="customer")])
    after = EventProcessor(table, WorkerMetrics(CollectorRegistry()), AwaitingIndex(), 600_000)
    assert after.partition_max_ms == {}
    after.recover_newest_times()
    assert after.partition_max_ms == {0: T0 + 50_000, 3: T0 + 30_000}
