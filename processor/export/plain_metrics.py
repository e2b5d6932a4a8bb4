"""Counters and histograms as plain numbers, turned into Prometheus families at scrape time.

prometheus_client's Counter and Histogram take a lock and walk the bucket list on every call;
the worker records several facts per event, all from its one event-loop thread, so that cost
was a tenth of its time (bench/RESULTS.md). These keep the same names, help texts and labels,
and the same exposition (`_total`; `_bucket`/`_count`/`_sum`), and cost a dict lookup and an
addition per call. Single-threaded use only: the worker's scrape runs on the same loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["PlainCounter", "PlainHistogram"]


class _CounterCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class _HistogramCell:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket, not cumulative; the last one is +Inf."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # le: value <= bound
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)

    def _check(self, values: tuple[str, ...]) -> None:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")

    def _families(self, cells: dict[tuple[str, ...], Any]) -> Iterator[Metric]:
        raise NotImplementedError

    def describe(self) -> Iterator[Metric]:
        """Names only, so the registry refuses a clash and `restricted_registry` finds us."""
        yield from self._families({})


class PlainCounter(_Family):
    """A counter family; `labels(...)` gives a cell with `inc`, like prometheus_client's."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str,
                 labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._cells: dict[tuple[str, ...], _CounterCell] = {}
        registry.register(self)

    def labels(self, *values: str) -> _CounterCell:
        cell = self._cells.get(values)
        if cell is None:
            self._check(values)
            cell = self._cells[values] = _CounterCell()
        return cell

    def inc(self, amount: float = 1) -> None:
        """The unlabelled counter."""
        self.labels().inc(amount)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._cells)

    def _families(self, cells: dict[tuple[str, ...], _CounterCell]) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        if not self.labelnames and not cells:
            family.add_metric([], 0.0)
        for values, cell in cells.items():
            family.add_metric(list(values), cell.value)
        yield family


class PlainHistogram(_Family):
    """A histogram family with fixed bucket edges; `labels(...)` gives a cell with `observe`."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str,
                 labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(sorted(float(edge) for edge in buckets if edge != float("inf")))
        self._cells: dict[tuple[str, ...], _HistogramCell] = {}
        registry.register(self)

    def labels(self, *values: str) -> _HistogramCell:
        cell = self._cells.get(values)
        if cell is None:
            self._check(values)
            cell = self._cells[values] = _HistogramCell(self.bounds)
        return cell

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._cells)

    def _families(self, cells: dict[tuple[str, ...], _HistogramCell]) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(floatToGoString(bound)  # type: ignore[no-untyped-call]
                    for bound in self.bounds), "+Inf"]
        for values, cell in cells.items():
            cumulative, buckets = 0, []
            for edge, count in zip(edges, cell.counts, strict=True):
                cumulative += count
                buckets.append((edge, float(cumulative)))
            family.add_metric(list(values), buckets, cell.sum)
        yield family
