"""The streaming engine (`processor.kpi.timeline.Timeline`) against the batch oracle
(`tests.oracle`), on generated conversation logs.

The oracle folds the whole log at once, in the documented total order; the engine ingests one
event at a time, per conversation, in delivery order. Net facts (all added minus all retracted)
are mapped to the oracle's `Report` shape and must be equal:

(a) in-order delivery; (b) shuffled delivery whose displacement stays within the grace period,
plus duplicates; (c) the conversations still awaiting an agent reply at the end. Plus the late
rule of docs/kpis.md ("Event time and order"), modelled here on its own (`late_and_reordered`):
an event is late exactly when it is at or before its conversation's checkpoint time, and any
delivery order with no late event gives the oracle's report. And the two rules where the engine
and the first reading of the docs disagreed, decided for the engine: handoffs (a re-assignment
after a handoff does not restart the human clock) and late events.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.events import ConversationEvent, event_from_dict
from processor.kpi.facts import FCR_ONE_AGENT, Fact, FactKind, effective_ms
from processor.kpi.timeline import Ingested, Timeline
from tests.oracle import Report, ReportBuilder, report, report_diff, total_order_key
from tests.oracle.batch import DEFAULT_REOPEN_WINDOW_MS

BASE_MS = 1_700_000_000_000
CHANNELS = ("whatsapp", "telegram", "chatwoot")
AGENTS = ("a1", "a2", None)
BOTS = ("bot1", None)
GRACES_MS = (0, 1_000, 60_000, 600_000)
REOPEN_WINDOWS_MS = (1_000, 90_000, 600_000, 72 * 3600 * 1000)
"""Short ones too, so generated logs reopen cycles both within and after the window."""

EXAMPLES = int(os.environ.get("MSGKPI_ORACLE_EXAMPLES", "200"))
"""Examples for the main properties; raise it for a longer hunt."""

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# Generated logs


_ACTIONS = (
    # (weight, action)
    (9, "customer"),
    (6, "agent"),
    (3, "bot"),
    (1, "system"),
    (1, "note"),
    (2, "handoff"),
    (2, "assigned"),
    (3, "resolved"),
    (1, "reopened"),
    (1, "tagged"),
    (1, "csat"),
)
_ACTION_BAG = tuple(action for weight, action in _ACTIONS for _ in range(weight))
_STEPS_S = (0, 0, 0, 1, 1, 2, 5, 30, 61, 90, 400, 700)


def _event(
    etype: str, event_id: str, channel: str, conversation: str, at_ms: int, **fields: Any
) -> ConversationEvent:
    data: dict[str, Any] = {
        "event_id": event_id,
        "type": etype,
        "channel": channel,
        "conversation_id": conversation,
        "occurred_at": at_ms,
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    return event_from_dict(data)


@st.composite
def conversation_events(draw: st.DrawFn, conversation: str) -> list[ConversationEvent]:
    """One conversation's events, as written (in script order; times may tie or go back)."""
    channel = draw(st.sampled_from(CHANNELS))
    clock_s = draw(st.integers(0, 900))
    steps = draw(st.integers(1, 22))
    events = []
    for i in range(steps):
        clock_s += draw(st.sampled_from(_STEPS_S))
        at_ms = BASE_MS + clock_s * 1000
        if draw(st.integers(0, 11)) == 0:  # clock skew: stamped before what came before it
            at_ms -= draw(st.integers(1, 45)) * 1000
        if draw(st.integers(0, 14)) == 0:  # a platform with millisecond resolution
            at_ms += draw(st.integers(1, 999))
        # ids in random order so that same-millisecond ties break in varied ways
        event_id = f"e{draw(st.integers(0, 99)):02d}-{conversation}-{i}"
        action = draw(st.sampled_from(_ACTION_BAG))
        args: tuple[str, str, str, int] = (event_id, channel, conversation, at_ms)
        if action == "customer":
            event = _event("message", *args, author="customer",
                           customer_id=draw(st.sampled_from(("u1", "u2", None))),
                           tags=draw(st.sampled_from((None, ["vip"], ["vip", "sales", "vip"]))))
        elif action == "agent":
            event = _event("message", *args, author="agent", agent_id=draw(st.sampled_from(AGENTS)))
        elif action == "bot":
            event = _event("message", *args, author="bot", agent_id=draw(st.sampled_from(BOTS)))
        elif action == "system":
            event = _event("message", *args, author="system")
        elif action == "note":
            author = draw(st.sampled_from(("agent", "agent", "bot", "customer", "system")))
            event = _event(
                "message", *args, author=author, agent_id=draw(st.sampled_from(AGENTS)),
                private=True,
            )
        elif action in ("handoff", "assigned"):
            event = _event(action, *args, agent_id=draw(st.sampled_from(AGENTS)))
        elif action == "resolved":
            kind = draw(st.sampled_from(("resolved", "resolved", "no_reply_needed", "spam")))
            event = _event(
                "resolved", *args, resolution=kind, agent_id=draw(st.sampled_from(AGENTS))
            )
        elif action == "tagged":
            event = _event("tagged", *args, tags=draw(st.sampled_from(
                (["billing"], ["billing", "refund"], ["sales"]))))
        elif action == "csat":
            scale = draw(st.sampled_from((5, 10)))
            low = 1 if scale == 5 else 0
            event = _event("csat", *args, score=draw(st.integers(low, scale)), scale=scale,
                           private=draw(st.sampled_from((None, None, True))))
        else:
            event = _event("reopened", *args)
        events.append(event)
    return events


