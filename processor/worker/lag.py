"""`msgkpi_worker_consumer_lag`: how far this worker is behind on each partition it owns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ConsumerLagCollector", "next_offset_to_process"]


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
        for partition, records in sorted(self._lag_by_partition().items()):
            lag.add_metric([self._topic, str(partition)], records)
        yield lag

    def _lag_by_partition(self) -> dict[int, int]:
        try:
            consumer = self._app.consumer
            assigned = [tp for tp in consumer.assignment() if tp.topic == self._topic]
        except Exception:  # consumer not started yet: nothing to report
            return {}
        result: dict[int, int] = {}
        for tp in assigned:
            try:
                highwater = consumer.highwater(tp)
            except Exception:
                continue
            if highwater is None:
                continue
            next_offset = next_offset_to_process(consumer, tp, self._processed)
            result[tp.partition] = max(0, int(highwater) - next_offset)
        return result
