"""The conversation stage and the window stage together, without Kafka, against the windowed
oracle (tests/oracle/windowed.py) on generated logs delivered out of order within the grace
period and with duplicates: every closed window, FCR and SLA attainment per policy included,
equals the oracle's."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from processor.events import ConversationEvent
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.event_step import EventProcessor, Record, StoredConversation
from processor.kpi.pane_store import WindowProcessor
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy
from processor.kpi.windows import WindowSpec
from processor.worker.sla_stage import SlaStage
from tests.oracle.windowed import SlaTargets, assert_snapshots_equal_oracle, expected_windows
from tests.unit.test_oracle_equivalence import (
    GRACES_MS,
    REOPEN_WINDOWS_MS,
    SETTINGS,
    bounded_shuffles,
    event_logs,
)

WINDOWS = {"1m": 60_000, "10m": 600_000}
TICK_EVERY = 5
"""Deliveries between window ticks, so windows also close while events still arrive."""
SLA: SlaTargets = {
    "whatsapp": ("gold", {"first_response": 60, "next_reply": 120, "resolution": 600}),
    "telegram": ("replies-only", {"next_reply": 30}),
}
"""Chatwoot has no policy; telegram's first wait counts as a next reply (no FRT target)."""
POLICIES = PolicySet((
    SlaPolicy("gold", PolicyMatch.of("whatsapp"), first_response_s=60, next_reply_s=120,
              resolution_s=600),
    SlaPolicy("replies-only", PolicyMatch.of("telegram"), next_reply_s=30),
))


def run(delivery: list[ConversationEvent], grace_ms: int, reopen_ms: int,
        policies: PolicySet | None = None) -> dict[tuple[str, str, int], Any]:
    table: dict[str, StoredConversation] = {}
    registry = CollectorRegistry()
    sla = SlaStage(policies, table, registry) if policies else None
    processor = EventProcessor(table, WorkerMetrics(registry), AwaitingIndex(), grace_ms,
                               observer=sla, reopen_window_ms=reopen_ms)
    windows = WindowProcessor({}, tuple(WindowSpec(n, s) for n, s in WINDOWS.items()), grace_ms)
    closed: dict[tuple[str, str, int], Any] = {}
    newest = 0
    for offset, event in enumerate(delivery):
        record = Record(0, event.conversation_id.encode(), orjson.dumps(event.to_dict()), offset)
        windows.apply(processor.process_batch([record]).deltas)
        newest = max(newest, event.occurred_at_ms)
        if offset % TICK_EVERY == 0 or offset == len(delivery) - 1:
            snapshots, _, _ = windows.tick(newest, lambda _: True)
            for s in snapshots:
                if s["state"] == "closed":
                    key = (s["channel"], s["window"], s["window_end"])
                    assert key not in closed, f"window {key} closed twice"
                    closed[key] = s
    return closed


@SETTINGS
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS[1:]),
       reopen_ms=st.sampled_from(REOPEN_WINDOWS_MS))
def test_closed_windows_equal_the_windowed_oracle(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int, reopen_ms: int
) -> None:
    delivery = data.draw(bounded_shuffles(log, grace_ms), label="delivery")
    closed = run(delivery, grace_ms, reopen_ms)
    assert_snapshots_equal_oracle(closed, expected_windows(log, WINDOWS, grace_ms, reopen_ms))


@SETTINGS
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS[1:]))
def test_sla_attainment_per_policy_equals_the_windowed_oracle(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int
) -> None:
    delivery = data.draw(bounded_shuffles(log, grace_ms), label="delivery")
    closed = run(delivery, grace_ms, REOPEN_WINDOWS_MS[-1], POLICIES)
    expected = expected_windows(log, WINDOWS, grace_ms, REOPEN_WINDOWS_MS[-1], SLA)
    assert_snapshots_equal_oracle(closed, expected)