@st.composite
def event_logs(draw: st.DrawFn) -> list[ConversationEvent]:
    """Several conversations on a few channels, interleaved, each conversation in script order."""
    count = draw(st.integers(1, 5))
    log: list[ConversationEvent] = []
    for n in range(count):
        log.extend(draw(conversation_events(f"c{n}")))
    return log


def in_order(log: Iterable[ConversationEvent]) -> list[ConversationEvent]:
    """The documented total order (conversations interleaved by event time)."""
    return sorted(log, key=lambda e: (*total_order_key(e), e.conversation_id))


@st.composite
def bounded_shuffles(
    draw: st.DrawFn, log: list[ConversationEvent], grace_ms: int
) -> list[ConversationEvent]:
    """A delivery order of `log` where no event comes after one more than `grace_ms` later in
    event time than itself, plus duplicates re-delivered anywhere after their first copy.

    Each event gets a delivery time of event time + jitter in [0, grace]: if f is delivered
    before e then t_f <= t_f + j_f <= t_e + j_e <= t_e + grace.
    """
    keyed = []
    for index, event in enumerate(log):
        jitter = draw(st.one_of(st.sampled_from((0, grace_ms)), st.integers(0, grace_ms)))
        tiebreak = draw(st.integers(0, 3))
        keyed.append((event.occurred_at_ms + jitter, tiebreak, index, event))
    order = [event for *_, event in sorted(keyed, key=lambda k: k[:3])]
    return with_duplicates(draw, order)


def with_duplicates(draw: st.DrawFn, order: list[ConversationEvent]) -> list[ConversationEvent]:
    """`order` with up to 4 events re-delivered somewhere after their first copy."""
    order = list(order)
    for _ in range(draw(st.integers(0, 4))):
        if not order:
            break
        first = draw(st.integers(0, len(order) - 1))
        at = draw(st.integers(first + 1, len(order)))
        order.insert(at, order[first])
    return order


@st.composite
def any_shuffles(draw: st.DrawFn, log: list[ConversationEvent]) -> list[ConversationEvent]:
    """Any delivery order of `log` (no bound on displacement), plus duplicates."""
    return with_duplicates(draw, draw(st.permutations(log)))


# ---------------------------------------------------------------------------------------------
# The late rule, modelled from docs/kpis.md


