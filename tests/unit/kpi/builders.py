"""Small builders for conversation events and fact summaries, so test tables read like the spec.

Times in the tables are seconds from an arbitrary base; the builders turn them into epoch
milliseconds. Every event goes through `event_from_dict`, so the tables only hold schema-valid
events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from processor.events import ConversationEvent, event_from_dict
from processor.kpi.conversation import CycleState, apply, event_order
from processor.kpi.facts import Fact, FactKind
from processor.kpi.windows import WindowAggregate, WindowSpec

BASE_MS = 1_700_000_000_000
FIVE_MINUTES = WindowSpec("5m", 300_000)  # panes of 25 s
CHANNEL = "whatsapp"
CONVERSATION = "conv-1"

_ids = itertools.count(1)


def ms(t: float) -> int:
    """Seconds from the base -> epoch milliseconds."""
    return BASE_MS + round(t * 1000)


def _event(etype: str, t: float, event_id: str | None, **fields: Any) -> ConversationEvent:
    data: dict[str, Any] = {
        "event_id": event_id or f"{etype}-{next(_ids)}",
        "type": etype,
        "channel": CHANNEL,
        "conversation_id": CONVERSATION,
        "occurred_at": ms(t),
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    return event_from_dict(data)


def msg(
    t: float,
    author: str,
    agent: str | None = None,
    *,
    id: str | None = None,
    private: bool | None = None,
) -> ConversationEvent:
    return _event("message", t, id, author=author, agent_id=agent, private=private)


def customer(t: float, *, id: str | None = None) -> ConversationEvent:
    return msg(t, "customer", id=id)


def agent(t: float, who: str | None = "a1", *, id: str | None = None) -> ConversationEvent:
    return msg(t, "agent", who, id=id)


def bot(t: float, who: str | None = "bot1", *, id: str | None = None) -> ConversationEvent:
    return msg(t, "bot", who, id=id)


def system(t: float, *, id: str | None = None) -> ConversationEvent:
    return msg(t, "system", id=id)


def note(t: float, who: str = "a1", *, id: str | None = None) -> ConversationEvent:
    """A private (internal) note by an agent."""
    return msg(t, "agent", who, id=id, private=True)


def handoff(t: float, to: str | None = "a1", *, id: str | None = None) -> ConversationEvent:
    return _event("handoff", t, id, agent_id=to)


def assigned(t: float, to: str | None = "a1", *, id: str | None = None) -> ConversationEvent:
    return _event("assigned", t, id, agent_id=to)


def resolved(
    t: float,
    resolution: str | None = None,
    by: str | None = None,
    *,
    id: str | None = None,
) -> ConversationEvent:
    return _event("resolved", t, id, resolution=resolution, agent_id=by)


def reopened(t: float, *, id: str | None = None) -> ConversationEvent:
    return _event("reopened", t, id)


def tagged(t: float, *tags: str, id: str | None = None) -> ConversationEvent:
    return _event("tagged", t, id, tags=list(tags) or ["billing"])


def csat(t: float, score: int = 5, *, id: str | None = None) -> ConversationEvent:
    return _event("csat", t, id, score=score, scale=5)


def fold(events: Iterable[ConversationEvent], state: CycleState | None = None) -> list[Fact]:
    """Apply the events in the given order to a fresh (or given) state; all facts emitted."""
    state = CycleState() if state is None else state
    facts: list[Fact] = []
    for event in events:
        facts.extend(apply(state, event))
    return facts


def fold_sorted(events: Iterable[ConversationEvent]) -> list[Fact]:
    """Fold in event-time order (`event_order`), as the timeline does."""
    return fold(sorted(events, key=event_order))


Row = tuple[str, str, str, float, int]
"""(kind, role, agent, value, cycle) of one fact: what a table asserts."""

CLOCK_KINDS = frozenset(
    {
        FactKind.FIRST_RESPONSE,
        FactKind.REPLY,
        FactKind.RESOLUTION,
        FactKind.HANDLE,
        FactKind.CLOCK_SKEW,
        FactKind.CYCLE_RESOLVED,
    }
)


def rows(facts: Iterable[Fact], kinds: Iterable[FactKind] = CLOCK_KINDS) -> list[Row]:
    """The facts of the given kinds, in emission order, reduced to what tables compare."""
    wanted = frozenset(kinds)
    return [
        (str(f.kind), f.role, f.agent, f.value, f.cycle) for f in facts if f.kind in wanted
    ]


def of_kind(facts: Iterable[Fact], kind: FactKind) -> list[Fact]:
    return [f for f in facts if f.kind is kind]


def window_of(facts: Iterable[tuple[Fact, int]], end_s: float = 300,
              spec: WindowSpec = FIVE_MINUTES) -> dict[str, Any]:
    """The summary of the window [end - size, end) of panes fed with (fact, weight)."""
    pane = spec.pane_ms
    panes: dict[int, WindowAggregate] = {}
    for f, weight in facts:
        panes.setdefault(f.at_ms - f.at_ms % pane, WindowAggregate()).apply(f, weight, pane)
    end = int(end_s * 1000)
    return WindowAggregate.window(
        panes.get(start) for start in range(end - spec.size_ms, end, pane)).summary()
