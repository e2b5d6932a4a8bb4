"""Reply rate, CSAT/NPS, tags and unique customers (docs/kpis.md items 6, 8, 9, 11): the facts
the fold emits, and what panes and windows make of them. Table-driven, one row per rule."""

from __future__ import annotations

from typing import Any

import pytest

from processor.events import ConversationEvent
from processor.kpi.facts import Fact, FactKind
from processor.kpi.windows import MAX_TAGS_PER_PANE, WindowAggregate, WindowSpec

from .builders import (
    BASE_MS,
    CONVERSATION,
    _event,
    agent,
    bot,
    customer,
    fold,
    fold_sorted,
    note,
    reopened,
    resolved,
    system,
    tagged,
    window_of,
)

# --- reply rate: the fold ----------------------------------------------------------------------

RateRow = tuple[str, float, str, float]
"""(kind, message time s, role, delay s) of an answered/excluded fact."""


def rate_rows(facts: list[Fact]) -> list[RateRow]:
    return [(str(f.kind), (f.at_ms - BASE_MS) / 1000, f.role, f.value) for f in facts
            if f.kind in (FactKind.ANSWERED, FactKind.EXCLUDED)]


def case(name: str, *args: Any) -> Any:
    return pytest.param(*args, id=name)


REPLY_RATE = [
    case("agent_reply_answers_every_waiting_message",
         [customer(0), customer(5), agent(20)],
         [("answered", 0, "agent", 20), ("answered", 5, "agent", 15)]),
    case("bot_reply_answers_too",
         [customer(0), bot(3), agent(10)],
         [("answered", 0, "bot", 3)]),
    case("only_the_first_reply_answers",
         [customer(0), agent(5), agent(9)],
         [("answered", 0, "agent", 5)]),
    case("system_message_and_private_note_answer_nothing",
         [customer(0), system(1), note(2)], []),
    case("unanswered_message_has_no_fact", [customer(0)], []),
    case("reply_after_resolution_still_answers_same_conversation",
         [customer(0), resolved(5), agent(30)],
         [("answered", 0, "agent", 30)]),
    case("reply_in_next_cycle_answers_old_message",
         [customer(0), resolved(5), customer(10), agent(12)],
         [("answered", 0, "agent", 12), ("answered", 10, "agent", 2)]),
    case("spam_excludes_answered_and_unanswered_messages_of_the_cycle",
         [customer(0), agent(2), customer(4), resolved(9, "spam")],
         [("answered", 0, "agent", 2), ("excluded", 0, "answered", 9),
          ("excluded", 4, "unanswered", 5)]),
    case("no_reply_needed_excludes_too",
         [customer(0), resolved(3, "no_reply_needed")],
         [("excluded", 0, "unanswered", 3)]),
    case("excluded_message_is_not_answered_later",
         [customer(0), resolved(3, "spam"), agent(8)],
         [("excluded", 0, "unanswered", 3)]),
    case("resolved_as_resolved_excludes_nothing",
         [customer(0), resolved(3)], []),
    case("exclusion_leaves_earlier_cycles_alone",
         [customer(0), resolved(1), reopened(2), customer(3), resolved(4, "spam")],
         [("excluded", 3, "unanswered", 1)]),
    case("reply_in_same_second_answers",
         [agent(0), customer(0)],
         [("answered", 0, "agent", 0)]),
]


@pytest.mark.parametrize(("events", "expected"), REPLY_RATE)
def test_reply_rate_facts(events: list[ConversationEvent], expected: list[RateRow]) -> None:
    assert rate_rows(fold_sorted(events)) == expected


@pytest.mark.parametrize(("customer_id", "key"), [("u7", "u7"), (None, CONVERSATION)])
def test_customer_message_carries_the_customer(customer_id: str | None, key: str) -> None:
    event = _event("message", 0, None, author="customer", customer_id=customer_id)
    [message, _opened] = fold([event])
    assert (message.kind, message.agent) == (FactKind.MESSAGE, key)


# --- csat and tags: the fold ---------------------------------------------------------------------


