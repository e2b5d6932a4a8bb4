"""The batch and checkpoint protocol of a consuming stage, in one place and in order.

1. A batch is processed: state changes in memory; what another stage or a consumer must see
   (fact deltas, snapshots, DLQ records) is sent and acknowledged by Kafka before the batch
   ends. Each changed key is queued in the stage's `ChangelogWriter` (its last value wins).
2. The batch's offsets are *held* here, not yet acknowledged to Faust.
3. `commit` (at most every `interval_s` while batches arrive, and from a timer when they
   stop): every queued key goes to its changelog once, then the held offsets are acknowledged;
   Faust's next offset commit first waits until its producer has delivered everything handed
   to it, those changelog records included.
4. On a revocation (`revoke`) the queued keys still go to the changelog, but the held offsets
   are dropped: Faust has already forgotten the acknowledgements of the revoked partitions (its
   rebalancing is eager: every partition is revoked), and one given now would enter its
   bookkeeping for a partition this worker no longer owns. Their records are processed again
   by the next owner, which finds their conversations' changelog records and skips them.

A crash anywhere loses nothing: offsets are committed only after the changelog records of
everything before them, so what follows the commit is processed again; a conversation whose
changelog record did not make it produces the same fact deltas again (same ids), which the
window stage skips. A key changed by many batches between two commits is written once, as
Kafka Streams' record cache and Quix Streams' checkpoints do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.worker.tables import ChangelogWriter

__all__ = ["CHECKPOINT_INTERVAL_S", "Checkpoint", "CheckpointCollector"]

CHECKPOINT_INTERVAL_S: Final = 1.0
"""Faust's own commit interval in the worker: a held offset waits at most about this long."""
MAX_QUEUED_KEYS: Final = 20_000
"""Commit early past this many changed keys (bounds the commit's work and the replay)."""


class Checkpoint:
    """Changelog writers plus the acknowledgements held until their records are handed over."""

    def __init__(self, writers: Sequence[ChangelogWriter],
                 interval_s: float = CHECKPOINT_INTERVAL_S, max_queued: int = MAX_QUEUED_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._writers = tuple(writers)
        self._interval_s = interval_s
        self._max_queued = max_queued
        self._clock = clock
        self._held: list[Callable[[], None]] = []
        self._last_commit = clock()
        self.commits = 0
        self.written = 0
        """Changelog records handed over by the commits so far."""

    def hold(self, acknowledge: Callable[[], None]) -> None:
        """Keep a processed batch's acknowledgement until the next commit."""
        self._held.append(acknowledge)

    @property
    def pending(self) -> bool:
        return bool(self._held) or any(writer.queued for writer in self._writers)

    def due(self) -> bool:
        if not self.pending:
            return False
        return (self._clock() - self._last_commit >= self._interval_s
                or sum(writer.queued for writer in self._writers) >= self._max_queued)

    async def commit_if_due(self) -> None:
        if self.due():
            await self.commit()

    async def commit(self) -> None:
        """Changelog first, then the acknowledgements (the caller holds the stage's lock, so no
        batch is half-way)."""
        held, self._held = self._held, []
        for writer in self._writers:
            self.written += writer.queued
            await writer.flush()
        for acknowledge in held:
            acknowledge()
        self._last_commit = self._clock()
        self.commits += 1

    async def revoke(self) -> None:
        """Partitions were revoked: changelog first, the held acknowledgements dropped."""
        self._held = []
        await self.commit()


class CheckpointCollector(Collector):
    """`msgkpi_worker_checkpoints_total` and `msgkpi_worker_checkpoint_records_total`, per
    stage."""

    def __init__(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        self._checkpoints = dict(checkpoints)

    def collect(self) -> Iterator[Metric]:
        commits = CounterMetricFamily(
            "msgkpi_worker_checkpoints", "Checkpoints: changed keys written to the changelog "
            "once each, then the offsets before them released for commit.", labels=["stage"])
        records = CounterMetricFamily(
            "msgkpi_worker_checkpoint_records", "Changelog records the checkpoints wrote.",
            labels=["stage"])
        for stage, checkpoint in sorted(self._checkpoints.items()):
            commits.add_metric([stage], checkpoint.commits)
            records.add_metric([stage], checkpoint.written)
        yield from (commits, records)
