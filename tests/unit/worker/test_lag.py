"""One partition-progress computation for the lag gauge, the window stage's progress reports
and the SLA stage's caught-up test (processor.worker.lag.partition_lags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from processor.worker.lag import ConsumerLagCollector, partition_lags

TOPIC = "msgkpi.events"


@dataclass
class Consumer:
    """The part of Faust's consumer the computation reads."""

    highwaters: dict[TP, int | None]
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


@dataclass
class App:
    consumer: Any


def test_lag_counts_from_what_was_processed_else_from_the_commit() -> None:
    consumer = Consumer({TP(TOPIC, 0): 10, TP(TOPIC, 1): 8, TP(TOPIC, 2): None,
                         TP(TOPIC, 3): 5, TP("other", 0): 99},
                        {TP(TOPIC, 1): 6, TP(TOPIC, 3): None})
    lags = partition_lags(App(consumer), TOPIC, {0: 7})
    assert lags == {0: 3, 1: 2, 2: None, 3: 5}


def test_a_consumer_that_has_not_started_reports_nothing() -> None:
    class NotStarted:
        @property
        def consumer(self) -> Any:
            raise RuntimeError("consumer not started")

    assert partition_lags(NotStarted(), TOPIC, {}) == {}


def test_the_gauge_shows_known_lags_only() -> None:
    consumer = Consumer({TP(TOPIC, 0): 10, TP(TOPIC, 1): None})
    registry = CollectorRegistry()
    registry.register(ConsumerLagCollector(App(consumer), TOPIC, {0: 10}))
    samples = [line for line in generate_latest(registry).decode().splitlines()
               if line.startswith("msgkpi_worker_consumer_lag{")]
    assert samples == ['msgkpi_worker_consumer_lag{partition="0",topic="msgkpi.events"} 0.0']
