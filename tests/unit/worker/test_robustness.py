"""Garbage and extreme input never crashes the worker's processing: any record, valid or not,
is applied or rejected with a reason, through the SLA stage (business-hours policies), the
window stage, its snapshots and the SLA timer, including event times at the schema's limits
(1970 and the year 9999)."""

from __future__ import annotations

import asyncio
from typing import Any

import fastjsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.calendar import BusinessCalendar, WeeklyInterval
from processor.kpi.event_step import EventProcessor, Record, Rejected, StoredConversation
from processor.kpi.pane_store import WindowProcessor
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy
from processor.kpi.windows import DEFAULT_WINDOWS
from processor.worker.sla_stage import SlaStage
from tests.unit.kpi.test_pane_store import SCHEMA

MAX_MS = 253_402_300_799_999
"""The schema's last instant: 9999-12-31T23:59:59.999Z."""
OFFICE = BusinessCalendar("Europe/Amsterdam",
                          [WeeklyInterval(day, 8 * 3600, 18 * 3600) for day in range(5)],
                          name="office")
POLICIES = PolicySet((
    SlaPolicy("office", PolicyMatch.of("whatsapp"), calendar="office", first_response_s=900,
              next_reply_s=1800, resolution_s=86_400),
    SlaPolicy("any", PolicyMatch.of("*"), first_response_s=60, next_reply_s=60,
              resolution_s=3600),
), {"office": OFFICE})
validate_snapshot = fastjsonschema.compile(SCHEMA)

times = st.one_of(
    st.sampled_from((0, 1, MAX_MS, MAX_MS - 1, 1_700_000_000_000)),
    st.sampled_from((0, 1, MAX_MS, MAX_MS - 1, 1_700_000_000_000)),
    st.integers(0, MAX_MS),
    st.integers(-5, MAX_MS + 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                  r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"),
    st.sampled_from(("9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-12:00", "2026-02-30T10:00:00Z")),
)
texts = st.one_of(st.sampled_from(("a1", "whatsapp", "", "x" * 300)), st.text(max_size=20))
events = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.sampled_from(("e1", "e2", "e3")), texts),
        "type": st.sampled_from(("message", "message", "message", "assigned", "handoff",
                                 "resolved", "reopened", "csat", "tagged", "other")),
        "channel": st.sampled_from(("whatsapp", "whatsapp", "telegram", "Bad Channel")),
        "conversation_id": st.sampled_from(("c1", "c2")),
        "occurred_at": times,
    },
    optional={
        "author": st.sampled_from(("customer", "customer", "agent", "agent", "bot", "system",
                                   "robot")),
        "agent_id": texts,
        "customer_id": texts,
        "private": st.booleans(),
        "priority": texts,
        "team": texts,
        "tags": st.lists(texts, max_size=3),
        "resolution": st.sampled_from(("resolved", "no_reply_needed", "spam", "maybe")),
        "score": st.one_of(st.integers(-10, 20), st.floats(allow_nan=False)),
        "scale": st.sampled_from((5, 10, 7)),
    },
)
values = st.one_of(events.map(orjson.dumps), events.map(orjson.dumps), events.map(orjson.dumps),
                   st.binary(max_size=40), st.none(),
                   st.just(b"[]"), st.just(b'{"event_id": 1}'))


async def _publish(key: bytes, value: bytes) -> asyncio.Future[None]:
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acked.set_result(None)
    return acked


def _record(offset: int, value: bytes | None) -> Record:
    key = None
    if value:
        try:
            key = str(orjson.loads(value).get("conversation_id", "")).encode()
        except (orjson.JSONDecodeError, AttributeError):
            key = b"c1"
    return Record(0, key, value, offset)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(values, min_size=1, max_size=12))
def test_any_records_are_applied_or_rejected_and_nothing_downstream_raises(
        batch: list[bytes | None]) -> None:
    table: dict[str, StoredConversation] = {}
    registry = CollectorRegistry()
    sla = SlaStage(POLICIES, table, registry, caught_up=lambda: {0: True}, publish=_publish,
                   persist=lambda conversation_id, stored: None)
    processor = EventProcessor(table, WorkerMetrics(registry), AwaitingIndex(), 600_000,
                               observer=sla)
    sla.event_time = processor.partition_max_ms
    windows = WindowProcessor({}, DEFAULT_WINDOWS, 600_000)
    outcome = processor.process_batch([_record(n, v) for n, v in enumerate(batch)])
    assert all(isinstance(reason, Rejected) for _, reason in outcome.rejected)
    windows.apply(outcome.deltas)
    for report_ms in (0, max(processor.partition_max_ms.values(), default=0), MAX_MS):
        windows.report(0, 0, report_ms, caught_up=True)
        watermark = windows.watermark(1, 0)
        assert watermark is not None
        snapshots, _, _ = windows.tick(watermark, lambda _: True)
        for snapshot in snapshots:
            validate_snapshot(orjson.loads(orjson.dumps(snapshot)))
    for wall_ms in (1_700_000_000_000, MAX_MS):
        published: list[Any] = asyncio.run(sla.tick(wall_ms))
        assert isinstance(published, list)
