"""The quantile sketch: relative error bound, exact count/sum, merge and withdrawal."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.kpi.sketch import LogSketch

values_s = st.lists(
    st.one_of(st.just(0.0), st.integers(min_value=2, max_value=7 * 86_400_000).map(
        lambda ms: ms / 1000)),
    min_size=1, max_size=300,
)
"""Durations in seconds with millisecond resolution, as the engine produces them."""


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@settings(max_examples=200, deadline=None)
@given(values_s, st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))
def test_quantiles_are_within_the_relative_accuracy(values: list[float], q: float) -> None:
    sketch = LogSketch()
    for value in values:
        sketch.add(value)
    got = sketch.quantile(q)
    want = exact_quantile(values, q)
    assert got is not None
    assert abs(got - want) <= 0.01 * want + 1e-9
    assert sketch.count == len(values)
    assert sketch.total_ms == sum(round(v * 1000) for v in values)


@settings(max_examples=100, deadline=None)
@given(values_s, values_s)
def test_merge_equals_one_sketch_of_both(left: list[float], right: list[float]) -> None:
    a, b, both = LogSketch(), LogSketch(), LogSketch()
    for value in left:
        a.add(value)
        both.add(value)
    for value in right:
        b.add(value)
        both.add(value)
    a.merge(b)
    assert a.bins == both.bins and a.zero_count == both.zero_count and a.count == both.count


@settings(max_examples=100, deadline=None)
@given(values_s, values_s)
def test_withdrawing_values_leaves_the_sketch_of_the_rest(kept: list[float],
                                                          withdrawn: list[float]) -> None:
    sketch, reference = LogSketch(), LogSketch()
    for value in kept + withdrawn:
        sketch.add(value)
    for value in withdrawn:
        sketch.add(value, -1)
    for value in kept:
        reference.add(value)
    assert sketch.bins == reference.bins
    assert (sketch.zero_count, sketch.count) == (reference.zero_count, reference.count)


def test_empty_sketch_has_no_quantile_or_mean() -> None:
    assert LogSketch().quantile(0.5) is None
    assert LogSketch().mean is None


@settings(max_examples=50, deadline=None)
@given(values_s)
def test_sum_and_mean_do_not_depend_on_order(values: list[float]) -> None:
    forward, backward = LogSketch(), LogSketch()
    for value in values:
        forward.add(value)
    for value in reversed(values):
        backward.add(value)
    assert (forward.total, forward.mean) == (backward.total, backward.mean)


def test_round_trip() -> None:
    sketch = LogSketch()
    for value in (0.0, 1.5, 60.0, 3600.0):
        sketch.add(value)
    assert LogSketch.from_dict(sketch.to_dict()) == sketch
