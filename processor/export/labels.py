"""Bounded label values: a flood of new agent ids or channels must not blow up /metrics."""

from __future__ import annotations

from typing import Final

__all__ = ["OTHER", "LabelBudget"]

OTHER: Final = "other"


class LabelBudget:
    """Admits the first `limit` distinct values of a label; later newcomers become `other`."""

    def __init__(self, limit: int, max_length: int = 64) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._max_length = max_length
        self._admitted: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._admitted:
            return value
        if len(self._admitted) >= self._limit or len(value) > self._max_length:
            return OTHER
        self._admitted.add(value)
        return value

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._admitted)
