"""The plain families expose exactly what prometheus_client's Counter and Histogram would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from processor.export.plain_metrics import PlainCounter, PlainHistogram

BUCKETS = (1.0, 10.0, 45.0, 600.0, 1209600.0)


def _exposition(registry: CollectorRegistry) -> list[str]:
    return sorted(line for line in generate_latest(registry).decode().splitlines()
                  if "_created" not in line)


def test_same_exposition_as_prometheus_client() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    their_counter = Counter("x_messages", "Messages.", ["channel", "author"], registry=theirs)
    their_histogram = Histogram("x_seconds", "Seconds.", ["channel"], buckets=BUCKETS,
                                registry=theirs)
    their_plain = Counter("x_events", "Events.", registry=theirs)
    our_counter = PlainCounter(ours, "x_messages", "Messages.", ["channel", "author"])
    our_histogram = PlainHistogram(ours, "x_seconds", "Seconds.", ["channel"], buckets=BUCKETS)
    our_plain = PlainCounter(ours, "x_events", "Events.")
    rng = random.Random(7)
    for _ in range(2000):
        channel = rng.choice(["whatsapp", "line", "telegram"])
        author = rng.choice(["agent", "customer"])
        # Edges themselves must land in their own bucket (le is "less than or equal").
        value = rng.choice([0.0, 1.0, 1.5, 10.0, 44.9, 45.0, 600.0, 601.0, 1209600.0, 2e6])
        their_counter.labels(channel, author).inc(value)
        our_counter.labels(channel, author).inc(value)
        their_histogram.labels(channel).observe(value)
        our_histogram.labels(channel).observe(value)
    their_plain.inc(3)
    our_plain.inc(3)
    assert _exposition(ours) == _exposition(theirs)


def test_an_unlabelled_counter_is_exposed_at_zero_before_its_first_inc() -> None:
    registry = CollectorRegistry()
    PlainCounter(registry, "x_dropped", "Dropped.")
    assert registry.get_sample_value("x_dropped_total") == 0.0


def test_restricted_registry_finds_a_plain_family_by_name() -> None:
    registry = CollectorRegistry()
    PlainCounter(registry, "x_events", "Events.").inc(2)
    PlainCounter(registry, "x_other", "Other.").inc(5)
    text = generate_latest(registry.restricted_registry(["x_events_total"])).decode()
    assert "x_events_total 2.0" in text
    assert "x_other" not in text


def test_a_name_clash_is_refused_like_prometheus_client_does() -> None:
    registry = CollectorRegistry()
    PlainCounter(registry, "x_events", "Events.")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("x_events", "Again.", registry=registry)


def test_wrong_label_count_and_negative_increments_are_refused() -> None:
    counter = PlainCounter(CollectorRegistry(), "x_messages", "Messages.", ["channel"])
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("whatsapp", "agent")
    with pytest.raises(ValueError, match="only go up"):
        counter.labels("whatsapp").inc(-1)
