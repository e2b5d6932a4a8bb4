"""Event-time windows over KPI facts: panes, rolling windows, snapshots. Pure, no clock.

Each window size is cut into `PANES_PER_WINDOW` panes (5 min -> 25 s panes, 1 h -> 5 min,
24 h -> 2 h). A fact lands in the pane holding its event time, in every window size. The rolling
window ending at a pane boundary `end` is the merge of the panes in [end - size, end); it is
*closed* (final) once the watermark passes `end + grace`. Facts can be withdrawn (a reordered
event replaced them), so every aggregate here supports negative weights exactly: counters add,
sketches subtract bucket counts, tag and customer maps count per key.

Lagged facts (`answered`, `excluded`: stamped at a customer message's time, known only at the
reply or resolution) are kept in a pane as counters per delay, `name@k` where k is the number
of panes between the message's pane and the reply's; a window adds `name@k` only for the
panes whose k makes the reply fall before the window's end (docs/kpis.md, reply rate).

Per-agent figures (human agents only) are kept per pane as agent -> {field: count}; a pane
counts at most `MAX_AGENTS_PER_PANE` agents one by one and folds later newcomers into
`OTHER_AGENT`. An agent once admitted to a pane keeps its slot (even at zero), so a withdrawn
fact always leaves the entry that counted it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from processor.kpi.facts import FCR_ONE_AGENT, Fact, FactKind, effective_ms
from processor.kpi.sketch import LogSketch

__all__ = [
    "AGENT_FIELDS",
    "CSAT_SCALE",
    "DEFAULT_WINDOWS",
    "MAX_AGENTS_PER_PANE",
    "MAX_TAGS_PER_PANE",
    "NPS_SCALE",
    "OTHER_AGENT",
    "OTHER_TAG",
    "PANES_PER_WINDOW",
    "TIME_SERIES",
    "TOP_TAGS",
    "WindowAggregate",
    "WindowSpec",
    "closed_window_ends",
    "fact_contributions",
    "pane_start",
    "panes_of_window",
    "parse_window",
    "sla_counter",
    "window_ends_with",
]

PANES_PER_WINDOW: Final = 12
MAX_TAGS_PER_PANE: Final = 50
"""Distinct tags a pane counts one by one; the rest are counted as `OTHER_TAG`."""
OTHER_TAG: Final = "other"
TOP_TAGS: Final = 10
"""Tags in a snapshot: the top k of the window."""
MAX_AGENTS_PER_PANE: Final = 200
"""Distinct agents a pane counts one by one; later newcomers are counted as `OTHER_AGENT`."""
OTHER_AGENT: Final = "other"
AGENT_FIELDS: Final = ("messages", "replies", "first_responses", "first_response_ms",
                       "resolutions")
"""Per-agent figures of a window: outbound agent messages, agent replies, agent first
responses and the sum of their FRT in whole milliseconds, cycles resolved."""
CSAT_SCALE: Final = "5"
NPS_SCALE: Final = "10"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A rolling window size, e.g. WindowSpec("5m", 300_000)."""

    name: str
    size_ms: int
    pane_ms: int = field(init=False, repr=False, compare=False)
    """size_ms / PANES_PER_WINDOW (kept, not derived per call: it is read for every fact)."""

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.size_ms % PANES_PER_WINDOW:
            raise ValueError(f"window size must be a positive multiple of {PANES_PER_WINDOW} ms")
        object.__setattr__(self, "pane_ms", self.size_ms // PANES_PER_WINDOW)


DEFAULT_WINDOWS: Final = (
    WindowSpec("5m", 5 * 60_000), WindowSpec("1h", 3_600_000), WindowSpec("24h", 86_400_000),
)

_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_window(text: str) -> WindowSpec:
    """'5m', '1h', '24h', '7d' -> WindowSpec."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS_MS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"not a window size such as 5m, 1h or 24h: {text!r}")
    return WindowSpec(text, int(number) * _UNITS_MS[unit])


def pane_start(at_ms: int, spec: WindowSpec) -> int:
    return at_ms - at_ms % spec.pane_ms


def panes_of_window(end_ms: int, spec: WindowSpec) -> range:
    """Start times of the panes of the window [end - size, end)."""
    return range(end_ms - spec.size_ms, end_ms, spec.pane_ms)


def closed_window_ends(after_ms: int, watermark_ms: int, grace_ms: int,
                       spec: WindowSpec) -> range:
    """Window ends (pane boundaries) later than `after_ms` whose grace has passed."""
    last = pane_start(watermark_ms - grace_ms, spec)
    first = pane_start(after_ms, spec) + spec.pane_ms
    return range(first, last + 1, spec.pane_ms)


def window_ends_with(pane_starts: Iterable[int], ends: range, spec: WindowSpec) -> list[int]:
    """The ends in `ends` whose window holds at least one of `pane_starts`, ascending: a pane
    starting at s is in the windows ending at s + 1..PANES_PER_WINDOW panes. Costs the panes,
    not the span: one event stamped in 1970 must not make the stage walk every window since."""
    if not ends:
        return []
    lowest = ends.start - spec.size_ms
    found = {start + k * spec.pane_ms
             for start in pane_starts if lowest <= start < ends[-1]
             for k in range(1, PANES_PER_WINDOW + 1)}
    return sorted(end for end in found if end in ends)


TIME_SERIES: Final = {
    FactKind.FIRST_RESPONSE: "first_response",
    FactKind.REPLY: "reply",
    FactKind.RESOLUTION: "resolution",
    FactKind.HANDLE: "handle",
}
"""Time KPIs kept as sketches, by fact kind; first response and reply per responder."""


SLA_PREFIX: Final = "sla|"


def sla_counter(policy: str, metric: str, name: str) -> str:
    """A pane counter of SLA attainment: `sla|<metric>|<policy>|measured|attained` (the policy
    name is free text, so it goes between the fixed parts)."""
    return f"{SLA_PREFIX}{metric}|{policy}|{name}"


def _sla_summary(counters: dict[str, int]) -> dict[str, dict[str, dict[str, int]]]:
    """policy -> metric -> {measured, attained} from the `sla|` counters."""
    summary: dict[str, dict[str, dict[str, int]]] = {}
    for name, count in sorted(counters.items()):
        if not name.startswith(SLA_PREFIX) or not count:
            continue
        metric, _, rest = name[len(SLA_PREFIX):].partition("|")
        policy, _, field_name = rest.rpartition("|")
        figures = summary.setdefault(policy, {}).setdefault(
            metric, {"measured": 0, "attained": 0})
        figures[field_name] = count
    return summary


def fact_contributions(fact: Fact) -> tuple[tuple[str, str, int], ...]:
    """What `fact` adds to an aggregate: (kind of aggregate, its name, amount per unit of
    weight)."""
    return tuple(_contributions(fact))


def _contributions(fact: Fact) -> Iterator[tuple[str, str, int]]:
    """(kind of aggregate, its name, amount per unit of weight) that `fact` feeds. Counter
    names ending in "@" take the fact's delay in panes (see the module docstring); "agent"
    aggregates are fields of `fact.agent`'s figures."""
    kind = fact.kind
    if kind is FactKind.MESSAGE:
        yield "counter", f"messages.{fact.role}", 1
        if fact.role == "agent":
            yield "agent", "messages", 1
        if fact.role == "customer":
            yield "counter", "reply_rate.received", 1
            yield "customer", fact.agent, 1
    elif kind is FactKind.ANSWERED:
        yield "counter", "reply_rate.answered@", 1
    elif kind is FactKind.EXCLUDED:
        yield "counter", "reply_rate.received@", -1
        if fact.role == "answered":
            yield "counter", "reply_rate.answered@", -1
    elif kind is FactKind.CSAT:
        yield from _csat_contributions(fact)
    elif kind is FactKind.TAG:
        yield "tag", fact.role, 1
    elif kind is FactKind.CYCLE_OPENED:
        yield "counter", "cycles.opened", 1
    elif kind is FactKind.CYCLE_RESOLVED:
        yield "counter", "cycles.resolved", 1
        yield "agent", "resolutions", 1
        if fact.value:
            yield "counter", "cycles.resolved_without_reply", 1
    elif kind is FactKind.CLOCK_SKEW:
        yield "counter", "clock_skew", 1
    elif kind is FactKind.FCR:
        yield "counter", "fcr.resolved", 1
        if fact.role == FCR_ONE_AGENT:
            yield "counter", "fcr.first_contact", 1
    elif kind is FactKind.REOPENED:
        yield "counter", "fcr.reopened", 1
        if fact.role == FCR_ONE_AGENT:
            yield "counter", "fcr.first_contact", -1
    elif kind is FactKind.SLA:
        yield "counter", sla_counter(fact.agent, fact.role, "measured"), 1
        if fact.value:
            yield "counter", sla_counter(fact.agent, fact.role, "attained"), 1
    elif kind in (FactKind.FIRST_RESPONSE, FactKind.REPLY):
        yield "sketch", f"{TIME_SERIES[kind]}.{fact.role}", 1
        if fact.role == "agent" and kind is FactKind.REPLY:
            yield "agent", "replies", 1
        elif fact.role == "agent":
            yield "agent", "first_responses", 1
            yield "agent", "first_response_ms", round(fact.value * 1000)
    elif kind in TIME_SERIES:
        yield "sketch", TIME_SERIES[kind], 1


def _csat_contributions(fact: Fact) -> Iterator[tuple[str, str, int]]:
    score = fact.value
    if fact.role == CSAT_SCALE:
        yield "counter", "csat.responses", 1
        yield "counter", "csat.score_sum_x100", round(score * 100)
        if score >= 4:
            yield "counter", "csat.satisfied", 1
    elif fact.role == NPS_SCALE:
        yield "counter", "nps.responses", 1
        if score >= 9:
            yield "counter", "nps.promoters", 1
        elif score <= 6:
            yield "counter", "nps.detractors", 1


def _add(counts: dict[str, int], name: str, amount: int) -> None:
    remaining = counts.get(name, 0) + amount
    if remaining:
        counts[name] = remaining
    else:
        counts.pop(name, None)


def _pane_lag(fact: Fact, pane_ms: int) -> int:
    """Panes from the fact's pane to the pane of the event that made it known."""
    if not pane_ms:
        return 0
    return effective_ms(fact) // pane_ms - fact.at_ms // pane_ms


@dataclass(slots=True)
class WindowAggregate:
    """Counters, time sketches, tag counts, customer counts and per-agent figures of one pane,
    or of a merged window."""

    counters: dict[str, int] = field(default_factory=dict)
    sketches: dict[str, LogSketch] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)
    """Customer -> messages: a multiset, so a withdrawn message leaves the others."""
    agents: dict[str, dict[str, int]] = field(default_factory=dict)
    """Agent -> {field of AGENT_FIELDS: count}, zero fields left out."""

    def apply(self, fact: Fact, weight: int = 1, pane_ms: int = 0,
              contributions: Sequence[tuple[str, str, int]] | None = None) -> None:
        """Add `fact` `weight` times; `pane_ms` (the pane size) places lagged facts.
        `contributions` are `fact_contributions(fact)`, when the caller has them already
        (one fact goes to a pane of every window size)."""
        if contributions is None:
            contributions = fact_contributions(fact)
        for aggregate, name, amount in contributions:
            if aggregate == "counter":
                if name.endswith("@"):
                    lag = _pane_lag(fact, pane_ms)
                    if lag >= PANES_PER_WINDOW:
                        continue  # known only after every window holding the pane ended
                    name = f"{name}{lag}"
                _add(self.counters, name, amount * weight)
            elif aggregate == "tag":
                self._apply_tag(name, weight)
            elif aggregate == "customer":
                _add(self.customers, name, weight)
            elif aggregate == "agent":
                _add(self._agent_slot(fact.agent, weight), name, amount * weight)
            else:
                self.sketches.setdefault(name, LogSketch()).add(fact.value, weight)

    def _apply_tag(self, tag: str, weight: int) -> None:
        if tag not in self.tags:
            distinct = len(self.tags) - (OTHER_TAG in self.tags)
            if weight < 0 or distinct >= MAX_TAGS_PER_PANE:
                tag = OTHER_TAG
        _add(self.tags, tag, weight)

    def _agent_slot(self, agent: str, weight: int) -> dict[str, int]:
        """The figures `agent`'s facts go to: its own, or `OTHER_AGENT`'s once the pane is full
        (a withdrawal for an agent the pane never admitted was counted there too)."""
        slot = self.agents.get(agent)
        if slot is None:
            distinct = len(self.agents) - (OTHER_AGENT in self.agents)
            if agent != OTHER_AGENT and (weight < 0 or distinct >= MAX_AGENTS_PER_PANE):
                agent = OTHER_AGENT
            slot = self.agents.setdefault(agent, {})
        return slot

    def merge(self, other: WindowAggregate, visible_lag: int | None = None) -> None:
        """Add `other` in. With `visible_lag`, `other` is a pane followed by that many panes in
        the window: its lagged counters count (under their plain name) up to that delay."""
        for name, count in other.counters.items():
            base, at, lag = name.partition("@")
            if at and visible_lag is not None:
                if int(lag) > visible_lag:
                    continue
                name = base
            self.counters[name] = self.counters.get(name, 0) + count
        for name, sketch in other.sketches.items():
            self.sketches.setdefault(name, LogSketch()).merge(sketch)
        for tag, count in other.tags.items():
            self.tags[tag] = self.tags.get(tag, 0) + count
        for customer, count in other.customers.items():
            self.customers[customer] = self.customers.get(customer, 0) + count
        for agent, figures in other.agents.items():
            mine = self.agents.setdefault(agent, {})
            for name, count in figures.items():
                mine[name] = mine.get(name, 0) + count

    @classmethod
    def merged(cls, panes: Iterable[WindowAggregate]) -> WindowAggregate:
        total = cls()
        for pane in panes:
            total.merge(pane)
        return total

    @classmethod
    def window(cls, panes: Iterable[WindowAggregate | None]) -> WindowAggregate:
        """The window made of `panes`, oldest first (None: an empty pane); lagged counters
        count when what made them known is before the window's end."""
        ordered = list(panes)
        total = cls()
        for index, pane in enumerate(ordered):
            if pane is not None:
                total.merge(pane, visible_lag=len(ordered) - 1 - index)
        return total

    def top_tags(self, k: int = TOP_TAGS) -> dict[str, int]:
        ranked = sorted(((-n, tag) for tag, n in self.tags.items() if n > 0))[:k]
        return {tag: -n for n, tag in ranked}

    def agent_figures(self) -> dict[str, dict[str, int]]:
        """Agent -> every field of AGENT_FIELDS, for agents with a non-zero one, by name."""
        return {agent: {name: figures.get(name, 0) for name in AGENT_FIELDS}
                for agent, figures in sorted(self.agents.items())
                if any(figures.values())}

    def summary(self) -> dict[str, Any]:
        """Counters as they are, count/sum/avg/p50/p90 of each time series, the top tags, the
        number of distinct customers, the per-agent figures and SLA attainment per policy."""
        times = {
            name: {
                "count": sketch.count,
                "sum": round(sketch.total, 3),
                "avg": sketch.mean,
                "p50": sketch.quantile(0.5),
                "p90": sketch.quantile(0.9),
            }
            for name, sketch in sorted(self.sketches.items())
            if sketch.count > 0
        }
        counts = {k: v for k, v in self.counters.items() if v and not k.startswith(SLA_PREFIX)}
        return {"counts": dict(sorted(counts.items())),
                "times": times,
                "tags": self.top_tags(),
                "unique_customers": sum(1 for n in self.customers.values() if n > 0),
                "agents": self.agent_figures(),
                "sla": _sla_summary(self.counters)}

    def to_dict(self) -> dict[str, Any]:
        return {"counters": self.counters,
                "sketches": {name: s.to_dict() for name, s in self.sketches.items()},
                "tags": self.tags, "customers": self.customers, "agents": self.agents}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowAggregate:
        return cls(dict(data["counters"]),
                   {name: LogSketch.from_dict(s) for name, s in data["sketches"].items()},
                   dict(data.get("tags", {})), dict(data.get("customers", {})),
                   {agent: dict(f) for agent, f in data.get("agents", {}).items()})
