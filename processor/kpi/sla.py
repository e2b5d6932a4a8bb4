"""SLA deadlines, live at-risk/breach alerts, attainment, and WhatsApp's 24-hour window.

Pure functions of a conversation's `CycleState`, its `SlaPolicy` and that policy's
`BusinessCalendar`; time is passed in as epoch milliseconds (event time), never read here.

Semantics (where the KPI spec is silent, chosen here and stated in docs/sla.md):

- **Clocks.** `first_response` runs from `human_clock_ms` (cycle start, or the bot-to-human
  handoff) until the first agent reply; `resolution` from the cycle start until resolution;
  `next_reply` from `waiting_since_ms` (oldest customer message no agent answered) until the next
  agent reply, once per waiting period. Only open cycles have running clocks.
- **The first wait of a cycle is first response's.** The spec calls FRT "the first reply time of
  a cycle", so when a policy sets a first-response target, `next_reply` covers only the waiting
  periods after the cycle's first agent reply (no double alerts for one wait). A policy without
  a first-response target lets `next_reply` cover the first wait as well. The same rule decides
  which replies count towards next-reply attainment: `next_reply_applies`.
- **Times on the calendar.** `due_ms` = start + target in business time
  (`add_business_seconds`), `at_risk_ms` = start + at_risk x target in business time.
- **Within target** means business seconds <= target (exactly on target is attained), compared
  in whole milliseconds as `add_business_seconds` counts them.
- **Breach instant.** A breach is emitted at `breach_ms`, the first instant at which a reply
  would no longer be within target: the first instant with more than the target of business
  time elapsed. Inside open time that is `due_ms + 1` ms; when `due_ms` falls on the end of an
  open interval (a 15-minute target on a message at 17:45, office closing at 18:00), a reply in
  the closed time after it is still within target in business time, so the breach comes 1 ms
  after the calendar reopens. Thus a breach alert is emitted exactly when the cycle can no
  longer be measured as attained: the alert stream and the attainment ratio never disagree.
  The at-risk warning comes at `at_risk_ms` (the share has elapsed, `>=`).
- **Once.** `SlaTracker` remembers emitted alerts per (kind, metric, period) of the current
  cycle: `first_response` and `resolution` once per cycle; `next_reply` once per waiting period,
  keyed by its `waiting_since_ms`, except the cycle's first wait, which is keyed as "the first
  wait" because a handoff moves its `waiting_since_ms` (the same wait, not a new one). A handoff
  also restarts the FRT clock; FRT alerts already emitted for the cycle are not repeated, the
  pending ones use the new deadline. When both the at-risk and the breach of a clock are due at
  once (say the worker was down), both are emitted, at-risk first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from processor.kpi.calendar import BusinessCalendar
from processor.kpi.conversation import CycleState
from processor.kpi.facts import Fact, FactKind
from processor.kpi.policy import SLA_METRICS, SlaMetric, SlaPolicy

__all__ = [
    "LAST_CLOCK_START_MS",
    "MAX_CLOCK_MS",
    "WHATSAPP_WINDOW_MS",
    "AlertKind",
    "Deadline",
    "Measurement",
    "SlaAlert",
    "SlaTracker",
    "clock_supported",
    "deadlines",
    "due_alerts",
    "measure",
    "measured_metric",
    "next_due_ms",
    "next_reply_applies",
    "whatsapp_window_closes_ms",
    "window_closing_within",
]

AlertKind = Literal["at_risk", "breach"]
WHATSAPP_WINDOW_MS: Final = 24 * 3600 * 1000
"""WhatsApp's customer-service window: free-form replies until 24 h after the last customer
message."""

_FIRST_WAIT: Final = 0
"""Tracker period key of a cycle's first waiting period (stable across handoffs)."""
_KIND_RANK: Final = {"at_risk": 0, "breach": 1}
_METRIC_RANK: Final = {metric: i for i, metric in enumerate(SLA_METRICS)}

_Key = tuple[AlertKind, SlaMetric, int]

MAX_CLOCK_MS: Final = 400 * 86_400_000
"""Longest SLA clock measured (see `clock_supported`)."""
LAST_CLOCK_START_MS: Final = 253_307_692_799_999
"""9996-12-31T23:59:59.999Z: later clocks could end past the calendars' last year."""


def _target_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Deadline:
    """One running SLA clock of an open cycle (epoch ms)."""

    metric: SlaMetric
    period_ms: int
    """Start of the period this clock measures: the cycle start for first_response and
    resolution, the waiting period's start (`waiting_since_ms`) for next_reply."""
    start_ms: int
    """Where the clock counts from (for first_response: the cycle start or the handoff)."""
    at_risk_ms: int
    """First instant at which at_risk x target of business time has elapsed."""
    due_ms: int
    """First instant at which the whole target of business time has elapsed (the deadline)."""
    breach_ms: int
    """First instant at which more than the target has elapsed: a reply from here on misses."""


