"""Event-time windows over KPI facts: panes, rolling windows, snapshots. Pure, no clock.

Each window size is cut into `PANES_PER_WINDOW` panes (5 min -> 25 s panes, 1 h -> 5 min,
24 h -> 2 h). A fact lands in the pane holding its event time, in every window size. The rolling
window ending at a pane boundary `end` is the merge of the panes in [end - size, end); it is
*closed* (final) once the watermark passes `end + grace`. Facts can be withdrawn (a reordered
event replaced them), so every aggregate here supports negative weights exactly: counters add,
sketches subtract bucket counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from processor.kpi.facts import Fact, FactKind
from processor.kpi.sketch import LogSketch

__all__ = [
    "DEFAULT_WINDOWS",
    "PANES_PER_WINDOW",
    "TIME_SERIES",
    "WindowAggregate",
    "WindowSpec",
    "closed_window_ends",
    "pane_start",
    "panes_of_window",
    "parse_window",
]

PANES_PER_WINDOW: Final = 12


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A rolling window size, e.g. WindowSpec("5m", 300_000)."""

    name: str
    size_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.size_ms % PANES_PER_WINDOW:
            raise ValueError(f"window size must be a positive multiple of {PANES_PER_WINDOW} ms")

    @property
    def pane_ms(self) -> int:
        return self.size_ms // PANES_PER_WINDOW


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
                       spec: WindowSpec) -> Iterator[int]:
    """Window ends (pane boundaries) later than `after_ms` whose grace has passed."""
    last = pane_start(watermark_ms - grace_ms, spec)
    first = pane_start(after_ms, spec) + spec.pane_ms
    return iter(range(first, last + 1, spec.pane_ms))


TIME_SERIES: Final = {
    FactKind.FIRST_RESPONSE: "first_response",
    FactKind.REPLY: "reply",
    FactKind.RESOLUTION: "resolution",
    FactKind.HANDLE: "handle",
}
"""Time KPIs kept as sketches, by fact kind; first response and reply per responder."""


def _contributions(fact: Fact) -> Iterator[tuple[str, str]]:
    """(kind of aggregate, its name) that `fact` feeds."""
    kind = fact.kind
    if kind is FactKind.MESSAGE:
        yield "counter", f"messages.{fact.role}"
    elif kind is FactKind.CYCLE_OPENED:
        yield "counter", "cycles.opened"
    elif kind is FactKind.CYCLE_RESOLVED:
        yield "counter", "cycles.resolved"
        if fact.value:
            yield "counter", "cycles.resolved_without_reply"
    elif kind is FactKind.CLOCK_SKEW:
        yield "counter", "clock_skew"
    elif kind in (FactKind.FIRST_RESPONSE, FactKind.REPLY):
        yield "sketch", f"{TIME_SERIES[kind]}.{fact.role}"
    elif kind in TIME_SERIES:
        yield "sketch", TIME_SERIES[kind]


@dataclass(slots=True)
class WindowAggregate:
    """Counters and time sketches of one pane, or of a merged window."""

    counters: dict[str, int] = field(default_factory=dict)
    sketches: dict[str, LogSketch] = field(default_factory=dict)

    def apply(self, fact: Fact, weight: int = 1) -> None:
        for aggregate, name in _contributions(fact):
            if aggregate == "counter":
                remaining = self.counters.get(name, 0) + weight
                if remaining:
                    self.counters[name] = remaining
                else:
                    self.counters.pop(name, None)
            else:
                self.sketches.setdefault(name, LogSketch()).add(fact.value, weight)

    def merge(self, other: WindowAggregate) -> None:
        for name, count in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + count
        for name, sketch in other.sketches.items():
            self.sketches.setdefault(name, LogSketch()).merge(sketch)

    @classmethod
    def merged(cls, panes: Iterable[WindowAggregate]) -> WindowAggregate:
        total = cls()
        for pane in panes:
            total.merge(pane)
        return total

    def summary(self) -> dict[str, Any]:
        """Counters as they are, and count/sum/avg/p50/p90 of each time series."""
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
        return {"counts": dict(sorted((k, v) for k, v in self.counters.items() if v)),
                "times": times}

    def to_dict(self) -> dict[str, Any]:
        return {"counters": self.counters,
                "sketches": {name: s.to_dict() for name, s in self.sketches.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowAggregate:
        return cls(dict(data["counters"]),
                   {name: LogSketch.from_dict(s) for name, s in data["sketches"].items()})
