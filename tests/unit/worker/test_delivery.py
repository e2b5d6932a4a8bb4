"""DeliveryGuard: records Faust delivers twice are dropped, records it never delivers are read
from the log and processed in offset order, and acknowledged only after processing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from processor.kpi.event_step import Record
from processor.worker.delivery import EXIT_UNPROCESSED, DeliveryCollector, DeliveryGuard


class Log:
    """One topic's partitions as lists of records, and the group's committed offsets (the two
    questions the guard asks Kafka)."""

    topic = "events"

    def __init__(self, lengths: dict[int, int], committed: dict[int, int]) -> None:
        self.records = {p: [Record(p, b"k", f"{p}:{o}".encode(), o) for o in range(n)]
                        for p, n in lengths.items()}
        self.committed_offsets = committed
        self.reads: list[tuple[int, int, int]] = []

    async def committed(self, partition: int) -> int:
        return self.committed_offsets.get(partition, 0)

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.records[partition] if start <= r.offset < end]

    def delivered(self, partition: int, *offsets: int) -> list[Record]:
        return [self.records[partition][o] for o in offsets]


def complete(guard: DeliveryGuard, records: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in asyncio.run(guard.complete(records))]


def test_records_from_the_committed_offset_pass_and_older_ones_are_dropped() -> None:
    log = Log({0: 10}, committed={0: 3})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    assert complete(guard, log.delivered(0, 1, 2, 3, 4)) == [(0, 3), (0, 4)]
    assert complete(guard, log.delivered(0, 3, 4, 5)) == [(0, 5)]  # delivered again after a seek
    assert guard.duplicates == 4 and log.reads == []


def test_a_hole_is_read_from_the_log_and_put_in_front_in_offset_order() -> None:
    log = Log({0: 20, 1: 5}, committed={0: 0, 1: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 1))
    batch = log.delivered(1, 0) + log.delivered(0, 5, 6) + log.delivered(1, 1)
    assert complete(guard, batch) == [(1, 0), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (1, 1)]
    assert log.reads == [(0, 2, 5)]
    assert guard.skipped == 3


def test_a_hole_right_after_the_assignment_is_filled_from_the_committed_offset() -> None:
    log = Log({0: 10}, committed={0: 4})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    assert complete(guard, log.delivered(0, 7)) == [(0, 4), (0, 5), (0, 6), (0, 7)]


def test_refilled_records_are_acknowledged_once_and_only_when_asked() -> None:
    log = Log({0: 10}, committed={0: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 3))
    acked: list[Any] = []
    guard.acknowledgement(acked.append)()
    assert [(m.topic, m.partition, m.offset, m.value) for m in acked] == [
        ("events", 0, 1, b"0:1"), ("events", 0, 2, b"0:2")]
    guard.acknowledgement(acked.append)()
    assert len(acked) == 2


def test_a_dropped_tail_is_read_after_two_looks_without_progress() -> None:
    log = Log({0: 10, 1: 4}, committed={0: 0, 1: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 1, 2) + log.delivered(1, 0, 1, 2, 3))
    highwaters: dict[int, int | None] = {0: 10, 1: 4, 2: None}
    assert asyncio.run(guard.stalled(highwaters)) == []  # first look: maybe still coming
    complete(guard, log.delivered(0, 3))  # progress: look again from there
    assert asyncio.run(guard.stalled(highwaters)) == []
    tail = asyncio.run(guard.stalled(highwaters))
    assert [r.offset for r in tail] == [4, 5, 6, 7, 8, 9]
    assert complete(guard, tail) == [(0, o) for o in range(4, 10)]
    assert asyncio.run(guard.stalled(highwaters)) == []


def test_after_a_reassignment_the_committed_offset_is_the_baseline_again() -> None:
    log = Log({0: 10}, committed={0: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 1, 2, 3, 4, 5))
    log.committed_offsets[0] = 2  # the new owner's state is the changelog's as of offset 2
    guard.reset([0])
    assert complete(guard, log.delivered(0, 2, 3)) == [(0, 2), (0, 3)]


def test_a_failed_batch_stops_the_process_before_faust_can_commit_it() -> None:
    code = ("import logging; logging.basicConfig();"
            "from processor.worker.delivery import stop_unprocessed;"
            "stop_unprocessed('msgkpi.windows', RuntimeError('broker gone'));"
            "print('still running')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == EXIT_UNPROCESSED
    assert "still running" not in done.stdout
    assert "msgkpi.windows: batch failed" in done.stderr and "broker gone" in done.stderr


def test_offsets_no_longer_in_the_log_are_acknowledged_so_the_commit_moves_on() -> None:
    log = Log({0: 10}, committed={0: 0})
    del log.records[0][2:5]  # retention deleted them while the worker was away
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    assert complete(guard, [*log.delivered(0, 0, 1), log.records[0][3]]) == [
        (0, 0), (0, 1), (0, 5), (0, 6)]
    acked: list[Any] = []
    guard.acknowledgement(acked.append)()
    assert sorted(m.offset for m in acked) == [2, 3, 4, 5]


def test_the_counters_say_what_the_guards_mended_per_topic() -> None:
    log = Log({0: 10}, committed={0: 2})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 1, 2, 6))
    registry = CollectorRegistry()
    registry.register(DeliveryCollector([guard]))
    page = generate_latest(registry).decode()
    assert 'msgkpi_worker_undelivered_records_total{topic="events"} 3.0' in page
    assert 'msgkpi_worker_redelivered_records_total{topic="events"} 1.0' in page


def test_a_partition_that_delivered_nothing_since_its_assignment_is_read_from_the_commit() -> None:
    log = Log({0: 5, 1: 3}, committed={0: 2, 1: 3})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    highwaters: dict[int, int | None] = {0: 5, 1: 3}
    assert asyncio.run(guard.stalled(highwaters)) == []  # first look
    tail = asyncio.run(guard.stalled(highwaters))
    assert [(r.partition, r.offset) for r in tail] == [(0, 2), (0, 3), (0, 4)]
    assert complete(guard, tail) == [(0, 2), (0, 3), (0, 4)]
    assert log.reads == [(0, 2, 5)]  # partition 1 was at its commit: nothing to read


def test_looks_taken_before_a_rebalance_do_not_count() -> None:
    log = Log({0: 5}, committed={0: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    assert asyncio.run(guard.stalled({0: 5})) == []
    guard.forget_looks()
    assert asyncio.run(guard.stalled({0: 5})) == []  # a first look again
    assert len(asyncio.run(guard.stalled({0: 5}))) == 5


def test_a_partition_waiting_for_its_fetch_is_not_read_behind_the_client() -> None:
    """A backlog serves partitions in turn (a 1 MB fetch each), so one may make no progress
    for seconds; when the client has handed out nothing beyond what was processed, nothing is
    missing and the guard must not read the partition itself."""
    log = Log({0: 10}, committed={0: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 1, 2))
    for _ in range(3):
        assert asyncio.run(guard.stalled({0: 10}, {0: 3})) == []
    assert log.reads == []


def test_records_handed_out_and_lost_are_read_up_to_the_client_position_only() -> None:
    log = Log({0: 10}, committed={0: 0})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    complete(guard, log.delivered(0, 0, 1, 2))
    assert asyncio.run(guard.stalled({0: 10}, {0: 6})) == []  # first look
    tail = asyncio.run(guard.stalled({0: 10}, {0: 6}))
    assert [r.offset for r in tail] == [3, 4, 5]
    assert log.reads == [(0, 3, 6)]


def test_nothing_fetched_since_the_assignment_is_not_read_behind_the_client() -> None:
    log = Log({0: 5}, committed={0: 2})
    guard = DeliveryGuard(log)  # type: ignore[arg-type]
    for position in (2, -1):  # at the commit, or no position at all yet
        assert asyncio.run(guard.stalled({0: 5}, {0: position})) == []
        assert asyncio.run(guard.stalled({0: 5}, {0: position})) == []
    assert log.reads == []
