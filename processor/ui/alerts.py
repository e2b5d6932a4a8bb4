"""Per-conversation SLA alerts: which are active, which ended. Pure, no clock, no I/O.

Fed two streams: the at-risk and breach events of `msgkpi.sla`
(schemas/sla-event.v1.schema.json) and, from `msgkpi.events`, the activity that stops an SLA
clock: a public human agent message (answers first_response and next_reply) and a resolution
(stops every clock of the cycle). An alert ends when

- its conversation is answered or resolved at or after the start of the measured period
  (`period_ms`: the cycle start, or the waiting period's oldest unanswered message); a bot
  reply or a private note stops no clock and ends no alert; or
- (at-risk only) the breach of the same period arrives: the breach alert takes over.

The two topics are read independently, so a reply may be read before the alert it ends: the
book remembers each conversation's newest reply and resolution (event time) for the most
recently active `max_marks` conversations, and an alert that arrives already answered starts
ended. Ended alerts are kept `keep_ended_ms` (event time of what ended them) so the
Alertmanager poster can send their end; active alerts older than `max_age_ms` are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "AlertBook",
    "AlertKind",
    "ConversationActivity",
    "ConversationAlert",
    "Mark",
    "SlaEvent",
    "clearing_ms",
]

AlertKind = Literal["at_risk", "breach"]
DEFAULT_MAX_MARKS: Final = 100_000
DEFAULT_KEEP_ENDED_MS: Final = 15 * 60_000
DEFAULT_MAX_AGE_MS: Final = 7 * 86_400_000
DEFAULT_MAX_ACTIVE: Final = 20_000
_INT_FIELDS: Final = ("cycle", "period_ms", "start_ms", "due_ms", "at_ms", "detected_at_ms")
_TEXT_FIELDS: Final = ("alert_id", "metric", "policy", "channel", "conversation_id")
_OPTIONAL_FIELDS: Final = ("account_id", "team", "priority")


@dataclass(frozen=True, slots=True)
class SlaEvent:
    """One record of `msgkpi.sla`; times are epoch milliseconds."""

    alert_id: str
    kind: AlertKind
    metric: str
    policy: str
    cycle: int
    period_ms: int
    """Start of the measured period; a reply or resolution at or after it ends the alert."""
    start_ms: int
    due_ms: int
    """The deadline."""
    at_ms: int
    """When the alert became due (at-risk instant, or breach instant)."""
    detected_at_ms: int
    channel: str
    conversation_id: str
    account_id: str | None = None
    team: str | None = None
    priority: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlaEvent:
        """ValueError naming the field when the record is not an SLA event."""
        kind = data.get("kind")
        if kind not in ("at_risk", "breach"):
            raise ValueError(f"kind: expected at_risk or breach, got {kind!r}")
        values: dict[str, Any] = {}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: expected non-empty text, got {value!r}")
            values[name] = value
        for name in _INT_FIELDS:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: expected an integer, got {value!r}")
            values[name] = value
        for name in _OPTIONAL_FIELDS:
            value = data.get(name)
            values[name] = value if isinstance(value, str) and value else None
        return cls(kind=kind, **values)


@dataclass(frozen=True, slots=True)
class ConversationActivity:
    """A canonical event that stops SLA clocks."""

    conversation_id: str
    occurred_at_ms: int
    answers: bool
    """A public message by a human agent."""
    resolves: bool
    """A resolution (any kind)."""

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> ConversationActivity | None:
        """The activity in a canonical event (wire form: occurred_at in epoch ms), or None
        when the event stops no clock or is not a well-formed event."""
        kind, conversation, at = data.get("type"), data.get("conversation_id"), data.get(
            "occurred_at")
        if not isinstance(conversation, str) or isinstance(at, bool) or not isinstance(at, int):
            return None
        answers = (kind == "message" and data.get("author") == "agent"
                   and not data.get("private", False))
        resolves = kind == "resolved"
        if not answers and not resolves:
            return None
        return cls(conversation, at, answers, resolves)


@dataclass(frozen=True, slots=True)
class Mark:
    """A conversation's newest agent reply and resolution, in event time."""

    replied_ms: int | None = None
    resolved_ms: int | None = None

    def with_activity(self, activity: ConversationActivity) -> Mark:
        at = activity.occurred_at_ms
        replied, resolved = self.replied_ms, self.resolved_ms
        if activity.answers and (replied is None or at > replied):
            replied = at
        if activity.resolves and (resolved is None or at > resolved):
            resolved = at
        return Mark(replied, resolved)


def clearing_ms(event: SlaEvent, mark: Mark) -> int | None:
    """Event time of the reply or resolution (at or after the period's start) that stopped
    the alert's clock, or None while it runs. A resolution alert needs the resolution."""
    found = []
    if (event.metric != "resolution" and mark.replied_ms is not None
            and mark.replied_ms >= event.period_ms):
        found.append(mark.replied_ms)
    if mark.resolved_ms is not None and mark.resolved_ms >= event.period_ms:
        found.append(mark.resolved_ms)
    return min(found) if found else None