def survey(t: float, score: float, scale: int, **fields: Any) -> ConversationEvent:
    return _event("csat", t, None, score=score, scale=scale, **fields)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        case("csat_without_any_cycle_counts", [survey(0, 4, 5)], [("5", 4.0, 0)]),
        case("csat_in_a_cycle", [customer(0), survey(1, 2, 5)], [("5", 2.0, 1)]),
        case("nps", [survey(0, 9, 10)], [("10", 9.0, 0)]),
        case("private_csat_never_counts", [survey(0, 9, 10, private=True)], []),
    ],
)
def test_csat_facts(events: list[ConversationEvent], expected: list[tuple[str, float, int]]
                    ) -> None:
    assert [(f.role, f.value, f.cycle) for f in fold(events)
            if f.kind is FactKind.CSAT] == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        case("tagged_event", [tagged(0, "billing", "refund")], ["billing", "refund"]),
        case("tags_field_of_a_message", [_event("message", 0, None, author="customer",
                                                tags=["vip"])], ["vip"]),
        case("a_tag_once_per_event", [tagged(0, "a", "b", "a")], ["a", "b"]),
        case("private_event_tags_never_count",
             [_event("message", 0, None, author="agent", private=True, tags=["x"])], []),
        case("tags_on_csat_and_resolution",
             [customer(0), _event("resolved", 1, None, tags=["done"])], ["done"]),
    ],
)
def test_tag_facts(events: list[ConversationEvent], expected: list[str]) -> None:
    assert [f.role for f in fold(events) if f.kind is FactKind.TAG] == expected


# --- panes and windows ---------------------------------------------------------------------------

SPEC = WindowSpec("5m", 300_000)  # panes of 25 s
PANE = SPEC.pane_ms


def fact(kind: FactKind, at_s: float, role: str = "", agent: str = "", value: float = 1.0
         ) -> Fact:
    return Fact(kind, "whatsapp", int(at_s * 1000), "e", role, agent, value, 1)



def csat_f(at_s: float, scale: str, *, value: float) -> Fact:
    return fact(FactKind.CSAT, at_s, scale, value=value)


def customer_msg(at_s: float, who: str = "u1") -> Fact:
    return fact(FactKind.MESSAGE, at_s, "customer", who)


@pytest.mark.parametrize(
    ("facts", "end_s", "counts"),
    [
        case("answered_before_the_window_end_counts",
             [(customer_msg(10), 1), (fact(FactKind.ANSWERED, 10, "agent", value=100), 1)],
             300, {"reply_rate.received": 1, "reply_rate.answered": 1}),
        case("answered_after_the_window_end_does_not",
             [(customer_msg(30), 1), (fact(FactKind.ANSWERED, 30, "agent", value=280), 1)],
             300, {"reply_rate.received": 1}),
        case("same_answer_counts_in_a_later_window",
             [(customer_msg(30), 1), (fact(FactKind.ANSWERED, 30, "agent", value=280), 1)],
             300 + 25, {"reply_rate.received": 1, "reply_rate.answered": 1}),
        case("excluded_before_the_end_leaves_both",
             [(customer_msg(10), 1), (fact(FactKind.ANSWERED, 10, "agent", value=5), 1),
              (fact(FactKind.EXCLUDED, 10, "answered", value=50), 1)], 300, {}),
        case("excluded_after_the_end_still_counts",
             [(customer_msg(10), 1), (fact(FactKind.EXCLUDED, 10, "unanswered", value=295), 1)],
             300, {"reply_rate.received": 1}),
        case("withdrawn_answer_counts_no_more",
             [(customer_msg(10), 1), (fact(FactKind.ANSWERED, 10, "agent", value=5), 1),
              (fact(FactKind.ANSWERED, 10, "agent", value=5), -1)],
             300, {"reply_rate.received": 1}),
        case("answer_a_window_later_is_never_counted_for_that_size",
             [(customer_msg(0), 1), (fact(FactKind.ANSWERED, 0, "agent", value=300), 1)],
             300, {"reply_rate.received": 1}),
        case("csat_scale_5",
             [(csat_f(1, "5", value=5), 1), (csat_f(2, "5", value=3), 1),
              (csat_f(3, "5", value=4.5), 1)],
             300, {"csat.responses": 3, "csat.satisfied": 2, "csat.score_sum_x100": 1250}),
        case("nps_scale_10",
             [(csat_f(1, "10", value=10), 1), (csat_f(2, "10", value=7), 1),
              (csat_f(3, "10", value=6), 1), (csat_f(4, "10", value=0), 1)],
             300, {"nps.responses": 4, "nps.promoters": 1, "nps.detractors": 2}),
    ],
)
def test_window_counts(facts: list[tuple[Fact, int]], end_s: float, counts: dict[str, int]
                       ) -> None:
    got = window_of(facts, end_s)["counts"]
    assert {k: v for k, v in got.items() if not k.startswith("messages.")} == counts


