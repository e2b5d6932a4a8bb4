"""Per-agent figures of the event-time windows (docs/kpis.md, Windows, "Per agent"): which facts
feed which agent field, withdrawal, the 200-agents-per-pane cap, persistence."""

from __future__ import annotations

from typing import Any

import pytest

from processor.kpi.facts import Fact, FactKind
from processor.kpi.windows import (
    AGENT_FIELDS,
    MAX_AGENTS_PER_PANE,
    OTHER_AGENT,
    WindowAggregate,
    WindowSpec,
)

from .builders import BASE_MS, agent, assigned, bot, customer, fold_sorted, resolved, window_of

SPEC = WindowSpec("5m", 300_000)
PANE = SPEC.pane_ms


def fact(kind: FactKind, at_s: float, role: str = "", who: str = "", value: float = 1.0
         ) -> Fact:
    return Fact(kind, "whatsapp", int(at_s * 1000), f"e{at_s}", role, who, value, 1)


def figures(**values: int) -> dict[str, int]:
    return {name: values.get(name, 0) for name in AGENT_FIELDS}



def case(name: str, *args: Any) -> Any:
    return pytest.param(*args, id=name)


@pytest.mark.parametrize(
    ("facts", "agents"),
    [
        case("agent_message_counts", [(fact(FactKind.MESSAGE, 1, "agent", "ana"), 1)],
             {"ana": figures(messages=1)}),
        case("bot_and_system_messages_are_no_agents",
             [(fact(FactKind.MESSAGE, 1, "bot", "bot1"), 1),
              (fact(FactKind.MESSAGE, 2, "system", ""), 1)], {}),
        case("customer_messages_carry_the_customer_not_an_agent",
             [(fact(FactKind.MESSAGE, 1, "customer", "u1"), 1)], {}),
        case("agent_first_response_sums_whole_ms",
             [(fact(FactKind.FIRST_RESPONSE, 1, "agent", "ana", 2.5), 1),
              (fact(FactKind.FIRST_RESPONSE, 40, "agent", "ana", 0.001), 1)],
             {"ana": figures(first_responses=2, first_response_ms=2501)}),
        case("bot_first_response_and_reply_are_no_agents",
             [(fact(FactKind.FIRST_RESPONSE, 1, "bot", "bot1", 3.0), 1),
              (fact(FactKind.REPLY, 1, "bot", "bot1", 3.0), 1)], {}),
        case("agent_replies_count",
             [(fact(FactKind.REPLY, 1, "agent", "ana", 9.0), 1),
              (fact(FactKind.REPLY, 60, "agent", "bo", 1.0), 1)],
             {"ana": figures(replies=1), "bo": figures(replies=1)}),
        case("resolutions_of_any_kind_go_to_the_resolver",
             [(fact(FactKind.CYCLE_RESOLVED, 1, "resolved", "ana", 0.0), 1),
              (fact(FactKind.CYCLE_RESOLVED, 2, "spam", "ana", 1.0), 1)],
             {"ana": figures(resolutions=2)}),
        case("withdrawn_fact_leaves_no_agent",
             [(fact(FactKind.REPLY, 1, "agent", "ana", 9.0), 1),
              (fact(FactKind.REPLY, 1, "agent", "ana", 9.0), -1)], {}),
        case("withdrawn_first_response_leaves_the_other",
             [(fact(FactKind.FIRST_RESPONSE, 1, "agent", "ana", 4.0), 1),
              (fact(FactKind.FIRST_RESPONSE, 2, "agent", "ana", 6.0), 1),
              (fact(FactKind.FIRST_RESPONSE, 1, "agent", "ana", 4.0), -1)],
             {"ana": figures(first_responses=1, first_response_ms=6000)}),
        case("facts_outside_the_window_do_not_count",
             [(fact(FactKind.MESSAGE, 301, "agent", "ana"), 1)], {}),
    ],
)
def test_agent_figures(facts: list[tuple[Fact, int]], agents: dict[str, Any]) -> None:
    assert window_of(facts)["agents"] == agents


def test_figures_from_a_folded_conversation() -> None:
    events = [customer(0), bot(1), assigned(2, "ana"), agent(10, "ana"), customer(20),
              agent(25, "bo"), agent(26, "bo"), resolved(30)]
    got = window_of([(f, 1) for f in fold_sorted(events)], BASE_MS / 1000 + 300)["agents"]
    assert got == {
        "ana": figures(messages=1, replies=1, first_responses=1, first_response_ms=8000,
                       resolutions=1),
        "bo": figures(messages=2, replies=1),
    }


def test_pane_caps_distinct_agents_and_folds_newcomers_into_other() -> None:
    pane = WindowAggregate()
    for n in range(MAX_AGENTS_PER_PANE):
        pane.apply(fact(FactKind.MESSAGE, 1, "agent", f"a{n}"))
    late = fact(FactKind.REPLY, 2, "agent", "late", 5.0)
    pane.apply(late)
    pane.apply(fact(FactKind.MESSAGE, 2, "agent", "a0"))  # admitted agents keep counting
    agents = pane.summary()["agents"]
    assert len(agents) == MAX_AGENTS_PER_PANE + 1
    assert "late" not in agents
    assert agents[OTHER_AGENT] == figures(replies=1)
    assert agents["a0"] == figures(messages=2)
    pane.apply(late, -1)  # the withdrawal leaves the entry that counted it
    assert OTHER_AGENT not in pane.summary()["agents"]


def test_an_admitted_agent_keeps_its_slot_at_zero() -> None:
    pane = WindowAggregate()
    for n in range(MAX_AGENTS_PER_PANE):
        pane.apply(fact(FactKind.MESSAGE, 1, "agent", f"a{n}"))
    pane.apply(fact(FactKind.MESSAGE, 1, "agent", "a0"), -1)  # a0 at zero, still admitted
    pane.apply(fact(FactKind.MESSAGE, 2, "agent", "new"))
    assert pane.summary()["agents"] == {
        **{f"a{n}": figures(messages=1) for n in range(1, MAX_AGENTS_PER_PANE)},
        OTHER_AGENT: figures(messages=1)}


def test_windows_merge_agents_over_panes_and_panes_round_trip() -> None:
    pane = WindowAggregate()
    pane.apply(fact(FactKind.FIRST_RESPONSE, 1, "agent", "ana", 1.5))
    restored = WindowAggregate.from_dict(pane.to_dict())
    assert restored == pane
    other = WindowAggregate()
    other.apply(fact(FactKind.FIRST_RESPONSE, 30, "agent", "ana", 0.5))
    assert WindowAggregate.window([restored, other]).summary()["agents"] == {
        "ana": figures(first_responses=2, first_response_ms=2000)}
    legacy = pane.to_dict()
    del legacy["agents"]  # a pane record written before per-agent figures
    assert WindowAggregate.from_dict(legacy).agents == {}