@dataclass(frozen=True, slots=True)
class SlaAlert:
    """An at-risk warning or a breach, emitted once (see `SlaTracker`)."""

    kind: AlertKind
    metric: SlaMetric
    policy: str
    cycle: int
    period_ms: int
    start_ms: int
    due_ms: int
    detected_at_ms: int
    """The `now_ms` of the `due_alerts` call that emitted it."""
    at_ms: int
    """When the alert became due (`at_risk_ms` or `breach_ms`); detected_at_ms - at_ms is the
    detection delay."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "policy": self.policy,
            "cycle": self.cycle,
            "period_ms": self.period_ms,
            "start_ms": self.start_ms,
            "due_ms": self.due_ms,
            "detected_at_ms": self.detected_at_ms,
            "at_ms": self.at_ms,
        }


@dataclass(frozen=True, slots=True)
class Measurement:
    """An SLA outcome known at a reply or resolution."""

    metric: SlaMetric
    policy: str
    business_seconds: float
    within_target: bool


@dataclass(slots=True)
class SlaTracker:
    """Which alerts of a conversation's current cycle were emitted; store it with the state.

    Bounded: keys of older cycles and of ended waiting periods are forgotten (`prune`), so it
    holds at most 2 x 3 keys.
    """

    cycle: int = 0
    emitted: set[_Key] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {"cycle": self.cycle, "emitted": [list(key) for key in sorted(self.emitted)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlaTracker:
        emitted: set[_Key] = set()
        for kind, metric, period in data.get("emitted", []):
            if kind not in _KIND_RANK or metric not in _METRIC_RANK:
                raise ValueError(f"unknown SLA alert key {[kind, metric, period]!r}")
            emitted.add((kind, metric, int(period)))
        return cls(int(data.get("cycle", 0)), emitted)

    def was_emitted(self, state: CycleState, kind: AlertKind, metric: SlaMetric,
                    period_ms: int) -> bool:
        return (self.cycle == state.cycles
                and (kind, metric, _period_key(state, metric, period_ms)) in self.emitted)

    def prune(self, state: CycleState) -> None:
        """Forget what no longer matters: another cycle's keys, ended waiting periods."""
        if self.cycle != state.cycles:
            self.cycle = state.cycles
            self.emitted.clear()
            return
        current = (None if state.waiting_since_ms is None
                   else _period_key(state, "next_reply", state.waiting_since_ms))
        self.emitted = {key for key in self.emitted
                        if key[1] != "next_reply" or key[2] == current}


def _period_key(state: CycleState, metric: SlaMetric, period_ms: int) -> int:
    if metric != "next_reply" or state.first_agent_reply_ms is None:
        return _FIRST_WAIT  # per cycle, or the cycle's first wait
    return period_ms


def next_reply_applies(policy: SlaPolicy, first_reply: bool) -> bool:
    """Whether a wait (and the reply ending it) counts for the next_reply target: not the
    cycle's first wait when the policy has a first-response target (that wait is FRT's)."""
    return policy.next_reply_s is not None and not (
        first_reply and policy.first_response_s is not None)


def clock_supported(start_ms: int, end_ms: int | None = None) -> bool:
    """Whether an SLA clock is measured at all: it starts between 1970 and the end of 9996 and
    runs at most MAX_CLOCK_MS. Event times are the platforms' (up to the year 9999 passes the
    schema); a clock from a bogus 1970 stamp to now, or one near the calendar's last year,
    would cost years of calendar walking or overflow it. Such clocks get no deadline, no alert
    and no attainment (the SLA stage counts them)."""
    if not 0 <= start_ms <= LAST_CLOCK_START_MS:
        return False
    return end_ms is None or end_ms - start_ms <= MAX_CLOCK_MS


def _deadline(metric: SlaMetric, period_ms: int, start_ms: int, policy: SlaPolicy,
              calendar: BusinessCalendar) -> Deadline | None:
    target = policy.target_s(metric)
    at_risk = policy.at_risk_s(metric)
    if target is None or at_risk is None or not clock_supported(start_ms):
        return None
    target_ms = _target_ms(target)
    try:
        return Deadline(
            metric,
            period_ms,
            start_ms,
            calendar.add_business_seconds(start_ms, _target_ms(at_risk) / 1000),
            calendar.add_business_seconds(start_ms, target_ms / 1000),
            calendar.add_business_seconds(start_ms, (target_ms + 1) / 1000),
        )
    except ValueError:  # a calendar so rarely open that the deadline is past the year 9998
        return None


