"""`msgkpi_worker_consumer_lag`: how far this worker is behind on each partition it owns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ConsumerLagCollector", "next_offset_to_process", "partition_lags"]


def next_offset_to_process(consumer: Any, tp: Any, processed: Mapping[int, int]) -> int:
    """The next offset of `tp` this worker must process: one past the last record it processed,
    or, before its first record since the assignment, the group's committed offset. Faust keeps
    a committed offset of 0, and none at all for a group that never committed, as None; both
    mean the log start for a consumer that starts at the earliest record."""
    done = processed.get(tp.partition)
    if done is not None:
        return done
    committed = getattr(consumer, "_committed_offset", {}).get(tp)
    return int(committed) if committed else 0


def partition_lags(app: Any, topic: str, processed: Mapping[int, int]) -> dict[int, int | None]:
    """Per partition of `topic` this worker owns, the records Kafka holds that it has not
    processed yet; None where the high-water mark is not known yet (not fetched, or the
    partition is being revoked). Empty while the consumer has not started."""
    try:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
    except Exception:  # consumer not started yet
        return {}
    lags: dict[int, int | None] = {}
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # being revoked
            highwater = None
        if highwater is None or highwater < 0:
            lags[tp.partition] = None
        else:
            lags[tp.partition] = max(
                0, int(highwater) - next_offset_to_process(consumer, tp, processed))
    return lags


class ConsumerLagCollector(Collector):
    """Reads the Faust consumer at scrape time: high watermark minus next offset to process,
    for the assigned partitions of `topic` only (a revoked partition disappears at once)."""

    def __init__(self, app: Any, topic: str,
                 processed: Mapping[int, int] | None = None) -> None:
        self._app = app
        self._topic = topic
        self._processed = processed if processed is not None else {}
        """Next offset to process per partition, as the worker counts it: Faust's read
        offsets run ahead of it when its stream skips records (processor.worker.delivery)."""

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "msgkpi_worker_consumer_lag", "Records not yet processed, per owned partition.",
            labels=["topic", "partition"])
        lags = partition_lags(self._app, self._topic, self._processed)
        for partition, records in sorted(lags.items()):
            if records is not None:
                lag.add_metric([self._topic, str(partition)], records)
        yield lag