def late_and_reordered(
    delivery: Iterable[ConversationEvent], grace_ms: int
) -> list[tuple[bool, bool]]:
    """(late, reordered) that docs/kpis.md predicts for each delivery (duplicates: neither).

    Per conversation, the events delivered so far that are strictly older than the newest one
    minus grace are settled, and the checkpoint time is the newest of them. An arriving event
    at or before the checkpoint time is late. Otherwise it is placed in exact order, and is
    reordered when an event delivered before it sorts after it. (A late event is settled at
    once; it is at or before the checkpoint time, so it never moves it.)
    """
    delivered: dict[str, list[ConversationEvent]] = {}
    seen: set[str] = set()
    flags = []
    for event in delivery:
        if event.event_id in seen:
            flags.append((False, False))
            continue
        seen.add(event.event_id)
        before = delivered.setdefault(event.conversation_id, [])
        newest = max((e.occurred_at_ms for e in before), default=None)
        settled = [] if newest is None else [
            e.occurred_at_ms for e in before if e.occurred_at_ms < newest - grace_ms
        ]
        late = bool(settled) and event.occurred_at_ms <= max(settled)
        reordered = not late and any(
            total_order_key(e) > total_order_key(event) for e in before
        )
        flags.append((late, reordered))
        before.append(event)
    return flags


# ---------------------------------------------------------------------------------------------
# Streaming side


@dataclass
class Streamed:
    report: Report
    """Net facts and end states mapped to the oracle's shape."""
    results: list[tuple[ConversationEvent, Ingested]]


def facts_to_builder(facts: Counter[Fact]) -> ReportBuilder:
    out = ReportBuilder()
    for fact, times in sorted(facts.items()):
        assert times >= 0, f"fact retracted more often than added: {fact}"
        for _ in range(times):
            if fact.kind is FactKind.MESSAGE:
                out.message(fact.channel, fact.role, fact.agent)
            elif fact.kind is FactKind.CYCLE_OPENED:
                out.cycle_opened(fact.channel)
            elif fact.kind is FactKind.CYCLE_RESOLVED:
                out.cycle_resolved(fact.channel, fact.role, fact.agent, fact.value == 1)
            elif fact.kind is FactKind.FIRST_RESPONSE:
                out.first_response(fact.channel, fact.role, fact.agent, fact.value)
            elif fact.kind is FactKind.REPLY:
                out.reply(fact.channel, fact.role, fact.agent, fact.value)
            elif fact.kind is FactKind.RESOLUTION:
                out.resolution(fact.channel, fact.value)
            elif fact.kind is FactKind.HANDLE:
                out.handle(fact.channel, fact.value)
            elif fact.kind is FactKind.CLOCK_SKEW:
                out.clock_skew(fact.channel)
            elif fact.kind is FactKind.ANSWERED:
                out.message_answered(fact.channel, fact.at_ms, effective_ms(fact))
            elif fact.kind is FactKind.EXCLUDED:
                out.message_excluded(fact.channel, fact.at_ms, effective_ms(fact),
                                     answered=fact.role == "answered")
            elif fact.kind is FactKind.CSAT:
                out.survey(fact.channel, int(fact.role), fact.value)
            elif fact.kind is FactKind.TAG:
                out.tag(fact.channel, fact.role)
            elif fact.kind is FactKind.FCR:
                out.fcr_decided(fact.channel, fact.at_ms, fact.role == FCR_ONE_AGENT)
            elif fact.kind is FactKind.REOPENED:
                out.fcr_reopened(fact.channel, fact.at_ms, fact.role == FCR_ONE_AGENT)
            else:  # pragma: no cover
                raise AssertionError(f"unknown fact kind {fact.kind}")
    return out


def stream(delivery: Iterable[ConversationEvent], grace_ms: int,
           reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS) -> Streamed:
    timelines: dict[str, Timeline] = {}
    net: Counter[Fact] = Counter()
    results = []
    for event in delivery:
        timeline = timelines.get(event.conversation_id)
        if timeline is None:
            timeline = timelines[event.conversation_id] = Timeline.new(grace_ms,
                                                                       reopen_window_ms)
        result = timeline.ingest(event)
        results.append((event, result))
        net.update(result.added)
        net.subtract(result.retracted)
    out = facts_to_builder(net)
    for conversation, timeline in timelines.items():
        state = timeline.state
        if state.open and state.waiting_since_ms is not None:
            out.awaiting(conversation, state.waiting_since_ms)
    return Streamed(out.build(), results)


