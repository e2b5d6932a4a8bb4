"""A conversation's SLA record and the exact attainment facts it yields, as plain values.

The worker's SLA stage (processor.worker.sla_stage) keeps one `SlaRecord` per conversation,
stored with it in the table and its changelog: which policy covers it, which alerts it emitted
(so none is emitted twice after a restart), and the measurable facts still open to a reordering
with the SLA facts they produced (so the windows' attainment stays exact).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from processor.kpi.conversation import CycleState
from processor.kpi.facts import KIND_BY_VALUE, Fact, FactKind
from processor.kpi.policy import PolicySet, SlaPolicy
from processor.kpi.sla import SlaTracker, clock_supported, measure, measured_metric
from processor.kpi.timeline import Ingested

__all__ = [
    "MATCH_FIELDS",
    "SlaRecord",
    "attainment_facts",
    "first_replies",
    "is_first_reply",
    "new_facts",
]

MATCH_FIELDS: Final = ("priority", "team", "account_id")
"""Event fields a policy may match on, besides the channel (the latest non-empty value)."""


@dataclass(slots=True)
class SlaRecord:
    """What the SLA stage remembers of one conversation."""

    match: dict[str, str] = field(default_factory=dict)
    """channel and the MATCH_FIELDS the conversation's events carried."""
    policy: str | None = None
    """The covering policy's name when last matched."""
    tracker: SlaTracker | None = None
    """Alerts already emitted in the current cycle."""
    live: list[Fact] = field(default_factory=list)
    """Measurable facts newer than the timeline's checkpoint (a reordering may still change
    them)."""
    produced: list[Fact] = field(default_factory=list)
    """The SLA facts `live` produced, as the windows have them."""

    def tracker_copy(self) -> SlaTracker:
        """A tracker to work on; the record's own changes only once the alerts are sent."""
        if self.tracker is None:
            return SlaTracker()
        return SlaTracker(self.tracker.cycle, set(self.tracker.emitted))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"match": self.match, "policy": self.policy}
        if self.tracker is not None:
            data["tracker"] = self.tracker.to_dict()
        if self.live or self.produced:
            data["live"] = [list(fact) for fact in self.live]
            data["produced"] = [list(fact) for fact in self.produced]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlaRecord:
        tracker = data.get("tracker")
        return cls(
            match=dict(data.get("match") or {}),
            policy=data.get("policy"),
            tracker=SlaTracker.from_dict(tracker) if tracker else None,
            live=[_row_fact(row) for row in data.get("live", [])],
            produced=[_row_fact(row) for row in data.get("produced", [])],
        )


def _row_fact(row: list[Any]) -> Fact:
    return Fact(KIND_BY_VALUE[row[0]], *row[1:])


def attainment_facts(record: SlaRecord, settled_ms: int, policy: SlaPolicy | None,
                     policies: PolicySet, ingested: Ingested) -> list[tuple[int, Fact]]:
    """SLA facts for the windows, exact under reordering.

    An event's SLA facts depend on all of that event's facts: an agent reply's wait is a
    next_reply only if the same message did not also give its cycle the FRT, and a reordering
    can change that without changing the reply's own fact. So the record keeps the measurable
    facts still open to change (newer than the timeline's checkpoint, `settled_ms`) and the SLA
    facts they produced; for every event a delivery touched, the SLA facts are recomputed from
    its current facts and the difference is returned (-1 withdrawn, +1 new)."""
    if policy is None and not record.produced:
        return []
    live = list(record.live)
    produced = list(record.produced)
    touched: dict[str, None] = {}
    for fact in ingested.retracted:
        if _measurable(fact):
            if fact in live:
                live.remove(fact)
            touched[fact.event_id] = None
    for fact in ingested.added:
        if _measurable(fact):
            live.append(fact)
            touched[fact.event_id] = None
    weighted: list[tuple[int, Fact]] = []
    for event_id in touched:
        before = [f for f in produced if f.event_id == event_id]
        after = _measure_event([f for f in live if f.event_id == event_id], policy, policies)
        weighted += [(-1, f) for f in (Counter(before) - Counter(after)).elements()]
        weighted += [(1, f) for f in (Counter(after) - Counter(before)).elements()]
        produced = [f for f in produced if f.event_id != event_id] + after
    record.live = [f for f in live if f.at_ms > settled_ms]
    record.produced = [f for f in produced if f.at_ms > settled_ms]
    return weighted


def _measurable(fact: Fact) -> bool:
    return fact.kind is FactKind.RESOLUTION or (
        fact.kind in (FactKind.FIRST_RESPONSE, FactKind.REPLY) and fact.role == "agent")


def _measure_event(facts: list[Fact], policy: SlaPolicy | None, policies: PolicySet
                   ) -> list[Fact]:
    """The SLA facts of one event's measurable facts under `policy`."""
    if policy is None:
        return []
    calendar = policies.calendar_of(policy)
    first_reply = any(f.kind is FactKind.FIRST_RESPONSE for f in facts)
    measured = []
    for fact in facts:
        metric = measured_metric(fact, policy, first_reply)
        start_ms = fact.at_ms - round(fact.value * 1000)
        if (metric is None or policy.target_s(metric) is None
                or not clock_supported(start_ms, fact.at_ms)):
            continue
        outcome = measure(metric, start_ms, fact.at_ms, policy, calendar)
        measured.append(Fact(FactKind.SLA, fact.channel, fact.at_ms, fact.event_id, metric,
                             policy.name, 1.0 if outcome.within_target else 0.0, fact.cycle))
    return measured


def first_replies(ingested: Ingested) -> set[str]:
    """Events that gave their cycle the agent FRT."""
    return {fact.event_id for fact in ingested.added
            if fact.kind is FactKind.FIRST_RESPONSE and fact.role == "agent"}


def is_first_reply(fact: Fact, state: CycleState, first_replies: set[str]) -> bool:
    """The reply also gave its cycle the agent FRT (that wait is first_response's)."""
    return fact.event_id in first_replies or (
        fact.cycle == state.cycles and fact.at_ms == state.first_agent_reply_ms)


def _identity(fact: Fact) -> tuple[FactKind, str, str, float]:
    return (fact.kind, fact.role, fact.event_id, fact.value)


def new_facts(ingested: Ingested) -> list[Fact]:
    """Added facts, except those a reordering only re-emitted (retracted with the same value)."""
    if not ingested.retracted:
        return ingested.added
    surplus = Counter(map(_identity, ingested.added)) - Counter(map(_identity, ingested.retracted))
    fresh = []
    for fact in ingested.added:
        key = _identity(fact)
        if surplus[key] > 0:
            surplus[key] -= 1
            fresh.append(fact)
    return fresh