def deadlines(state: CycleState, policy: SlaPolicy,
              calendar: BusinessCalendar) -> list[Deadline]:
    """The running clocks of the state's open cycle that the policy sets targets for, in the
    order first_response, next_reply, resolution; [] for a closed (or no) cycle."""
    if not state.open:
        return []
    found: list[Deadline | None] = []
    if state.first_agent_reply_ms is None:
        found.append(_deadline("first_response", state.cycle_start_ms, state.human_clock_ms,
                               policy, calendar))
    waiting = state.waiting_since_ms
    if waiting is not None and next_reply_applies(policy, state.first_agent_reply_ms is None):
        found.append(_deadline("next_reply", waiting, waiting, policy, calendar))
    found.append(_deadline("resolution", state.cycle_start_ms, state.cycle_start_ms, policy,
                           calendar))
    return [deadline for deadline in found if deadline is not None]


def _pending(state: CycleState, tracker: SlaTracker, policy: SlaPolicy,
             calendar: BusinessCalendar) -> list[tuple[AlertKind, int, Deadline]]:
    out: list[tuple[AlertKind, int, Deadline]] = []
    for deadline in deadlines(state, policy, calendar):
        times: tuple[tuple[AlertKind, int], ...] = (
            ("at_risk", deadline.at_risk_ms), ("breach", deadline.breach_ms))
        for kind, at in times:
            if not tracker.was_emitted(state, kind, deadline.metric, deadline.period_ms):
                out.append((kind, at, deadline))
    return out


def due_alerts(state: CycleState, tracker: SlaTracker, policy: SlaPolicy,
               calendar: BusinessCalendar, now_ms: int) -> list[SlaAlert]:
    """At-risk and breach alerts due by `now_ms` and not emitted yet; marks them emitted in
    `tracker` (and prunes it). Ordered by due time, at-risk before breach at equal times."""
    tracker.prune(state)
    alerts: list[SlaAlert] = []
    for kind, at, deadline in _pending(state, tracker, policy, calendar):
        if at > now_ms:
            continue
        metric = deadline.metric
        tracker.emitted.add((kind, metric, _period_key(state, metric, deadline.period_ms)))
        alerts.append(SlaAlert(kind, metric, policy.name, state.cycles, deadline.period_ms,
                               deadline.start_ms, deadline.due_ms, now_ms, at))
    alerts.sort(key=lambda a: (a.at_ms, _KIND_RANK[a.kind], _METRIC_RANK[a.metric]))
    return alerts


def next_due_ms(state: CycleState, tracker: SlaTracker, policy: SlaPolicy,
                calendar: BusinessCalendar) -> int | None:
    """The earliest at-risk or breach instant not emitted yet (None: nothing pending). It is in
    the past when `due_alerts` has not been called since it passed: fire the timer at once."""
    times = [at for _, at, _ in _pending(state, tracker, policy, calendar)]
    return min(times) if times else None


def measure(metric: SlaMetric, start_ms: int, end_ms: int, policy: SlaPolicy,
            calendar: BusinessCalendar) -> Measurement:
    """The outcome of a clock that stopped at `end_ms` (reply or resolution). A stop before the
    start counts as 0 s (clock skew). ValueError when the policy sets no target for `metric`."""
    target = policy.target_s(metric)
    if target is None:
        raise ValueError(f"policy {policy.name!r} sets no {metric} target")
    seconds = calendar.business_seconds(start_ms, end_ms)
    return Measurement(metric, policy.name, seconds,
                       _target_ms(seconds) <= _target_ms(target))


def measured_metric(fact: Fact, policy: SlaPolicy, first_reply: bool) -> SlaMetric | None:
    """The SLA metric a first response, reply or resolution fact ends, if `policy` covers it
    (None for bot facts, and for a reply the policy does not count as a next reply).
    `first_reply`: the reply is the one that gave the cycle its agent FRT."""
    if fact.kind is FactKind.FIRST_RESPONSE and fact.role == "agent":
        return "first_response"
    if fact.kind is FactKind.REPLY and fact.role == "agent" and next_reply_applies(
            policy, first_reply):
        return "next_reply"
    if fact.kind is FactKind.RESOLUTION:
        return "resolution"
    return None


def whatsapp_window_closes_ms(state: CycleState) -> int | None:
    """When WhatsApp's customer-service window closes (last customer message + 24 h), for an open
    cycle whose customer still waits for an agent reply; None otherwise. The caller applies it to
    WhatsApp conversations only."""
    if not state.open or state.waiting_since_ms is None or state.last_customer_ms is None:
        return None
    return state.last_customer_ms + WHATSAPP_WINDOW_MS


def window_closing_within(state: CycleState, now_ms: int, horizon_ms: int = 3600_000) -> bool:
    """The window is still open at `now_ms` (it closes at, not after, +24 h) and closes within
    `horizon_ms`: now < closes <= now + horizon. An already closed window does not count."""
    closes = whatsapp_window_closes_ms(state)
    return closes is not None and now_ms < closes <= now_ms + horizon_ms