def without_awaiting(r: Report) -> Report:
    return replace(r, awaiting={})


def describe(events: Iterable[ConversationEvent]) -> str:
    """One short line per event, for failure messages."""
    lines = []
    for e in events:
        what = e.author.value if e.author is not None else e.type.value
        if e.type.value == "resolved":
            what += f"({e.resolution.value})"
        lines.append(
            f"  {e.conversation_id}/{e.channel} t={(e.occurred_at_ms - BASE_MS) / 1000:+.3f}s "
            f"{what}{' private' if e.private else ''} agent={e.agent_id} id={e.event_id}"
        )
    return "\n".join(lines)


def assert_same(
    expected: Report, actual: Report, delivery: Iterable[ConversationEvent] = ()
) -> None:
    diffs = report_diff(expected, actual)
    assert not diffs, (
        "streaming differs from the oracle:\n" + "\n".join(diffs)
        + "\ndelivered:\n" + describe(delivery)
    )


# ---------------------------------------------------------------------------------------------
# (a) in-order delivery


@SETTINGS
@given(log=event_logs(), grace_ms=st.sampled_from(GRACES_MS),
       reopen_ms=st.sampled_from(REOPEN_WINDOWS_MS))
def test_in_order_delivery_matches_oracle(log: list[ConversationEvent], grace_ms: int,
                                          reopen_ms: int) -> None:
    delivery = in_order(log)
    streamed = stream(delivery, grace_ms, reopen_ms)
    assert_same(without_awaiting(report(log, reopen_ms)), without_awaiting(streamed.report),
                delivery)
    for event, result in streamed.results:
        assert not result.late, event
        assert not result.reordered, event
        assert not result.duplicate, event


# ---------------------------------------------------------------------------------------------
# (b) shuffled within grace, with duplicates


@SETTINGS
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS),
       reopen_ms=st.sampled_from(REOPEN_WINDOWS_MS))
def test_shuffled_within_grace_with_duplicates_matches_oracle(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int, reopen_ms: int
) -> None:
    delivery = data.draw(bounded_shuffles(log, grace_ms), label="delivery")
    streamed = stream(delivery, grace_ms, reopen_ms)
    assert_same(
        without_awaiting(report(delivery, reopen_ms)), without_awaiting(streamed.report),
        delivery
    )
    seen: set[str] = set()
    for event, result in streamed.results:
        assert not result.late, event
        if event.event_id in seen:
            assert result.duplicate, event
            assert result.added == [] and result.retracted == [], event
        else:
            assert not result.duplicate, event
        seen.add(event.event_id)


# ---------------------------------------------------------------------------------------------
# (c) awaiting an agent reply at the end


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 4))
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS))
def test_awaiting_at_end_matches_oracle(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int
) -> None:
    expected = report(log).awaiting
    assert stream(in_order(log), grace_ms).report.awaiting == expected
    delivery = data.draw(bounded_shuffles(log, grace_ms), label="delivery")
    assert stream(delivery, grace_ms).report.awaiting == expected


# ---------------------------------------------------------------------------------------------
# Late events (docs/kpis.md, "Event time and order"): late means at or before the checkpoint
# time, not merely more than the grace period behind the newest event (decided for the engine).


def _conversation(*rows: tuple[float, str, dict[str, Any]]) -> list[ConversationEvent]:
    """Events of one conversation from (seconds, type or author, extra fields) rows."""
    events = []
    for n, (t, what, fields) in enumerate(rows):
        args = (f"e{n}", "whatsapp", "c", BASE_MS + round(t * 1000))
        if what in ("customer", "agent", "bot", "system"):
            events.append(_event("message", *args, author=what, **fields))
        else:
            events.append(_event(what, *args, **fields))
    return events