@dataclass(slots=True)
class ConversationAlert:
    """An SLA event and what became of it."""

    event: SlaEvent
    ended_ms: int | None = None
    """Event time at which it ended (the reply, resolution or superseding breach)."""
    ended_by: Literal["answered", "resolved", "breach"] | None = None

    @property
    def active(self) -> bool:
        return self.ended_ms is None

    def end(self, at_ms: int, by: Literal["answered", "resolved", "breach"]) -> None:
        self.ended_ms, self.ended_by = at_ms, by

    def to_json(self, now_ms: int) -> dict[str, Any]:
        """For the page: the event, and time left (negative: overdue) at `now_ms`."""
        event = self.event
        return {
            "alert_id": event.alert_id, "kind": event.kind, "metric": event.metric,
            "policy": event.policy, "channel": event.channel,
            "conversation_id": event.conversation_id, "account_id": event.account_id,
            "team": event.team, "priority": event.priority, "cycle": event.cycle,
            "period_ms": event.period_ms, "due_ms": event.due_ms, "at_ms": event.at_ms,
            "time_left_ms": event.due_ms - now_ms, "ended_ms": self.ended_ms,
            "ended_by": self.ended_by,
        }


def _end_reason(event: SlaEvent, mark: Mark, at_ms: int) -> Literal["answered", "resolved"]:
    return "resolved" if mark.resolved_ms == at_ms and (
        event.metric == "resolution" or mark.replied_ms != at_ms) else "answered"


@dataclass
class AlertBook:
    """Active and recently ended conversation alerts; see the module docstring."""

    max_marks: int = DEFAULT_MAX_MARKS
    keep_ended_ms: int = DEFAULT_KEEP_ENDED_MS
    max_age_ms: int = DEFAULT_MAX_AGE_MS
    max_active: int = DEFAULT_MAX_ACTIVE
    _alerts: dict[str, ConversationAlert] = field(default_factory=dict)
    _active_by_conversation: dict[str, dict[str, ConversationAlert]] = field(
        default_factory=dict)
    _marks: OrderedDict[str, Mark] = field(default_factory=OrderedDict)

    def add_sla_event(self, event: SlaEvent) -> bool:
        """Take one SLA event; False for a duplicate (same alert_id, as after a worker
        restart)."""
        if event.alert_id in self._alerts:
            return False
        alert = self._alerts[event.alert_id] = ConversationAlert(event)
        mark = self._marks.get(event.conversation_id)
        cleared = None if mark is None else clearing_ms(event, mark)
        if mark is not None and cleared is not None:
            alert.end(cleared, _end_reason(event, mark, cleared))
            return True
        if event.kind == "breach":
            self._supersede_at_risk(event)
        self._active_by_conversation.setdefault(event.conversation_id, {})[
            event.alert_id] = alert
        self._enforce_active_cap()
        return True

    def _supersede_at_risk(self, breach: SlaEvent) -> None:
        for alert in list(self._active_by_conversation.get(breach.conversation_id, {})
                          .values()):
            event = alert.event
            if (event.kind == "at_risk" and event.metric == breach.metric
                    and event.cycle == breach.cycle and event.period_ms == breach.period_ms):
                self._end(alert, breach.at_ms, "breach")

    def add_activity(self, activity: ConversationActivity) -> list[ConversationAlert]:
        """Take a reply or resolution; the alerts it ended."""
        conversation = activity.conversation_id
        mark = self._marks.pop(conversation, Mark()).with_activity(activity)
        self._marks[conversation] = mark
        if len(self._marks) > self.max_marks:
            self._marks.popitem(last=False)
        ended = []
        for alert in list(self._active_by_conversation.get(conversation, {}).values()):
            cleared = clearing_ms(alert.event, mark)
            if cleared is not None:
                self._end(alert, cleared, _end_reason(alert.event, mark, cleared))
                ended.append(alert)
        return ended

    def _end(self, alert: ConversationAlert, at_ms: int,
             by: Literal["answered", "resolved", "breach"]) -> None:
        alert.end(at_ms, by)
        conversation = alert.event.conversation_id
        active = self._active_by_conversation.get(conversation, {})
        active.pop(alert.event.alert_id, None)
        if not active:
            self._active_by_conversation.pop(conversation, None)

    def _enforce_active_cap(self) -> None:
        count = sum(map(len, self._active_by_conversation.values()))
        if count <= self.max_active:
            return
        oldest = sorted((alert for alerts in self._active_by_conversation.values()
                         for alert in alerts.values()), key=lambda a: a.event.at_ms)
        for alert in oldest[:count - self.max_active]:
            self._forget(alert)

    def _forget(self, alert: ConversationAlert) -> None:
        self._alerts.pop(alert.event.alert_id, None)
        active = self._active_by_conversation.get(alert.event.conversation_id, {})
        active.pop(alert.event.alert_id, None)
        if not active:
            self._active_by_conversation.pop(alert.event.conversation_id, None)

    def expire(self, now_ms: int) -> None:
        """Forget ended alerts older than keep_ended_ms and active ones older than
        max_age_ms (their conversation was abandoned; Alertmanager lets them time out)."""
        for alert in list(self._alerts.values()):
            if alert.ended_ms is not None:
                if alert.ended_ms < now_ms - self.keep_ended_ms:
                    self._alerts.pop(alert.event.alert_id, None)
            elif alert.event.at_ms < now_ms - self.max_age_ms:
                self._forget(alert)

    def alerts(self) -> list[ConversationAlert]:
        """Every alert kept, active and ended, in arrival order."""
        return list(self._alerts.values())

    def active(self, kind: AlertKind, limit: int = 100) -> list[ConversationAlert]:
        """Active alerts of one kind, newest (by at_ms) first, at most `limit`."""
        found = [alert for alerts in self._active_by_conversation.values()
                 for alert in alerts.values() if alert.event.kind == kind]
        found.sort(key=lambda a: (-a.event.at_ms, a.event.alert_id))
        return found[:limit]

    def active_count(self, kind: AlertKind) -> int:
        return sum(alert.event.kind == kind for alerts in self._active_by_conversation.values()
                   for alert in alerts.values())