@pytest.mark.parametrize(
    ("facts", "unique"),
    [
        case("distinct_customers_over_panes",
             [(customer_msg(1, "a"), 1), (customer_msg(40, "a"), 1),
              (customer_msg(80, "b"), 1)], 2),
        case("withdrawing_one_message_keeps_the_customer",
             [(customer_msg(1, "a"), 1), (customer_msg(2, "a"), 1),
              (customer_msg(2, "a"), -1)], 1),
        case("withdrawing_the_only_message_drops_the_customer",
             [(customer_msg(1, "a"), 1), (customer_msg(1, "a"), -1)], 0),
        case("agent_messages_are_no_customers",
             [(fact(FactKind.MESSAGE, 1, "agent", "a1"), 1)], 0),
    ],
)
def test_unique_customers(facts: list[tuple[Fact, int]], unique: int) -> None:
    assert window_of(facts, 300)["unique_customers"] == unique


def tag(at_s: float, name: str) -> Fact:
    return fact(FactKind.TAG, at_s, name)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        case("top_by_count_then_name",
             [(tag(1, "b"), 1), (tag(2, "a"), 1), (tag(3, "c"), 1), (tag(30, "c"), 1)],
             {"c": 2, "a": 1, "b": 1}),
        case("top_10_only",
             [(tag(1, f"t{n:02d}"), 1) for n in range(12)],
             {f"t{n:02d}": 1 for n in range(10)}),
        case("cap_per_pane_folds_newcomers_into_other",
             [(tag(1, f"t{n:02d}"), 1) for n in range(MAX_TAGS_PER_PANE + 3)]
             + [(tag(1, "t00"), 1)],
             {"other": 3, "t00": 2, **{f"t{n:02d}": 1 for n in range(1, 9)}}),
        case("withdrawn_tag_not_kept_comes_out_of_other",
             [(tag(1, f"t{n:02d}"), 1) for n in range(MAX_TAGS_PER_PANE + 1)]
             + [(tag(1, f"t{MAX_TAGS_PER_PANE:02d}"), -1)],
             {f"t{n:02d}": 1 for n in range(10)}),
        case("cap_is_per_pane",
             [(tag(1, f"t{n:02d}"), 1) for n in range(MAX_TAGS_PER_PANE)]
             + [(tag(30, "zz"), 1), (tag(31, "zz"), 1)],
             {"zz": 2, **{f"t{n:02d}": 1 for n in range(9)}}),
    ],
)
def test_tags(facts: list[tuple[Fact, int]], expected: dict[str, int]) -> None:
    assert window_of(facts, 300)["tags"] == expected


def test_pane_round_trips_with_tags_and_customers() -> None:
    pane = WindowAggregate()
    for f in (customer_msg(1, "a"), tag(1, "x"), fact(FactKind.ANSWERED, 1, "bot", value=30)):
        pane.apply(f, 1, PANE)
    assert WindowAggregate.from_dict(pane.to_dict()) == pane
    assert pane.counters["reply_rate.answered@1"] == 1
    old = WindowAggregate.from_dict({"counters": {"messages.agent": 1}, "sketches": {}})
    assert old.tags == {} and old.customers == {}