def test_event_at_or_before_the_checkpoint_time_is_late() -> None:
    """The docs' example: grace 60 s, messages at 0 s and 10 s, then one at 71 s settles both
    (checkpoint time 10 s). An event stamped 5 s is late; one stamped 10.5 s, 60.5 s behind the
    newest, is placed exactly; then the checkpoint time is 10.5 s and an event stamped 10.5 s is
    late."""
    grace_ms = 60_000
    delivery = _conversation(
        (0, "customer", {}),
        (10, "system", {}),
        (71, "agent", {"agent_id": "a1"}),
        (5, "customer", {}),
        (10.5, "customer", {}),
        (10.5, "system", {}),
    )
    timeline = Timeline(grace_ms=grace_ms)
    results = [timeline.ingest(event) for event in delivery]
    expected = [(False, False)] * 3 + [(True, False), (False, True), (True, False)]
    assert [(r.late, r.reordered) for r in results] == expected
    assert late_and_reordered(delivery, grace_ms) == expected
    assert timeline.checkpoint_ms == BASE_MS + 10_500


def test_event_beyond_grace_is_placed_exactly_while_nothing_that_old_is_settled() -> None:
    """Formerly disagreement 2: an event more than the grace period behind the newest event is
    not late while nothing at or after its time has been settled; it is reordered and the KPIs
    are exact."""
    grace_ms = 60_000
    newest, old, reply, at_checkpoint = _conversation(
        (61, "system", {}),
        (0, "customer", {}),  # 61 s behind the newest event, grace 60 s; nothing settled yet
        (0.5, "agent", {"agent_id": "a1"}),  # 60.5 s behind; settled so far: 0 s
        (0.5, "customer", {}),  # at the checkpoint time (0.5 s): late
    )
    timeline = Timeline(grace_ms=grace_ms)
    net: Counter[Fact] = Counter()
    for event, late, reordered in ((newest, False, False), (old, False, True),
                                   (reply, False, True)):
        result = timeline.ingest(event)
        assert (result.late, result.reordered) == (late, reordered), event
        net.update(result.added)
        net.subtract(result.retracted)
    log = [newest, old, reply]
    assert late_and_reordered(log, grace_ms) == [(False, False), (False, True), (False, True)]
    expected = report(log)
    assert expected.channels["whatsapp"].first_response["agent"] == (0.5,)
    assert_same(without_awaiting(expected), facts_to_builder(net).build(), log)
    result = timeline.ingest(at_checkpoint)
    assert result.late and not result.reordered
    assert late_and_reordered([*log, at_checkpoint], grace_ms)[-1] == (True, False)


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 4))
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS))
def test_held_back_event_is_late_exactly_when_at_or_before_the_checkpoint(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int
) -> None:
    """Deliver in order, except one event held back to the end: nothing before it is late or
    reordered; it is late exactly when the model of the docs says so, and then more than the
    grace period behind the newest event of its conversation."""
    delivery = in_order(log)
    held = delivery.pop(data.draw(st.integers(0, len(delivery) - 1), label="held"))
    delivery.append(held)
    streamed = stream(delivery, grace_ms)
    for event, result in streamed.results[:-1]:
        assert not (result.late or result.reordered or result.duplicate), event
    late, reordered = late_and_reordered(delivery, grace_ms)[-1]
    result = streamed.results[-1][1]
    assert (result.late, result.reordered) == (late, reordered), describe(delivery)
    if late:
        newest = max(
            e.occurred_at_ms for e in delivery[:-1] if e.conversation_id == held.conversation_id
        )
        assert newest - held.occurred_at_ms > grace_ms


