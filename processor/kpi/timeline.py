"""A conversation's events in event-time order, robust to duplicates and late delivery.

Platforms deliver at least once and out of order. A `Timeline` keeps the conversation's
recent events (those within `grace_ms` of the newest) sorted by `event_order`, on top of a
checkpoint: the `CycleState` folded over everything older. An event that arrives in order is
folded in one step. One that lands inside the recent events refolds them from the checkpoint,
and the difference between the facts before and after is returned as retractions and
additions, so aggregates downstream stay equal to a fold over the sorted log. One older than the
checkpoint is *late*: it is folded at the end, as best effort, and flagged.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from processor.events import ConversationEvent, event_from_dict
from processor.kpi.conversation import DEFAULT_REOPEN_WINDOW_MS, CycleState, apply, event_order
from processor.kpi.facts import Fact

__all__ = ["DEDUPE_HORIZON_MS", "Ingested", "Timeline"]

DEDUPE_HORIZON_MS: Final = 8 * 24 * 3600 * 1000
"""Event ids are remembered this long (event time): Meta retries for up to 7 days."""


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one delivery changed."""

    added: list[Fact]
    retracted: list[Fact]
    duplicate: bool = False
    late: bool = False
    reordered: bool = False


_DUPLICATE: Final = Ingested([], [], duplicate=True)


def _fold(state: CycleState, events: list[ConversationEvent]) -> list[Fact]:
    facts: list[Fact] = []
    for event in events:
        facts.extend(apply(state, event))
    return facts


def _multiset_difference(left: list[Fact], right: list[Fact]) -> list[Fact]:
    return list((Counter(left) - Counter(right)).elements())


@dataclass(slots=True)
class Timeline:
    """One conversation: checkpoint state, recent sorted events, and the ids already seen."""

    grace_ms: int
    channel: str = ""
    checkpoint: CycleState = field(default_factory=CycleState)
    checkpoint_ms: int = -1
    """Every event at or before this time is folded into `checkpoint`."""
    recent: list[ConversationEvent] = field(default_factory=list)
    head: CycleState = field(default_factory=CycleState)
    """`checkpoint` with `recent` folded in: the conversation as of its newest event."""
    seen: dict[str, int] = field(default_factory=dict)
    """Event id -> event time, for dedupe."""

    @classmethod
    def new(cls, grace_ms: int, reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS) -> Timeline:
        """An empty conversation; `reopen_window_ms` decides first contact resolution."""
        return cls(grace_ms=grace_ms, checkpoint=CycleState(reopen_window_ms=reopen_window_ms),
                   head=CycleState(reopen_window_ms=reopen_window_ms))

    def ingest(self, event: ConversationEvent) -> Ingested:
        if event.event_id in self.seen:
            return _DUPLICATE
        self.seen[event.event_id] = event.occurred_at_ms
        self.channel = event.channel
        if event.occurred_at_ms <= self.checkpoint_ms:
            return self._refold_with(event, None)
        key = event_order(event)
        position = bisect.bisect_right(self.recent, key, key=event_order)
        if position == len(self.recent):
            self.recent.append(event)
            result = Ingested(apply(self.head, event), [])
        else:
            result = self._refold_with(event, position)
        self._advance_checkpoint()
        return result

    def _refold_with(self, event: ConversationEvent, position: int | None) -> Ingested:
        """Insert `event` among the recent events (or, when `position` is None because it is
        older than the checkpoint, fold it into the checkpoint) and refold."""
        before = _fold(self.checkpoint.copy(), self.recent)
        late_facts: list[Fact] = []
        if position is None:
            late_facts = apply(self.checkpoint, event)
        else:
            self.recent.insert(position, event)
        self.head = self.checkpoint.copy()
        after = late_facts + _fold(self.head, self.recent)
        return Ingested(
            added=_multiset_difference(after, before),
            retracted=_multiset_difference(before, after),
            late=position is None,
            reordered=position is not None,
        )

    def _advance_checkpoint(self) -> None:
        horizon = self.recent[-1].occurred_at_ms - self.grace_ms
        settled = 0
        while settled < len(self.recent) and self.recent[settled].occurred_at_ms < horizon:
            apply(self.checkpoint, self.recent[settled])
            settled += 1
        if settled:
            self.checkpoint_ms = max(self.checkpoint_ms, self.recent[settled - 1].occurred_at_ms)
            del self.recent[:settled]
        if len(self.seen) % 64 == 0:
            self._forget_old_ids(self.recent[-1].occurred_at_ms - DEDUPE_HORIZON_MS)

    def _forget_old_ids(self, cutoff_ms: int) -> None:
        stale = [event_id for event_id, at in self.seen.items() if at < cutoff_ms]
        for event_id in stale:
            del self.seen[event_id]

    @property
    def state(self) -> CycleState:
        return self.head

    @property
    def newest_ms(self) -> int:
        """Event time of the newest event folded in (-1 before any)."""
        return self.recent[-1].occurred_at_ms if self.recent else self.checkpoint_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "grace_ms": self.grace_ms,
            "channel": self.channel,
            "checkpoint": self.checkpoint.to_dict(),
            "checkpoint_ms": self.checkpoint_ms,
            "recent": [event.to_dict() for event in self.recent],
            "head": self.head.to_dict(),
            "seen": self.seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        return cls(
            grace_ms=data["grace_ms"],
            channel=data.get("channel", ""),
            checkpoint=CycleState.from_dict(data["checkpoint"]),
            checkpoint_ms=data["checkpoint_ms"],
            recent=[event_from_dict(item) for item in data["recent"]],
            head=CycleState.from_dict(data["head"]),
            seen=data["seen"],
        )
