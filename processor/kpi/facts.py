"""Facts: what one event contributes to the KPIs. The state machine emits them; exporters and
windows consume them. Plain values, no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

__all__ = [
    "FCR_ONE_AGENT", "FCR_OTHER", "KIND_BY_VALUE", "LAGGED_KINDS", "UNKNOWN_AGENT", "Fact",
    "FactKind", "effective_ms",
]

UNKNOWN_AGENT = "unknown"
"""Agent label when a channel cannot tell who replied."""


class FactKind(StrEnum):
    MESSAGE = "message"
    """A counted message; `role` is its author; `agent` is the replying agent or bot, and for a
    customer message the customer (customer_id, else the conversation id)."""
    CYCLE_OPENED = "cycle_opened"
    CYCLE_RESOLVED = "cycle_resolved"
    """`role` is the resolution kind; `value` is 1 when the cycle had no agent reply."""
    FIRST_RESPONSE = "first_response"
    """`role` is the responder (agent or bot); `value` in seconds."""
    REPLY = "reply"
    """Every reply time, first included; `role` is the responder; `value` in seconds."""
    RESOLUTION = "resolution"
    """Cycle start to resolution, seconds (cycles resolved as `resolved` only)."""
    HANDLE = "handle"
    """First agent reply to resolution, seconds."""
    CLOCK_SKEW = "clock_skew"
    """A reply stamped before what it answers; its duration was clamped to 0."""
    ANSWERED = "answered"
    """A customer message got its first agent or bot reply. `at_ms` is the *message's* event
    time (so it lands in the message's windows), `event_id` the reply's, `role` the responder,
    `value` the seconds from the message to the reply (>= 0)."""
    EXCLUDED = "excluded"
    """A customer message leaves the reply rate: its cycle was resolved as spam or
    no_reply_needed. `at_ms` is the message's event time, `event_id` the resolution's, `role`
    "answered" or "unanswered" (was it answered before), `value` seconds from message to
    resolution."""
    CSAT = "csat"
    """A survey answer: `role` is the scale ("5" CSAT, "10" NPS), `value` the score."""
    TAG = "tag"
    """One tag of one event: `role` is the tag."""
    FCR = "fcr"
    """First contact resolution, decided when the reopen window of a resolved cycle ends:
    `at_ms` is that end (resolution + reopen window, in the future when emitted), `event_id`
    the resolution's, `role` FCR_ONE_AGENT or FCR_OTHER, `agent` the one agent (if so)."""
    REOPENED = "reopened"
    """A new cycle opened before the previous cycle's reopen window ended: it cancels that
    cycle's first contact resolution. `at_ms` is the same decision time as its FCR fact,
    `event_id` the reopening event's, `role` the FCR fact's role, `cycle` the resolved cycle."""
    SLA = "sla"
    """An SLA measurement, derived from a first response, reply or resolution by the worker's
    SLA stage (not by the state machine): `role` the metric (first_response, next_reply,
    resolution), `agent` the policy, `value` 1.0 within target else 0.0; `at_ms`, `event_id`
    and `cycle` those of the fact measured."""


KIND_BY_VALUE: Final = {kind.value: kind for kind in FactKind}
"""FactKind by its wire value: a dict lookup, where `FactKind(value)` goes through the enum
machinery (facts are decoded by the thousand in the window stage)."""

FCR_ONE_AGENT: Final = "one_agent"
"""The resolved cycle had exactly one agent replying in it."""
FCR_OTHER: Final = "other"
"""No agent, or more than one, replied in the resolved cycle."""


LAGGED_KINDS = frozenset({FactKind.ANSWERED, FactKind.EXCLUDED})
"""Facts stamped at an earlier event time than the event that produced them; `value` is the
delay in seconds to that event."""


def effective_ms(fact: Fact) -> int:
    """When a fact became known, in event time: for lagged facts the reply or resolution."""
    if fact.kind in LAGGED_KINDS:
        return fact.at_ms + round(fact.value * 1000)
    return fact.at_ms


class Fact(NamedTuple):
    """One contribution of one event to the KPIs."""

    kind: FactKind
    channel: str
    at_ms: int
    """Event time the fact belongs to (the event that completed it)."""
    event_id: str
    """The event that produced it; with `kind` it identifies the fact."""
    role: str = ""
    agent: str = ""
    value: float = 1.0
    cycle: int = 0
    """Cycle number within the conversation, 1-based; 0 outside any cycle."""