@SETTINGS
@given(data=st.data(), log=event_logs(), grace_ms=st.sampled_from(GRACES_MS))
def test_any_delivery_order_late_flags_follow_the_checkpoint_rule(
    data: st.DataObject, log: list[ConversationEvent], grace_ms: int
) -> None:
    """Any delivery order, with duplicates: every delivery is late / reordered / duplicate
    exactly as the docs predict, and every conversation with no late event gets exactly the
    oracle's KPIs, however far behind the grace period its events came."""
    delivery = data.draw(any_shuffles(log), label="delivery")
    streamed = stream(delivery, grace_ms)
    predicted = late_and_reordered(delivery, grace_ms)
    seen: set[str] = set()
    for (event, result), (late, reordered) in zip(streamed.results, predicted, strict=True):
        assert (result.late, result.reordered) == (late, reordered), (
            f"{event}\ndelivered:\n{describe(delivery)}"
        )
        assert result.duplicate == (event.event_id in seen), event
        seen.add(event.event_id)
    with_late = {event.conversation_id for (event, _), (late, _) in
                 zip(streamed.results, predicted, strict=True) if late}
    exact = [event for event in delivery if event.conversation_id not in with_late]
    if exact:
        assert_same(report(exact), stream(exact, grace_ms).report, exact)


# ---------------------------------------------------------------------------------------------
# Handoffs (docs/kpis.md, item 1): formerly disagreement 1, decided for the engine. An `assigned`
# is a handoff only while a bot handles the cycle (a bot replied since the last handoff, no agent
# reply yet); a `handoff` event is one whenever no agent has replied yet.


@pytest.mark.parametrize(
    ("rows", "frt", "replies"),
    [
        pytest.param(  # the docs' example: the re-assignment does not restart the clock
            [(0, "customer", {}), (0, "bot", {"agent_id": "bot1"}),
             (1, "assigned", {"agent_id": "a1"}), (2, "assigned", {"agent_id": "a2"}),
             (3, "agent", {"agent_id": "a2"})],
            2.0, (2.0,), id="reassigned_after_assigned_handoff",
        ),
        pytest.param(
            [(0, "customer", {}), (0, "bot", {}), (1, "handoff", {"agent_id": "a1"}),
             (2, "assigned", {"agent_id": "a2"}), (3, "agent", {"agent_id": "a2"})],
            2.0, (2.0,), id="assigned_after_handoff_event",
        ),
        pytest.param(
            [(0, "customer", {}), (0, "bot", {}), (1, "assigned", {"agent_id": "a1"}),
             (2, "handoff", {"agent_id": "a2"}), (3, "agent", {"agent_id": "a2"})],
            1.0, (1.0,), id="handoff_event_after_handoff_restarts_again",
        ),
        pytest.param(
            [(0, "customer", {}), (0, "bot", {}), (1, "assigned", {"agent_id": "a1"}),
             (2, "bot", {}), (3, "assigned", {"agent_id": "a2"}), (4, "agent", {"agent_id": "a2"})],
            1.0, (1.0,), id="bot_reply_after_handoff_makes_next_assigned_a_handoff",
        ),
        pytest.param(
            [(0, "customer", {}), (1, "assigned", {"agent_id": "a1"}),
             (3, "agent", {"agent_id": "a1"})],
            3.0, (3.0,), id="assigned_without_bot_is_no_handoff",
        ),
        pytest.param(
            [(0, "customer", {}), (1, "handoff", {"agent_id": "a1"}),
             (3, "agent", {"agent_id": "a1"})],
            2.0, (2.0,), id="handoff_event_without_bot",
        ),
        pytest.param(
            [(0, "customer", {}), (0, "bot", {}), (1, "agent", {"agent_id": "a1"}),
             (2, "customer", {}), (3, "bot", {}), (4, "handoff", {"agent_id": "a2"}),
             (5, "agent", {"agent_id": "a2"})],
            1.0, (1.0, 3.0), id="handoff_after_first_agent_reply_changes_nothing",
        ),
    ],
)
def test_handoff_rule(
    rows: list[tuple[float, str, dict[str, Any]]], frt: float, replies: tuple[float, ...]
) -> None:
    log = _conversation(*rows)
    expected = report(log)
    channel = expected.channels["whatsapp"]
    assert channel.first_response["agent"] == (frt,)
    assert channel.reply["agent"] == replies
    assert_same(expected, stream(log, 600_000).report, log)
    backwards = list(reversed(log))  # every displacement within the 600 s grace
    assert_same(expected, stream(backwards, 600_000).report, backwards)
