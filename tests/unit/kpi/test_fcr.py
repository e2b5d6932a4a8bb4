"""First contact resolution (kpis.md item 10) in the cycle state machine.

A resolved cycle emits an FCR fact stamped at resolution + reopen window (when the outcome is
known); a new cycle opening before that time emits a REOPENED fact at the same time, which
cancels it. Tables list (kind, role, agent, decision time in s, cycle) rows in emission order.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processor.events import ConversationEvent
from processor.kpi.conversation import DEFAULT_REOPEN_WINDOW_MS, CycleState, apply
from processor.kpi.facts import FCR_ONE_AGENT, FCR_OTHER, Fact, FactKind
from processor.kpi.timeline import Timeline
from processor.kpi.windows import WindowAggregate

from .builders import BASE_MS, agent, bot, customer, ms, note, reopened, resolved

WINDOW_S = 3600
"""A one-hour reopen window keeps the tables readable."""

FcrRow = tuple[str, str, str, float, int]


def decided(role: str, at_s: float, who: str = "", cycle: int = 1) -> FcrRow:
    return ("fcr", role, who, at_s, cycle)


def reopen(role: str, at_s: float, cycle: int = 1) -> FcrRow:
    return ("reopened", role, "", at_s, cycle)


def fcr_rows(events: Sequence[ConversationEvent], window_s: float = WINDOW_S) -> list[FcrRow]:
    state = CycleState(reopen_window_ms=round(window_s * 1000))
    facts: list[Fact] = []
    for event in events:
        facts.extend(apply(state, event))
    return [(str(f.kind), f.role, f.agent, (f.at_ms - BASE_MS) / 1000, f.cycle) for f in facts
            if f.kind in (FactKind.FCR, FactKind.REOPENED)]


CASES = [
    pytest.param([customer(0), agent(10, "a1"), resolved(100)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="one_agent_is_decided_at_resolution_plus_reopen_window"),
    pytest.param([customer(0), agent(10, "a1"), customer(20), agent(30, "a1"), resolved(100)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="one_agent_replying_several_times_is_one_agent"),
    pytest.param([customer(0), agent(10, "a1"), agent(20, "a2"), resolved(100)],
                 [decided(FCR_OTHER, 100 + WINDOW_S)],
                 id="two_agents_is_not_first_contact"),
    pytest.param([customer(0), bot(5), resolved(100)],
                 [decided(FCR_OTHER, 100 + WINDOW_S)],
                 id="no_agent_bot_only_is_not_first_contact"),
    pytest.param([customer(0), agent(10, "a1"), note(20, "a2"), resolved(100)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="private_notes_do_not_make_an_agent_participate"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100, "spam")],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="every_resolution_kind_is_a_resolved_cycle"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), customer(200), agent(210, "a1")],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1"),
                  reopen(FCR_ONE_AGENT, 100 + WINDOW_S)],
                 id="customer_message_within_the_window_reopens"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), reopened(200)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1"),
                  reopen(FCR_ONE_AGENT, 100 + WINDOW_S)],
                 id="explicit_reopen_within_the_window_reopens"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), customer(100 + WINDOW_S)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="new_cycle_exactly_at_the_window_end_is_not_a_reopen"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100),
                  customer(100 + WINDOW_S - 0.001)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1"),
                  reopen(FCR_ONE_AGENT, 100 + WINDOW_S)],
                 id="new_cycle_one_ms_before_the_window_end_is_a_reopen"),
    pytest.param([customer(0), agent(10, "a1"), agent(11, "a2"), resolved(100), customer(150)],
                 [decided(FCR_OTHER, 100 + WINDOW_S), reopen(FCR_OTHER, 100 + WINDOW_S)],
                 id="reopen_of_a_multi_agent_cycle_keeps_its_role"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), agent(150, "a1")],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="agent_message_after_resolution_does_not_reopen"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), resolved(120)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1")],
                 id="second_resolution_without_a_new_cycle_decides_nothing"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), customer(200), agent(210, "a2"),
                  resolved(300), customer(300 + 2 * WINDOW_S)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1"),
                  reopen(FCR_ONE_AGENT, 100 + WINDOW_S),
                  decided(FCR_ONE_AGENT, 300 + WINDOW_S, "a2", cycle=2)],
                 id="each_cycle_is_decided_on_its_own"),
    pytest.param([customer(0), agent(10, "a1"), resolved(100), reopened(200), reopened(250)],
                 [decided(FCR_ONE_AGENT, 100 + WINDOW_S, "a1"),
                  reopen(FCR_ONE_AGENT, 100 + WINDOW_S)],
                 id="reopened_while_open_changes_nothing"),
]


@pytest.mark.parametrize(("events", "expected"), CASES)
def test_fcr_rules(events: list[ConversationEvent], expected: list[FcrRow]) -> None:
    assert fcr_rows(events) == expected


def test_default_reopen_window_is_72_hours() -> None:
    assert DEFAULT_REOPEN_WINDOW_MS == 72 * 3600 * 1000
    assert CycleState().reopen_window_ms == DEFAULT_REOPEN_WINDOW_MS
    rows = fcr_rows([customer(0), agent(10), resolved(100), customer(100 + 71 * 3600)],
                    window_s=72 * 3600)
    assert [row[0] for row in rows] == ["fcr", "reopened"]


def _pane(facts: list[Fact]) -> dict[str, int]:
    pane = WindowAggregate()
    for fact in facts:
        pane.apply(fact)
    counts: dict[str, int] = pane.summary()["counts"]
    return counts


def test_window_counts_first_contact_as_decided_minus_reopened() -> None:
    state = CycleState(reopen_window_ms=WINDOW_S * 1000)
    events = [customer(0), agent(10, "a1"), resolved(100), customer(200), agent(210, "a1"),
              resolved(300), customer(400), agent(410, "a1"), agent(420, "a2"), resolved(500),
              customer(600), agent(610, "a3"), resolved(700)]
    facts = [f for e in events for f in apply(state, e)
             if f.kind in (FactKind.FCR, FactKind.REOPENED)]
    # cycles 1-3 are each reopened by the next; cycle 3 had two agents; cycle 4 stands
    assert _pane(facts) == {"fcr.resolved": 4, "fcr.reopened": 3, "fcr.first_contact": 1}


def test_timeline_withdraws_a_reopen_that_a_reordered_event_undoes() -> None:
    """A late-arriving resolution (within grace) moves which cycle the customer's message
    opens: the facts the timeline retracts and adds keep FCR exact."""
    timeline = Timeline.new(grace_ms=600_000, reopen_window_ms=WINDOW_S * 1000)
    net: dict[tuple[FactKind, str, int], int] = {}
    for event in [customer(0), agent(10, "a1"), customer(200), resolved(100)]:
        outcome = timeline.ingest(event)
        for weight, facts in ((1, outcome.added), (-1, outcome.retracted)):
            for f in facts:
                if f.kind in (FactKind.FCR, FactKind.REOPENED):
                    key = (f.kind, f.role, f.at_ms)
                    net[key] = net.get(key, 0) + weight
    assert {k: n for k, n in net.items() if n} == {
        (FactKind.FCR, FCR_ONE_AGENT, ms(100 + WINDOW_S)): 1,
        (FactKind.REOPENED, FCR_ONE_AGENT, ms(100 + WINDOW_S)): 1,
    }


def test_pending_decision_survives_the_changelog_round_trip() -> None:
    state = CycleState(reopen_window_ms=WINDOW_S * 1000)
    for event in [customer(0), agent(10, "a1"), resolved(100)]:
        apply(state, event)
    restored = CycleState.from_dict(state.to_dict())
    assert restored.fcr_pending == [ms(100 + WINDOW_S), FCR_ONE_AGENT, 1]
    facts = apply(restored, customer(200))
    assert [f.kind for f in facts if f.kind is FactKind.REOPENED] == [FactKind.REOPENED]


def test_state_without_fcr_fields_loads_with_defaults() -> None:
    """Conversations persisted before FCR existed load and decide nothing retroactively."""
    data = CycleState().to_dict()
    del data["fcr_pending"], data["reopen_window_ms"]
    state = CycleState.from_dict(data)
    assert state.fcr_pending is None
    assert state.reopen_window_ms == DEFAULT_REOPEN_WINDOW_MS
