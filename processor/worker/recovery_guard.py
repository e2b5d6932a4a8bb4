"""A table recovery that stopped receiving changelog records is resumed where it stopped.

Faust's fetch loop can drop the rest of a fetch (a consumer generation that changed while it
iterated, a partition missing from the active set it read before the fetch), after the Kafka
client has moved its position past those records. For the events and facts topics the delivery
guard reads such holes from Kafka itself; for a changelog in recovery nothing does, and Faust's
`Recovery` waits for records that will never come: seen on the real broker in the two-worker
rebalance test, a worker stayed in recovery for a minute (until the next rebalance), logging
"No event received for active tp ... since recovery start" every 5 s, while the partitions'
records had been fetched.

The check, every few seconds while a recovery runs (from the consumer, not an app timer:
those start only after the first recovery): for each changelog partition being
restored, the last offset the recovery received, the partition's last offset, and the client's
fetch position. A partition is stalled when records remain, the client's position is past the
next one the recovery needs, nothing is queued for the recovery, and none of this changed for
`STALL_S`; it is then sought back to the record after the last one received. Records applied
twice in order leave a table as they were (last value per key wins).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import faust
from faust.types import TP
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.worker.faust_seams import handed_out

__all__ = ["STALL_S", "PartitionRestore", "RecoveryGuard", "RecoveryGuardCollector", "stalled"]

log = logging.getLogger("msgkpi.worker.recovery")

STALL_S: Final = 10.0
"""How long a partition's restore may show no progress before it is read again (Faust's own
warning comes after 5 s without a record)."""


@dataclass(frozen=True, slots=True)
class PartitionRestore:
    """Where a changelog partition's restore stands."""

    received: int
    """The last offset the recovery received (-1: none)."""
    last: int
    """The partition's last offset when the recovery started."""
    position: int | None
    """The next offset the Kafka client will hand out (None or -1: not known yet)."""


def stalled(now: PartitionRestore) -> int | None:
    """The offset to read again from, if the client is past records the recovery never got."""
    needed = now.received + 1
    if now.received >= now.last or now.position is None or now.position <= needed:
        return None
    return needed


class RecoveryGuard:
    """Watches Faust's recovery of the app's tables (`check` runs from the consumer's
    `recovery_checks`)."""

    def __init__(self, app: faust.App, stall_s: float = STALL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._app = app
        self._stall_s = stall_s
        self._clock = clock
        self._since: dict[TP, tuple[PartitionRestore, float]] = {}
        self.reads_again = 0
        """Partitions sought back so far."""

    async def check(self) -> list[TP]:
        """Seek back the partitions stalled for `stall_s`; returns them."""
        tables: Any = self._app.tables
        recovery = tables.recovery
        if not recovery.in_recovery or self._app.rebalancing or tables.changelog_queue.qsize():
            self._since.clear()  # not restoring, or records are still on their way
            return []
        due = self._due(self._restores(recovery))
        for tp, offset in due.items():
            await self._read_again(tp, offset)
        return list(due)

    def _restores(self, recovery: Any) -> dict[TP, PartitionRestore]:
        consumer = self._app.consumer
        restores = {}
        for tp in list(recovery.active_tps):
            received, last = recovery.active_offsets.get(tp), recovery.active_highwaters.get(tp)
            if received is not None and last is not None:
                restores[tp] = PartitionRestore(received, last, handed_out(consumer, tp))
        return restores

    def _due(self, restores: Mapping[TP, PartitionRestore]) -> dict[TP, int]:
        now = self._clock()
        due: dict[TP, int] = {}
        for tp in list(self._since):
            if tp not in restores:
                del self._since[tp]
        for tp, restore in restores.items():
            offset = stalled(restore)
            if offset is None:
                self._since.pop(tp, None)
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != restore:
                self._since[tp] = (restore, now)
            elif now - seen[1] >= self._stall_s:
                due[tp] = offset
        return due

    async def _read_again(self, tp: TP, offset: int) -> None:
        log.warning("recovery of %s[%d] received nothing past offset %d for %.0f s while the "
                    "client had fetched further: reading it again from %d", tp.topic,
                    tp.partition, offset - 1, self._stall_s, offset)
        await self._app.consumer.seek(tp, offset)
        self._since.pop(tp, None)
        self.reads_again += 1


class RecoveryGuardCollector(Collector):
    def __init__(self, guard: RecoveryGuard) -> None:
        self._guard = guard

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "msgkpi_worker_recovery_rereads",
            "Changelog partitions whose restore stalled past records the client had fetched, "
            "read again from the last record received.", value=self._guard.reads_again)
