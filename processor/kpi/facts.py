"""Facts: what one event contributes to the KPIs. The state machine emits them; exporters and
windows consume them. Plain values, no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["UNKNOWN_AGENT", "Fact", "FactKind"]

UNKNOWN_AGENT = "unknown"
"""Agent label when a channel cannot tell who replied."""


class FactKind(StrEnum):
    MESSAGE = "message"
    """A counted message; `role` is its author."""
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
