"""`Timeline`: dedupe, reordering within grace, checkpointing, late events, persistence.

The contract: summed over all deliveries, added minus retracted facts equal the facts of folding
the sorted, deduplicated log with a fresh `CycleState`, whenever no event arrives later than the
grace period allows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.events import ConversationEvent
from processor.kpi.conversation import CycleState, event_order
from processor.kpi.facts import Fact, FactKind
from processor.kpi.timeline import DEDUPE_HORIZON_MS, Ingested, Timeline

from .builders import (
    agent,
    assigned,
    bot,
    csat,
    customer,
    fold,
    fold_sorted,
    handoff,
    ms,
    note,
    of_kind,
    reopened,
    resolved,
    system,
    tagged,
)

GRACE_S = 600
GRACE_MS = GRACE_S * 1000


def deliver(events: Iterable[ConversationEvent], timeline: Timeline | None = None,
            ) -> tuple[Counter[Fact], list[Ingested]]:
    """Ingest in the given (arrival) order; net facts (added - retracted) and each result."""
    timeline = Timeline(grace_ms=GRACE_MS) if timeline is None else timeline
    net: Counter[Fact] = Counter()
    results = []
    for event in events:
        result = timeline.ingest(event)
        net.update(result.added)
        net.subtract(result.retracted)
        results.append(result)
    return net, results


def nonzero(counter: Counter[Fact]) -> Counter[Fact]:
    """Drop zero counts but keep negatives, so a retraction of a never-added fact shows."""
    return Counter({fact: n for fact, n in counter.items() if n})


def expected_facts(events: Iterable[ConversationEvent]) -> Counter[Fact]:
    unique = {e.event_id: e for e in events}
    return Counter(fold_sorted(unique.values()))


# --- duplicates ------------------------------------------------------------------------------


def test_duplicate_same_event_id_twice_is_dropped_with_no_facts() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    event = customer(0, id="m1")
    first = timeline.ingest(event)
    again = timeline.ingest(event)
    assert first.added and not first.duplicate
    assert again.duplicate
    assert (again.added, again.retracted) == ([], [])


def test_duplicate_detected_by_event_id_even_when_the_payload_differs() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    timeline.ingest(customer(0, id="m1"))
    retry = agent(30, id="m1")
    result = timeline.ingest(retry)
    assert result.duplicate and not result.added
    assert timeline.state.first_agent_reply_ms is None


def test_duplicate_of_an_event_already_in_the_checkpoint_is_still_dropped() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    timeline.ingest(customer(0, id="old"))
    timeline.ingest(customer(GRACE_S * 3, id="new"))
    assert timeline.checkpoint_ms == ms(0)
    result = timeline.ingest(customer(0, id="old"))
    assert result.duplicate and not result.late


def test_duplicate_ids_remembered_for_the_platform_retry_horizon() -> None:
    """Meta retries for up to 7 days: an id seen 7 days of event time before the newest event
    is still dropped; ids older than the horizon are forgotten, so the id table stays bounded."""
    step_s = 3600.0  # one event an hour for 12 days
    timeline = Timeline(grace_ms=GRACE_MS)
    for i in range(288):
        timeline.ingest(system(i * step_s, id=f"s{i}"))
    assert DEDUPE_HORIZON_MS >= 7 * 24 * 3600 * 1000
    seven_days_before_newest = 287 - 7 * 24
    assert timeline.ingest(system(seven_days_before_newest * step_s,
                                  id=f"s{seven_days_before_newest}")).duplicate
    assert "s0" not in timeline.seen
    assert len(timeline.seen) < 288


# --- reordering within grace -----------------------------------------------------------------

IN_ORDER = [customer(0, id="c1"), bot(2, id="b1"), handoff(20, id="h1"), agent(50, id="a1"),
            customer(60, id="c2"), agent(90, "a2", id="a2"), resolved(120, id="r1"),
            customer(200, id="c3"), agent(230, id="a3"), resolved(260, "spam", id="r2")]


def test_in_order_delivery_adds_the_sorted_fold_and_retracts_nothing() -> None:
    net, results = deliver(IN_ORDER)
    assert not any(r.retracted or r.reordered or r.late or r.duplicate for r in results)
    assert nonzero(net) == Counter(fold(IN_ORDER))


REORDERINGS = [
    pytest.param(["a1", "c1"], id="reply_arrives_before_the_customer_message"),
    pytest.param(["r1", "a2"], id="resolution_arrives_before_the_last_reply"),
    pytest.param(["a1", "h1"], id="handoff_arrives_after_the_agent_reply"),
    pytest.param(["c2", "b1"], id="bot_reply_arrives_late_within_grace"),
    pytest.param(["c3", "r1"], id="next_cycle_arrives_before_the_resolution"),
    pytest.param(["r2", "a3", "c3", "r1", "a2", "c2", "a1", "h1", "b1", "c1"],
                 id="fully_reversed_within_grace"),
]


@pytest.mark.parametrize("first", REORDERINGS)
def test_reordering_within_grace_nets_the_same_facts_as_in_order(first: list[str]) -> None:
    by_id = {e.event_id: e for e in IN_ORDER}
    arrival = [by_id[i] for i in first] + [e for e in IN_ORDER if e.event_id not in first]
    net, results = deliver(arrival)
    assert nonzero(net) == Counter(fold(IN_ORDER))
    assert any(r.reordered for r in results)
    assert not any(r.late for r in results)


def test_reordered_event_retracts_what_it_invalidates() -> None:
    """A reply that arrived first counted as a reply in an unknown conversation; when the
    customer message it answers arrives, the refold retracts nothing that stays valid and adds
    the cycle, FRT and reply time."""
    timeline = Timeline(grace_ms=GRACE_MS)
    early = timeline.ingest(agent(10, id="a"))
    late = timeline.ingest(customer(0, id="c"))
    assert [f.kind for f in early.added] == [FactKind.MESSAGE]
    assert late.reordered and not late.late
    assert late.retracted == early.added  # the reply's MESSAGE fact now belongs to cycle 1
    assert sorted(f.kind for f in late.added) == sorted([
        FactKind.MESSAGE, FactKind.CYCLE_OPENED, FactKind.MESSAGE, FactKind.FIRST_RESPONSE,
        FactKind.REPLY, FactKind.ANSWERED,
    ])
    assert of_kind(late.added, FactKind.FIRST_RESPONSE)[0].value == 10


# hypothesis: a random valid conversation, delivered shuffled within grace, with duplicates.

_AGENTS = st.sampled_from(["a1", "a2", None])


@st.composite
def conversations(draw: st.DrawFn) -> list[ConversationEvent]:
    """Customer/agent/bot/system messages, notes, handoffs, assignments, resolutions of every
    kind, reopens, tags and csat, at non-decreasing times with frequent equal timestamps."""
    t = 0.0
    events: list[ConversationEvent] = []
    for i in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from([0, 0, 0.001, 1, 5, 30, 120, 700]))
        eid = f"e{i:02d}"
        kind = draw(st.sampled_from(["customer", "customer", "agent", "agent", "bot", "system",
                                     "note", "handoff", "assigned", "resolved", "reopened",
                                     "tagged", "csat"]))
        if kind == "customer":
            event = customer(t, id=eid)
        elif kind == "agent":
            event = agent(t, draw(_AGENTS), id=eid)
        elif kind == "bot":
            event = bot(t, id=eid)
        elif kind == "system":
            event = system(t, id=eid)
        elif kind == "note":
            event = note(t, id=eid)
        elif kind == "handoff":
            event = handoff(t, draw(_AGENTS), id=eid)
        elif kind == "assigned":
            event = assigned(t, draw(_AGENTS), id=eid)
        elif kind == "resolved":
            resolution = draw(st.sampled_from([None, "resolved", "no_reply_needed", "spam"]))
            event = resolved(t, resolution, id=eid)
        elif kind == "reopened":
            event = reopened(t, id=eid)
        elif kind == "tagged":
            event = tagged(t, id=eid)
        else:
            event = csat(t, id=eid)
        events.append(event)
    return events


def shuffled_within(events: list[ConversationEvent], rnd: random.Random, bound_ms: int,
                    duplicate_share: float) -> list[ConversationEvent]:
    """Arrival order: each event is delayed by up to `bound_ms` of event time (so, when it
    arrives, nothing newer than its time + bound has arrived); some are delivered again later."""
    arrivals = [(e.occurred_at_ms + rnd.randint(0, bound_ms), rnd.random(), e) for e in events]
    arrivals += [(e.occurred_at_ms + rnd.randint(0, 10 * GRACE_MS), rnd.random(), e)
                 for e in events if rnd.random() < duplicate_share]
    return [e for *_, e in sorted(arrivals, key=lambda a: (a[0], a[1]))]


@settings(max_examples=400, deadline=None)
@given(conversations(), st.randoms(use_true_random=False),
       st.sampled_from([0, 1, 60_000, GRACE_MS - 1]), st.sampled_from([0.0, 0.3, 1.0]))
def test_property_shuffled_within_grace_with_duplicates_nets_the_sorted_fold(
    events: list[ConversationEvent], rnd: random.Random, bound_ms: int, duplicate_share: float,
) -> None:
    arrival = shuffled_within(events, rnd, bound_ms, duplicate_share)
    timeline = Timeline(grace_ms=GRACE_MS)
    net, results = deliver(arrival, timeline)
    assert sum(r.duplicate for r in results) == len(arrival) - len(events)
    assert not any(r.late for r in results)
    assert nonzero(net) == Counter(fold_sorted(events))
    sorted_state = CycleState()
    fold(sorted(events, key=event_order), sorted_state)
    assert timeline.state == sorted_state


# --- checkpoint ------------------------------------------------------------------------------


def test_checkpoint_keeps_recent_bounded_to_events_within_grace_of_the_newest() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    events = [customer(t) if t % 3 else agent(t) for t in range(0, 7200, 45)]
    for event in events:
        timeline.ingest(event)
        newest = timeline.recent[-1].occurred_at_ms
        assert all(e.occurred_at_ms >= newest - GRACE_MS for e in timeline.recent)
        assert timeline.checkpoint_ms < newest - GRACE_MS or timeline.checkpoint_ms == -1
    assert len(timeline.recent) <= GRACE_S // 45 + 1
    assert timeline.recent == sorted(timeline.recent, key=event_order)


def test_checkpoint_event_exactly_grace_old_stays_recent() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    timeline.ingest(customer(0, id="edge"))
    timeline.ingest(customer(GRACE_S, id="newest"))
    assert [e.event_id for e in timeline.recent] == ["edge", "newest"]
    timeline.ingest(customer(GRACE_S + 0.001, id="newer"))
    assert [e.event_id for e in timeline.recent] == ["newest", "newer"]
    assert timeline.checkpoint_ms == ms(0)


def test_checkpoint_plus_recent_is_the_head_state() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    deliver([*IN_ORDER, customer(2000), agent(2100)], timeline)
    head = timeline.checkpoint.copy()
    fold(timeline.recent, head)
    assert head == timeline.state


def test_event_older_than_horizon_but_newer_than_checkpoint_is_reordered_not_late() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    timeline.ingest(customer(0))
    timeline.ingest(customer(700))  # checkpoint now holds t=0; horizon is t=100
    result = timeline.ingest(agent(50))
    assert result.reordered and not result.late
    assert of_kind(result.added, FactKind.FIRST_RESPONSE)[0].value == 50


# --- late events -----------------------------------------------------------------------------


def test_late_event_older_than_checkpoint_is_flagged_and_still_updates_state() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    deliver([customer(0), customer(100), customer(2000)], timeline)
    assert timeline.checkpoint_ms == ms(100)
    result = timeline.ingest(agent(50, "a9", id="late"))
    assert result.late and not result.reordered and not result.duplicate
    assert timeline.state.agents == ["a9"]
    assert timeline.state.first_agent_reply_ms == ms(50)
    assert timeline.state.waiting_since_ms == ms(2000)
    frt = of_kind(result.added, FactKind.FIRST_RESPONSE)
    assert [(f.event_id, f.value) for f in frt] == [("late", 50)]


def test_late_event_folded_after_the_checkpoint_and_reported_as_a_diff() -> None:
    """Best effort: the late event is applied to the checkpoint after everything it holds; the
    recent events are refolded on top and only what changed is added or retracted."""
    timeline = Timeline(grace_ms=GRACE_MS)
    _, results = deliver([customer(0), customer(100), customer(2000), agent(2010, id="a1")],
                         timeline)
    before = [(f.kind, f.value) for f in results[-1].added
              if f.kind not in (FactKind.MESSAGE, FactKind.ANSWERED)]
    assert before == [(FactKind.FIRST_RESPONSE, 2010), (FactKind.REPLY, 2010)]
    late = timeline.ingest(agent(5, "a0", id="late"))
    assert late.late
    clocks = [f for f in late.retracted if f.kind is not FactKind.ANSWERED]
    assert [(f.kind, f.event_id, f.value) for f in clocks] == [
        (FactKind.FIRST_RESPONSE, "a1", 2010), (FactKind.REPLY, "a1", 2010)]
    # reply rate: the late reply (folded after 100 s) answers the messages at 0 and 100 s
    assert sorted((f.event_id, f.value) for f in late.retracted
                  if f.kind is FactKind.ANSWERED) == [("a1", 1910), ("a1", 2010)]
    assert sorted((f.kind, f.event_id, f.value) for f in late.added
                  if f.kind is not FactKind.ANSWERED) == sorted([
        (FactKind.MESSAGE, "late", 1), (FactKind.FIRST_RESPONSE, "late", 5),
        (FactKind.REPLY, "late", 5), (FactKind.REPLY, "a1", 10)])


def test_late_event_stamped_before_what_it_answers_is_clamped_and_counted() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    deliver([customer(0), agent(10), customer(100), customer(2000)], timeline)
    assert timeline.checkpoint_ms == ms(100)
    result = timeline.ingest(agent(50, id="late"))
    assert result.late
    skew = of_kind(result.added, FactKind.CLOCK_SKEW)
    assert [(f.event_id, f.value) for f in skew] == [("late", 50)]
    assert all(f.value >= 0 for f in result.added)


# --- persistence -----------------------------------------------------------------------------


def _round_trip(timeline: Timeline) -> Timeline:
    return Timeline.from_dict(orjson.loads(orjson.dumps(timeline.to_dict())))


@pytest.mark.parametrize("cut", [0, 1, 4, 7, 10])
def test_round_trip_through_orjson_continues_identically(cut: int) -> None:
    arrival = [IN_ORDER[1], IN_ORDER[0], *IN_ORDER[2:6], customer(1500, id="c9"),
               IN_ORDER[0], *IN_ORDER[6:], agent(1510, id="a9"), agent(5, "a0", id="late")]
    original = Timeline(grace_ms=GRACE_MS)
    deliver(arrival[:cut], original)
    restored = _round_trip(original)
    assert restored == original
    for event in arrival[cut:]:
        assert restored.ingest(event) == original.ingest(event)
    assert restored == original
    assert _round_trip(restored) == original


def test_round_trip_keeps_extra_fields_and_flags_of_recent_events() -> None:
    timeline = Timeline(grace_ms=GRACE_MS)
    timeline.ingest(note(0, id="n"))
    timeline.ingest(tagged(1, "vip", "billing", id="t"))
    timeline.ingest(resolved(2, "no_reply_needed", id="r"))
    assert _round_trip(timeline).recent == timeline.recent
