"""The worker's own per-event work without Kafka or Faust: the ceiling of its design.

The bench's events (the same generator, seed and count as `make bench`) go through the stages
the worker runs for every event, in memory, one after the other, in batches of 1,000 split by
partition as a fetch would deliver them:

1. the event step (`EventProcessor.process_batch`: decode, validate, dedupe, the state
   machine, facts, metrics),
2. the fact deltas' wire form and back (`encode_deltas`, `decode_deltas`), as they cross the
   internal facts topic,
3. the window stage (`WindowProcessor.apply`: every fact to its pane of each window size),
4. the changelog's serialization of the changed conversations (`ConversationCodec`).

Each stage's microseconds per event, their sum and the rate that sum allows are printed: no
consumer of the real worker can go faster than that rate on this machine, whatever Kafka and
Faust cost on top. `--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

import orjson
from prometheus_client import CollectorRegistry

from bench.results import publish, row
from bench.worker_throughput import _events
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.event_step import EventProcessor, FactDelta, Record
from processor.kpi.pane_store import WindowProcessor, decode_deltas, encode_deltas
from processor.kpi.windows import DEFAULT_WINDOWS
from processor.worker.codec import ConversationCodec

PARTITIONS = 6
BATCH = 1000
GRACE_MS = 3_600_000


def _batches(count: int) -> list[list[Record]]:
    per_partition: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    for key, value in _events(count):
        partition = zlib.crc32(key) % PARTITIONS
        records = per_partition[partition]
        records.append(Record(partition, key, value, len(records), None))
    return [records[start:start + BATCH] for records in per_partition
            for start in range(0, len(records), BATCH)]


T = TypeVar("T")


def _timed(work: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    batches = _batches(args.events)
    processor = EventProcessor({}, WorkerMetrics(CollectorRegistry()), AwaitingIndex(),
                               GRACE_MS)
    step_s, outcomes = _timed(lambda: [processor.process_batch(b) for b in batches])
    deltas = [outcome.deltas for outcome in outcomes]
    changed = [outcome.changed for outcome in outcomes]

    def wire() -> list[list[FactDelta]]:
        return [decode_deltas(0, orjson.loads(encode_deltas(0, d))["deltas"]) for d in deltas]

    wire_s, decoded = _timed(wire)
    windows = WindowProcessor({}, DEFAULT_WINDOWS, GRACE_MS)
    window_s, _ = _timed(lambda: [windows.apply(d) for d in decoded])
    codec = ConversationCodec()
    # Once per changed conversation per batch: an upper bound (a checkpoint writes a
    # conversation changed by several batches in a second once).
    codec_s, _ = _timed(lambda: [codec.dumps(c) for batch in changed for c in batch.values()])

    count = args.events
    stages = {"event step": step_s, "facts wire form": wire_s, "window stage": window_s,
              "changelog serialization": codec_s}
    for name, stage_s in stages.items():
        print(f"{name:<26} {stage_s / count * 1e6:6.1f} us/event")
    total_s = sum(stages.values())
    ceiling = count / total_s
    print(f"{'sum':<26} {total_s / count * 1e6:6.1f} us/event: at most {ceiling:,.0f} events/s")
    publish([row(f"{count:,}", *(f"{s / count * 1e6:.1f}" for s in stages.values()),
                 f"{total_s / count * 1e6:.1f}", f"{ceiling:,.0f}")], args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
