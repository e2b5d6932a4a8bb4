"""The per-conversation cycle state machine: one event in, the facts it completes out.

`CycleState` is a fold over a conversation's events in event-time order (see `event_order`);
`apply` is its step function. Reordering and duplicates are handled one level up, in
`processor.kpi.timeline`, which calls `apply` on events in the right order.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field, fields
from typing import Any, Final

from processor.events import Author, ConversationEvent, EventType, Resolution
from processor.kpi.facts import FCR_ONE_AGENT, FCR_OTHER, UNKNOWN_AGENT, Fact, FactKind

__all__ = ["DEFAULT_REOPEN_WINDOW_MS", "CycleState", "apply", "event_order"]

DEFAULT_REOPEN_WINDOW_MS: Final = 72 * 3600 * 1000
"""A cycle resolved at R counts as first contact resolution only if no new cycle opens before
R + this (kpis.md item 10)."""

_TIE_RANK: Final = {
    (EventType.REOPENED, None): 0,
    (EventType.MESSAGE, Author.CUSTOMER): 1,
    (EventType.HANDOFF, None): 2,
    (EventType.ASSIGNED, None): 2,
    (EventType.MESSAGE, Author.BOT): 3,
    (EventType.MESSAGE, Author.AGENT): 4,
    (EventType.MESSAGE, Author.SYSTEM): 5,
    (EventType.TAGGED, None): 6,
    (EventType.CSAT, None): 6,
    (EventType.RESOLVED, None): 7,
}


def event_order(event: ConversationEvent) -> tuple[int, int, str]:
    """Total order of a conversation's events: event time, then a fixed rank for events stamped
    in the same millisecond (platforms with second resolution make ties common: a customer
    message sorts before the reply and the reply before the resolution), then event id."""
    return (event.occurred_at_ms, _TIE_RANK[(event.type, event.author)], event.event_id)


@dataclass(slots=True)
class CycleState:
    """Where a conversation stands after the events folded so far (times in epoch ms)."""

    cycles: int = 0
    """Cycles opened so far; the current cycle's number when one is open."""
    open: bool = False
    cycle_start_ms: int = 0
    human_clock_ms: int = 0
    """When the human FRT clock started: cycle start, or the bot-to-human handoff."""
    bot_engaged: bool = False
    """A bot replied in this cycle before any human took over."""
    first_agent_reply_ms: int | None = None
    bot_replied: bool = False
    waiting_since_ms: int | None = None
    """Oldest customer message no agent has answered yet (the human series)."""
    bot_waiting_since_ms: int | None = None
    """Oldest customer message no one has answered yet (the bot series)."""
    assignee: str | None = None
    agents: list[str] = field(default_factory=list)
    """Agents who replied in this cycle, in order of their first reply."""
    last_customer_ms: int | None = None
    unanswered: list[list[int]] = field(default_factory=list)
    """[event time, cycle] of customer messages no agent or bot has replied to yet, in order
    (kept across cycles: a later reply in the conversation still answers them)."""
    answered_in_cycle: list[int] = field(default_factory=list)
    """Event times of the open cycle's customer messages already answered (an exclusion of
    the cycle withdraws them from the answered count too)."""
    reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS
    fcr_pending: list[Any] | None = None
    """[decision time ms, FCR role, cycle] of the last resolved cycle, until a new cycle opens:
    a new cycle before the decision time cancels its first contact resolution."""

    def to_dict(self) -> dict[str, Any]:
        """Equal to `dataclasses.asdict(self)` but sharing the lists with the state (it is
        written to the changelog after every batch); `copy` makes an independent state."""
        return {name: getattr(self, name) for name in _STATE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleState:
        return cls(**data)

    def copy(self) -> CycleState:
        return CycleState(**{name: _copied(getattr(self, name)) for name in _STATE_FIELDS})


_STATE_FIELDS: Final = tuple(f.name for f in fields(CycleState))
_IMMUTABLE: Final = frozenset({int, float, str, bool, type(None)})


def _copied(value: Any) -> Any:
    """A deep copy of a field value (scalars, lists, dicts), as `asdict` makes it."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    return deepcopy(value)


def _elapsed_seconds(
    start_ms: int, end_ms: int, event: ConversationEvent, facts: list[Fact], cycle: int
) -> float:
    if end_ms < start_ms:
        # One CLOCK_SKEW fact per event (kind + event_id identify a fact), with the largest
        # clamped amount, though several of its durations (e.g. FRT and reply) may be clamped.
        skew = _fact(FactKind.CLOCK_SKEW, event, value=(start_ms - end_ms) / 1000, cycle=cycle)
        for index, fact in enumerate(facts):
            if fact.kind is FactKind.CLOCK_SKEW and fact.event_id == event.event_id:
                facts[index] = max(fact, skew, key=lambda f: f.value)
                break
        else:
            facts.append(skew)
        return 0.0
    return (end_ms - start_ms) / 1000


def _fact(
    kind: FactKind,
    event: ConversationEvent,
    *,
    role: str = "",
    agent: str = "",
    value: float = 1.0,
    cycle: int = 0,
) -> Fact:
    return Fact(kind, event.channel, event.occurred_at_ms, event.event_id, role, agent, value,
                cycle)


def apply(state: CycleState, event: ConversationEvent) -> list[Fact]:
    """Advance `state` by one event (mutating it) and return the facts that event completes."""
    if event.private:
        return []
    handler = _HANDLERS.get(event.type)
    facts = handler(state, event) if handler else []
    if event.tags:
        facts.extend(_fact(FactKind.TAG, event, role=tag) for tag in dict.fromkeys(event.tags))
    return facts


def _open_cycle(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    _settle_fcr(state, event, facts)
    state.cycles += 1
    state.open = True
    state.cycle_start_ms = state.human_clock_ms = event.occurred_at_ms
    state.bot_engaged = state.bot_replied = False
    state.first_agent_reply_ms = None
    state.waiting_since_ms = state.bot_waiting_since_ms = None
    state.agents = []
    state.answered_in_cycle = []
    facts.append(_fact(FactKind.CYCLE_OPENED, event, cycle=state.cycles))


def _on_message(state: CycleState, event: ConversationEvent) -> list[Fact]:
    replying = event.author in (Author.AGENT, Author.BOT)
    agent = (event.agent_id or UNKNOWN_AGENT) if replying else ""
    facts: list[Fact] = []
    if event.author is Author.CUSTOMER:
        _on_customer_message(state, event, facts)
        agent = event.customer_id or event.conversation_id
    elif event.author is Author.AGENT and state.open:
        _on_agent_reply(state, event, agent, facts)
    elif event.author is Author.BOT and state.open:
        _on_bot_reply(state, event, agent, facts)
    if replying and state.unanswered:
        _answer(state, event, facts)
    # After the handlers, so a message that opens a cycle carries that cycle's number.
    cycle = state.cycles if state.open else 0
    return [_fact(FactKind.MESSAGE, event, role=str(event.author), agent=agent, cycle=cycle),
            *facts]


def _on_customer_message(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    if not state.open:
        _open_cycle(state, event, facts)
    at = event.occurred_at_ms
    state.last_customer_ms = at
    state.unanswered.append([at, state.cycles])
    if state.waiting_since_ms is None:
        state.waiting_since_ms = at
    if state.bot_waiting_since_ms is None:
        state.bot_waiting_since_ms = at


def _on_agent_reply(
    state: CycleState, event: ConversationEvent, agent: str, facts: list[Fact]
) -> None:
    at = event.occurred_at_ms
    cycle = state.cycles
    if state.first_agent_reply_ms is None:
        state.first_agent_reply_ms = at
        frt = _elapsed_seconds(state.human_clock_ms, at, event, facts, cycle)
        facts.append(_fact(FactKind.FIRST_RESPONSE, event, role="agent", agent=agent,
                           value=frt, cycle=cycle))
        state.bot_engaged = False
    if state.waiting_since_ms is not None:
        reply = _elapsed_seconds(state.waiting_since_ms, at, event, facts, cycle)
        facts.append(_fact(FactKind.REPLY, event, role="agent", agent=agent, value=reply,
                           cycle=cycle))
    state.waiting_since_ms = state.bot_waiting_since_ms = None
    if agent not in state.agents:
        state.agents.append(agent)


def _on_bot_reply(
    state: CycleState, event: ConversationEvent, agent: str, facts: list[Fact]
) -> None:
    at = event.occurred_at_ms
    cycle = state.cycles
    if not state.bot_replied and state.first_agent_reply_ms is None:
        # Bot FRT only when the bot handled the cycle first (kpis.md item 1); a bot message
        # after a human already answered (survey, away notice) is no first response.
        frt = _elapsed_seconds(state.cycle_start_ms, at, event, facts, cycle)
        facts.append(_fact(FactKind.FIRST_RESPONSE, event, role="bot", agent=agent, value=frt,
                           cycle=cycle))
    state.bot_replied = True
    if state.first_agent_reply_ms is None:
        state.bot_engaged = True
    if state.bot_waiting_since_ms is not None:
        reply = _elapsed_seconds(state.bot_waiting_since_ms, at, event, facts, cycle)
        facts.append(_fact(FactKind.REPLY, event, role="bot", agent=agent, value=reply,
                           cycle=cycle))
        state.bot_waiting_since_ms = None


def _answer(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    """Reply rate: an agent or bot message answers every customer message still unanswered."""
    at = event.occurred_at_ms
    for message_ms, cycle in state.unanswered:
        facts.append(Fact(FactKind.ANSWERED, event.channel, message_ms, event.event_id,
                          str(event.author), "", max(0, at - message_ms) / 1000, cycle))
        if state.open and cycle == state.cycles:
            state.answered_in_cycle.append(message_ms)
    state.unanswered = []


def _exclude(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    """Reply rate: a cycle resolved as spam or no_reply_needed withdraws its customer
    messages, answered or not."""
    at = event.occurred_at_ms
    cycle = state.cycles
    for message_ms in state.answered_in_cycle:
        facts.append(Fact(FactKind.EXCLUDED, event.channel, message_ms, event.event_id,
                          "answered", "", max(0, at - message_ms) / 1000, cycle))
    for message_ms, message_cycle in state.unanswered:
        if message_cycle == cycle:
            facts.append(Fact(FactKind.EXCLUDED, event.channel, message_ms, event.event_id,
                              "unanswered", "", max(0, at - message_ms) / 1000, cycle))
    state.unanswered = [entry for entry in state.unanswered if entry[1] != cycle]


def _on_handoff(state: CycleState, event: ConversationEvent) -> list[Fact]:
    if event.agent_id:
        state.assignee = event.agent_id
    is_handoff = event.type is EventType.HANDOFF or state.bot_engaged
    if state.open and is_handoff and state.first_agent_reply_ms is None:
        at = event.occurred_at_ms
        state.human_clock_ms = max(state.human_clock_ms, at)
        if state.waiting_since_ms is not None:
            state.waiting_since_ms = max(state.waiting_since_ms, at)
        state.bot_engaged = False
    return []


def _on_resolved(state: CycleState, event: ConversationEvent) -> list[Fact]:
    if not state.open:
        return []
    without_reply = state.first_agent_reply_ms is None
    agent = event.agent_id or state.assignee or UNKNOWN_AGENT
    cycle = state.cycles
    facts = [_fact(FactKind.CYCLE_RESOLVED, event, role=str(event.resolution), agent=agent,
                   value=1.0 if without_reply else 0.0, cycle=cycle)]
    if event.resolution is Resolution.RESOLVED:
        seconds = _elapsed_seconds(state.cycle_start_ms, event.occurred_at_ms, event, facts,
                                   cycle)
        facts.append(_fact(FactKind.RESOLUTION, event, agent=agent, value=seconds, cycle=cycle))
        if state.first_agent_reply_ms is not None:
            handle = _elapsed_seconds(state.first_agent_reply_ms, event.occurred_at_ms, event,
                                      facts, cycle)
            facts.append(_fact(FactKind.HANDLE, event, agent=agent, value=handle, cycle=cycle))
    else:
        _exclude(state, event, facts)
    _decide_fcr_later(state, event, facts)
    state.open = False
    state.answered_in_cycle = []
    state.waiting_since_ms = state.bot_waiting_since_ms = None
    return facts


def _decide_fcr_later(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    """FCR of the cycle being resolved: stamped at the end of its reopen window, when it is
    known; a reopen before then withdraws it (`_settle_fcr`)."""
    due_ms = event.occurred_at_ms + state.reopen_window_ms
    one_agent = len(state.agents) == 1
    role = FCR_ONE_AGENT if one_agent else FCR_OTHER
    facts.append(Fact(FactKind.FCR, event.channel, due_ms, event.event_id, role,
                      state.agents[0] if one_agent else "", 1.0, state.cycles))
    state.fcr_pending = [due_ms, role, state.cycles]


def _settle_fcr(state: CycleState, event: ConversationEvent, facts: list[Fact]) -> None:
    """A new cycle opens: the previous one was reopened if its reopen window has not ended."""
    if state.fcr_pending is None:
        return
    due_ms, role, cycle = state.fcr_pending
    if event.occurred_at_ms < due_ms:
        facts.append(Fact(FactKind.REOPENED, event.channel, due_ms, event.event_id, role, "",
                          1.0, cycle))
    state.fcr_pending = None


def _on_reopened(state: CycleState, event: ConversationEvent) -> list[Fact]:
    facts: list[Fact] = []
    if not state.open:
        _open_cycle(state, event, facts)
    return facts


def _on_csat(state: CycleState, event: ConversationEvent) -> list[Fact]:
    """A survey answer counts whether or not the conversation has a cycle."""
    if event.score is None or event.scale is None:
        return []
    return [_fact(FactKind.CSAT, event, role=str(event.scale), value=event.score,
                  cycle=state.cycles if state.open else 0)]


_HANDLERS: Final = {
    EventType.MESSAGE: _on_message,
    EventType.ASSIGNED: _on_handoff,
    EventType.HANDOFF: _on_handoff,
    EventType.RESOLVED: _on_resolved,
    EventType.REOPENED: _on_reopened,
    EventType.CSAT: _on_csat,
}
