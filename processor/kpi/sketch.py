"""A mergeable, retractable quantile sketch with a relative-error guarantee.

Values are counted in logarithmic buckets (the DDSketch scheme): bucket i holds values in
(gamma^(i-1), gamma^i] with gamma = (1 + a) / (1 - a), and a quantile is answered with the
bucket's midpoint 2 * gamma^i / (gamma + 1), which is within a relative error `a` of every value
in the bucket. Buckets are plain counts, so two sketches merge by adding counts and a withdrawn
value is removed exactly by subtracting (needed when a reordered event replaces a fact).
Values at or below `MIN_VALUE_S` (1 ms) share one bucket answered as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["DEFAULT_RELATIVE_ACCURACY", "MIN_VALUE_S", "LogSketch"]

DEFAULT_RELATIVE_ACCURACY: Final = 0.01
MIN_VALUE_S: Final = 0.001
_LOG_GAMMA: dict[float, float] = {}
"""log(gamma) per relative accuracy, the same float every time (an index per added value)."""


@dataclass(slots=True)
class LogSketch:
    """Counts of values (seconds) by logarithmic bucket, plus exact count and sum."""

    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    bins: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0
    count: int = 0
    total_ms: int = 0
    """Exact sum in whole milliseconds (durations come from millisecond timestamps), so the
    sum and mean do not depend on the order values were added in."""

    @property
    def total(self) -> float:
        return self.total_ms / 1000

    @property
    def _gamma(self) -> float:
        return (1 + self.relative_accuracy) / (1 - self.relative_accuracy)

    def _index(self, value: float) -> int:
        log_gamma = _LOG_GAMMA.get(self.relative_accuracy)
        if log_gamma is None:
            log_gamma = _LOG_GAMMA[self.relative_accuracy] = math.log(self._gamma)
        return math.ceil(math.log(value) / log_gamma)

    def add(self, value: float, weight: int = 1) -> None:
        """Add `value` `weight` times; a negative weight withdraws earlier additions."""
        if value <= MIN_VALUE_S:
            self.zero_count += weight
        else:
            index = self._index(value)
            remaining = self.bins.get(index, 0) + weight
            if remaining:
                self.bins[index] = remaining
            else:
                self.bins.pop(index, None)
        self.count += weight
        self.total_ms += round(value * 1000) * weight

    def merge(self, other: LogSketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        for index, weight in other.bins.items():
            remaining = self.bins.get(index, 0) + weight
            if remaining:
                self.bins[index] = remaining
            else:
                self.bins.pop(index, None)
        self.zero_count += other.zero_count
        self.count += other.count
        self.total_ms += other.total_ms

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """The value of rank floor(q * (count - 1)) (0-based, ascending), within the relative
        accuracy; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError("q must be within [0, 1]")
        if self.count <= 0:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = self.zero_count
        if rank < seen:
            return 0.0
        gamma = self._gamma
        for index in sorted(self.bins):
            seen += self.bins[index]
            if rank < seen:
                return 2 * gamma**index / (gamma + 1)
        return 2 * gamma ** max(self.bins) / (gamma + 1) if self.bins else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.relative_accuracy,
            "bins": [[index, weight] for index, weight in self.bins.items()],
            "zero": self.zero_count,
            "count": self.count,
            "total_ms": self.total_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogSketch:
        return cls(data["a"], {int(i): int(w) for i, w in data["bins"]}, data["zero"],
                   data["count"], data["total_ms"])
