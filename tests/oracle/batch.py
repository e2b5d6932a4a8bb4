"""Batch oracle: the KPI definitions of docs/kpis.md applied to a whole event log at once.

Deliberately simple: dedupe by `event_id` (first seen wins), group by conversation, sort each
conversation by the documented total order, then walk it with one small mutable record per
conversation. Clarity over speed; nothing is shared with `processor/kpi`.

Rules followed (docs/kpis.md, "KPI definitions, as implemented"):

- Total order: event time, then rank `reopened` < customer message < `handoff`/`assigned` < bot
  message < agent message < system message < `tagged`/`csat` < `resolved`, then `event_id`.
- Private events (internal notes) count for nothing.
- A cycle opens with a customer message when none is open, or with `reopened` when none is open;
  it closes with `resolved` when one is open. Otherwise `reopened`/`resolved` change nothing.
- `waiting_since` (human and bot series): the oldest unanswered customer message of the cycle.
  An agent message answers both series; a bot message only the bot series.
- FRT: first agent message of the cycle, from the human clock start (cycle start, or the latest
  handoff before that first agent message). Bot FRT: first bot message of the cycle, sent before
  any agent message of the cycle, from the cycle start.
- Handoff, only in an open cycle before its first agent message: the human clock restarts at
  its time and a set human `waiting_since` moves to its time. A `handoff` event always counts.
  An `assigned` event counts only while a bot is handling the cycle: a bot message came after
  the cycle start and after the cycle's last handoff (a `handoff`, or an `assigned` that
  counted). So a re-assignment after a handoff is routing only; a bot message after a handoff
  hands the cycle back to the bot.
- Resolution: `resolved` kind only: resolution time (cycle start -> resolution) and, when an
  agent replied, handle time (first agent reply -> resolution). Every kind counts as a resolved
  cycle, and as "without reply" when no agent message was in the cycle. The resolver is the
  `agent_id` of the `resolved` event, else the last assignee (`assigned`/`handoff` agent_id),
  else `unknown`.
- Clock skew: a negative duration is clamped to 0 and the event counted once. (Walking a
  conversation in the total order, no duration can be negative, so the count stays 0; only
  late events, which this batch view does not have, can produce skew.)
- Agent or bot messages outside an open cycle are volume only.
- Reply rate: a customer message is answered by the first public agent or bot message after it
  in the conversation's order (any cycle). If its cycle is resolved as `spam` or
  `no_reply_needed`, it is excluded from received and answered (replies after that resolution
  do not count). Received = customer messages minus excluded ones; answered = answered minus
  those excluded after being answered. (Worked out after the walk, from positions.)
- Unique customers: distinct `customer_id` (else conversation id) of public customer messages.
- CSAT (scale 5): responses, satisfied (score >= 4), sum of round(score * 100). NPS (scale 10):
  responses, promoters (>= 9), detractors (<= 6). With or without a cycle.
- Tags: every public event, once per distinct tag it carries.
- First contact resolution: every resolved cycle (any kind) is decided at resolution time +
  the reopen window (default 72 h). It is reopened when the conversation's next cycle opens
  strictly before that time. It is a first contact resolution when exactly one distinct agent
  sent a public agent message while it was open, and it was not reopened.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from processor.events import Author, ConversationEvent, EventType, Resolution

DEFAULT_REOPEN_WINDOW_MS = 72 * 3600 * 1000

__all__ = [
    "UNKNOWN",
    "AgentReport",
    "ChannelReport",
    "Report",
    "ReportBuilder",
    "event_rank",
    "report",
    "report_diff",
    "total_order_key",
]

UNKNOWN = "unknown"
"""Agent label when nobody can be named."""


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ChannelReport:
    """Everything measured on one channel. Value tuples are sorted ascending (seconds)."""

    first_response: Mapping[str, tuple[float, ...]]
    """Responder (`agent` | `bot`) -> FRT values."""
    reply: Mapping[str, tuple[float, ...]]
    """Responder (`agent` | `bot`) -> reply-time values (first replies included)."""
    resolution: tuple[float, ...]
    handle: tuple[float, ...]
    messages: Mapping[str, int]
    """Author -> counted messages."""
    cycles_opened: int
    cycles_resolved: int
    resolved_without_reply: Mapping[str, int]
    """Resolution kind -> cycles resolved with no agent message in them."""
    clock_skew_events: int
    reply_received: int = 0
    reply_answered: int = 0
    csat_responses: int = 0
    csat_satisfied: int = 0
    csat_score_sum_x100: int = 0
    nps_responses: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    tags: Mapping[str, int] = field(default_factory=dict)
    customers: frozenset[str] = frozenset()
    fcr_resolved: int = 0
    """Resolved cycles, each decided when its reopen window ends."""
    fcr_first_contact: int = 0
    fcr_reopened: int = 0


@dataclass(frozen=True)
class AgentReport:
    """Per (channel, agent) counters."""

    messages: int
    """Outbound (public) agent messages."""
    replies: int
    """Agent messages that answered a waiting customer."""
    first_responses: int
    first_response_seconds: float
    resolutions: int


@dataclass(frozen=True)
class Report:
    channels: Mapping[str, ChannelReport]
    agents: Mapping[tuple[str, str], AgentReport]
    """(channel, agent) -> counters."""
    awaiting: Mapping[str, int]
    """conversation_id -> waiting_since (epoch ms) of open cycles whose customer waits for an
    agent reply at the end of the log."""


@dataclass
class _ChannelAcc:
    first_response: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reply: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    resolution: list[float] = field(default_factory=list)
    handle: list[float] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cycles_opened: int = 0
    cycles_resolved: int = 0
    resolved_without_reply: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    clock_skew_events: int = 0
    received: int = 0
    answered: int = 0
    excluded: int = 0
    excluded_answered: int = 0
    survey: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tags: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    customers: set[str] = field(default_factory=set)
    fcr: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _AgentAcc:
    messages: int = 0
    replies: int = 0
    first_responses: int = 0
    first_response_values: list[float] = field(default_factory=list)
    resolutions: int = 0


class ReportBuilder:
    """Collects observations and freezes them into a `Report`.

    Used by the oracle's walk, and by tests to map the streaming engine's facts to the same
    shape (so both sides are normalised identically: sorted values, zero entries dropped).
    """

    def __init__(self) -> None:
        self._channels: dict[str, _ChannelAcc] = defaultdict(_ChannelAcc)
        self._agents: dict[tuple[str, str], _AgentAcc] = defaultdict(_AgentAcc)
        self._awaiting: dict[str, int] = {}

    def message(self, channel: str, author: str, agent: str) -> None:
        """`agent`: the sender; for a customer message, the customer."""
        acc = self._channels[channel]
        acc.messages[author] += 1
        if author == Author.AGENT:
            self._agents[(channel, agent)].messages += 1
        if author == Author.CUSTOMER:
            acc.received += 1
            acc.customers.add(agent)

    def message_answered(self, channel: str, message_ms: int, reply_ms: int) -> None:
        self._channels[channel].answered += 1

    def message_excluded(self, channel: str, message_ms: int, resolution_ms: int,
                         answered: bool) -> None:
        acc = self._channels[channel]
        acc.excluded += 1
        if answered:
            acc.excluded_answered += 1

    def survey(self, channel: str, scale: int, score: float) -> None:
        acc = self._channels[channel].survey
        if scale == 5:
            acc["csat_responses"] += 1
            acc["csat_score_sum_x100"] += round(score * 100)
            acc["csat_satisfied"] += score >= 4
        else:
            acc["nps_responses"] += 1
            acc["nps_promoters"] += score >= 9
            acc["nps_detractors"] += score <= 6

    def tag(self, channel: str, tag: str) -> None:
        self._channels[channel].tags[tag] += 1

    def cycle_opened(self, channel: str) -> None:
        self._channels[channel].cycles_opened += 1

    def fcr_decided(self, channel: str, decided_ms: int, one_agent: bool) -> None:
        """A resolved cycle whose reopen window ends at `decided_ms`."""
        acc = self._channels[channel].fcr
        acc["fcr_resolved"] += 1
        acc["fcr_first_contact"] += one_agent

    def fcr_reopened(self, channel: str, decided_ms: int, one_agent: bool) -> None:
        """That cycle was followed by a new one before `decided_ms`."""
        acc = self._channels[channel].fcr
        acc["fcr_reopened"] += 1
        acc["fcr_first_contact"] -= one_agent

    def cycle_resolved(self, channel: str, kind: str, resolver: str, without_reply: bool) -> None:
        acc = self._channels[channel]
        acc.cycles_resolved += 1
        if without_reply:
            acc.resolved_without_reply[kind] += 1
        self._agents[(channel, resolver)].resolutions += 1

    def first_response(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._channels[channel].first_response[responder].append(seconds)
        if responder == Author.AGENT:
            acc = self._agents[(channel, agent)]
            acc.first_responses += 1
            acc.first_response_values.append(seconds)

    def reply(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._channels[channel].reply[responder].append(seconds)
        if responder == Author.AGENT:
            self._agents[(channel, agent)].replies += 1

    def resolution(self, channel: str, seconds: float) -> None:
        self._channels[channel].resolution.append(seconds)

    def handle(self, channel: str, seconds: float) -> None:
        self._channels[channel].handle.append(seconds)

    def clock_skew(self, channel: str) -> None:
        self._channels[channel].clock_skew_events += 1

    def awaiting(self, conversation_id: str, waiting_since_ms: int) -> None:
        self._awaiting[conversation_id] = waiting_since_ms

    def build(self) -> Report:
        channels = {
            name: ChannelReport(
                first_response={k: tuple(sorted(v)) for k, v in acc.first_response.items() if v},
                reply={k: tuple(sorted(v)) for k, v in acc.reply.items() if v},
                resolution=tuple(sorted(acc.resolution)),
                handle=tuple(sorted(acc.handle)),
                messages={k: n for k, n in acc.messages.items() if n},
                cycles_opened=acc.cycles_opened,
                cycles_resolved=acc.cycles_resolved,
                resolved_without_reply={
                    k: n for k, n in acc.resolved_without_reply.items() if n
                },
                clock_skew_events=acc.clock_skew_events,
                reply_received=acc.received - acc.excluded,
                reply_answered=acc.answered - acc.excluded_answered,
                tags={k: n for k, n in acc.tags.items() if n},
                customers=frozenset(acc.customers),
                **acc.survey,
                **acc.fcr,
            )
            for name, acc in self._channels.items()
        }
        agents = {
            key: AgentReport(
                messages=acc.messages,
                replies=acc.replies,
                first_responses=acc.first_responses,
                first_response_seconds=math.fsum(acc.first_response_values),
                resolutions=acc.resolutions,
            )
            for key, acc in self._agents.items()
        }
        return Report(channels=channels, agents=agents, awaiting=dict(self._awaiting))


# ---------------------------------------------------------------------------------------------
# Order


def event_rank(event: ConversationEvent) -> int:
    """Rank among events stamped in the same millisecond (docs/kpis.md, "Event time and order")."""
    if event.type is EventType.REOPENED:
        return 0
    if event.type is EventType.MESSAGE:
        if event.author is Author.CUSTOMER:
            return 1
        if event.author is Author.BOT:
            return 3
        if event.author is Author.AGENT:
            return 4
        return 5  # system
    if event.type in (EventType.HANDOFF, EventType.ASSIGNED):
        return 2
    if event.type in (EventType.TAGGED, EventType.CSAT):
        return 6
    return 7  # resolved


def total_order_key(event: ConversationEvent) -> tuple[int, int, str]:
    return (event.occurred_at_ms, event_rank(event), event.event_id)


# ---------------------------------------------------------------------------------------------
# The walk


@dataclass
class _Conversation:
    """What the walk remembers about one conversation."""

    channel: str
    open: bool = False
    cycle_start_ms: int = 0
    human_clock_ms: int = 0
    """Where the human FRT counts from: the cycle start, or the latest handoff."""
    first_agent_reply_ms: int | None = None
    bot_frt_done: bool = False
    bot_handling: bool = False
    """A bot message came since the cycle start or its last handoff, before any agent message."""
    waiting_human_ms: int | None = None
    waiting_bot_ms: int | None = None
    last_assignee: str | None = None


def _seconds(end_ms: int, start_ms: int) -> tuple[float, bool]:
    """Duration in seconds, clamped at 0; and whether it had to be clamped (clock skew)."""
    delta = end_ms - start_ms
    if delta < 0:
        return 0.0, True
    return delta / 1000, False


def _walk(events: list[ConversationEvent], out: ReportBuilder,
          reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS) -> _Conversation:
    conv = _Conversation(channel=events[0].channel)
    ch = conv.channel
    # reply rate, worked out after the walk: (position, time, cycle) of customer messages,
    # (position, time) of agent/bot messages, cycle -> (position, time) of spam/nrn resolutions
    asked: list[tuple[int, int, int]] = []
    replies: list[tuple[int, int]] = []
    dismissed: dict[int, tuple[int, int]] = {}
    cycle_no = 0
    # first contact resolution: distinct agents of the open cycle; (decided at, one agent) of
    # the last resolved cycle until the next one opens
    cycle_agents: set[str] = set()
    undecided: tuple[int, bool] | None = None

    def open_cycle(at_ms: int) -> None:
        nonlocal cycle_no, undecided
        if undecided is not None and at_ms < undecided[0]:
            out.fcr_reopened(ch, *undecided)
        undecided = None
        cycle_agents.clear()
        cycle_no += 1
        conv.open = True
        conv.cycle_start_ms = at_ms
        conv.human_clock_ms = at_ms
        conv.first_agent_reply_ms = None
        conv.bot_frt_done = False
        conv.bot_handling = False
        conv.waiting_human_ms = None
        conv.waiting_bot_ms = None
        out.cycle_opened(ch)

    for position, e in enumerate(events):
        t = e.occurred_at_ms
        if e.private:
            continue
        skewed = False
        for tag in sorted(set(e.tags)):
            out.tag(ch, tag)

        if e.type is EventType.REOPENED:
            if not conv.open:
                open_cycle(t)

        elif e.type in (EventType.HANDOFF, EventType.ASSIGNED):
            if e.agent_id is not None:
                conv.last_assignee = e.agent_id
            is_handoff = e.type is EventType.HANDOFF or conv.bot_handling
            if conv.open and is_handoff and conv.first_agent_reply_ms is None:
                conv.human_clock_ms = t
                if conv.waiting_human_ms is not None:
                    conv.waiting_human_ms = t
                conv.bot_handling = False  # a human owns the cycle now

        elif e.type is EventType.MESSAGE:
            author = e.author
            assert author is not None
            who = e.agent_id or UNKNOWN
            if author is Author.CUSTOMER:
                who = e.customer_id or e.conversation_id
            out.message(ch, author.value, who)
            if author in (Author.AGENT, Author.BOT):
                replies.append((position, t))

            if author is Author.CUSTOMER:
                if not conv.open:
                    open_cycle(t)
                asked.append((position, t, cycle_no))
                if conv.waiting_human_ms is None:
                    conv.waiting_human_ms = t
                if conv.waiting_bot_ms is None:
                    conv.waiting_bot_ms = t

            elif author is Author.BOT and conv.open:
                if not conv.bot_frt_done and conv.first_agent_reply_ms is None:
                    value, skew = _seconds(t, conv.cycle_start_ms)
                    skewed = skewed or skew
                    out.first_response(ch, "bot", who, value)
                conv.bot_frt_done = True
                if conv.waiting_bot_ms is not None:
                    value, skew = _seconds(t, conv.waiting_bot_ms)
                    skewed = skewed or skew
                    out.reply(ch, "bot", who, value)
                    conv.waiting_bot_ms = None
                if conv.first_agent_reply_ms is None:
                    conv.bot_handling = True

            elif author is Author.AGENT and conv.open:
                cycle_agents.add(who)
                if conv.first_agent_reply_ms is None:
                    value, skew = _seconds(t, conv.human_clock_ms)
                    skewed = skewed or skew
                    out.first_response(ch, "agent", who, value)
                    conv.first_agent_reply_ms = t
                    conv.bot_handling = False
                if conv.waiting_human_ms is not None:
                    value, skew = _seconds(t, conv.waiting_human_ms)
                    skewed = skewed or skew
                    out.reply(ch, "agent", who, value)
                    conv.waiting_human_ms = None
                conv.waiting_bot_ms = None
            # system messages, and agent/bot messages outside a cycle: volume only

        elif e.type is EventType.RESOLVED and conv.open:
            resolver = e.agent_id or conv.last_assignee or UNKNOWN
            no_reply = conv.first_agent_reply_ms is None
            out.cycle_resolved(ch, e.resolution.value, resolver, no_reply)
            if e.resolution is not Resolution.RESOLVED:
                dismissed[cycle_no] = (position, t)
            if e.resolution is Resolution.RESOLVED:
                value, skew = _seconds(t, conv.cycle_start_ms)
                skewed = skewed or skew
                out.resolution(ch, value)
                if conv.first_agent_reply_ms is not None:
                    value, skew = _seconds(t, conv.first_agent_reply_ms)
                    skewed = skewed or skew
                    out.handle(ch, value)
            undecided = (t + reopen_window_ms, len(cycle_agents) == 1)
            out.fcr_decided(ch, *undecided)
            conv.open = False
            conv.waiting_human_ms = None
            conv.waiting_bot_ms = None

        elif e.type is EventType.CSAT and e.score is not None and e.scale is not None:
            out.survey(ch, e.scale, e.score)

        if skewed:
            out.clock_skew(ch)

    for position, t, cycle in asked:
        reply = next(((p, r) for p, r in replies if p > position), None)
        end = dismissed.get(cycle)
        if reply is not None and (end is None or reply[0] < end[0]):
            out.message_answered(ch, t, reply[1])
        else:
            reply = None
        if end is not None:
            out.message_excluded(ch, t, end[1], answered=reply is not None)
    return conv


def dedupe(events: Iterable[ConversationEvent]) -> list[ConversationEvent]:
    """First occurrence of every event_id, in the given order."""
    seen: set[str] = set()
    kept = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            kept.append(e)
    return kept


def report(events: Iterable[ConversationEvent],
           reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS) -> Report:
    """The KPIs of a whole event log (any order, duplicates allowed)."""
    by_conversation: dict[str, list[ConversationEvent]] = defaultdict(list)
    for e in dedupe(events):
        by_conversation[e.conversation_id].append(e)
    out = ReportBuilder()
    for conversation_id, conv_events in by_conversation.items():
        conv = _walk(sorted(conv_events, key=total_order_key), out, reopen_window_ms)
        if conv.open and conv.waiting_human_ms is not None:
            out.awaiting(conversation_id, conv.waiting_human_ms)
    return out.build()


# ---------------------------------------------------------------------------------------------
# Comparison


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


def _values_equal(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))


def report_diff(expected: Report, actual: Report) -> list[str]:
    """Human-readable differences; empty when the reports agree (floats to 1e-9 s)."""
    diffs: list[str] = []
    for ch in sorted(set(expected.channels) | set(actual.channels)):
        e = expected.channels.get(ch)
        a = actual.channels.get(ch)
        if e is None or a is None:
            diffs.append(f"channel {ch}: expected {e}, got {a}")
            continue
        for name in ("first_response", "reply"):
            em: Mapping[str, tuple[float, ...]] = getattr(e, name)
            am: Mapping[str, tuple[float, ...]] = getattr(a, name)
            for role in sorted(set(em) | set(am)):
                ev, av = em.get(role, ()), am.get(role, ())
                if not _values_equal(ev, av):
                    diffs.append(f"{ch} {name}[{role}]: expected {ev}, got {av}")
        for name in ("resolution", "handle"):
            ev, av = getattr(e, name), getattr(a, name)
            if not _values_equal(ev, av):
                diffs.append(f"{ch} {name}: expected {ev}, got {av}")
        for name in (
            "messages", "cycles_opened", "cycles_resolved", "resolved_without_reply",
            "clock_skew_events", "reply_received", "reply_answered", "csat_responses",
            "csat_satisfied", "csat_score_sum_x100", "nps_responses", "nps_promoters",
            "nps_detractors", "tags", "customers", "fcr_resolved", "fcr_first_contact",
            "fcr_reopened",
        ):
            ev, av = getattr(e, name), getattr(a, name)
            if ev != av:
                diffs.append(f"{ch} {name}: expected {ev}, got {av}")
    for key in sorted(set(expected.agents) | set(actual.agents)):
        ea, aa = expected.agents.get(key), actual.agents.get(key)
        if ea is None or aa is None:
            diffs.append(f"agent {key}: expected {ea}, got {aa}")
            continue
        same = (
            ea.messages == aa.messages
            and ea.replies == aa.replies
            and ea.first_responses == aa.first_responses
            and _close(ea.first_response_seconds, aa.first_response_seconds)
            and ea.resolutions == aa.resolutions
        )
        if not same:
            diffs.append(f"agent {key}: expected {ea}, got {aa}")
    if dict(expected.awaiting) != dict(actual.awaiting):
        diffs.append(f"awaiting: expected {dict(expected.awaiting)}, got {dict(actual.awaiting)}")
    return diffs
