"""A restore that stopped short of records the client fetched is read again, once stalled."""

from __future__ import annotations

from faust.types import TP

from processor.worker.recovery_guard import PartitionRestore, RecoveryGuard, stalled

TP0 = TP("w-conversations-changelog", 0)


def test_stalled_only_when_the_client_is_past_what_the_recovery_received() -> None:
    assert stalled(PartitionRestore(received=-1, last=68, position=69)) == 0  # got nothing
    assert stalled(PartitionRestore(received=40, last=68, position=69)) == 41
    assert stalled(PartitionRestore(received=68, last=68, position=69)) is None  # complete
    assert stalled(PartitionRestore(received=40, last=68, position=41)) is None  # to fetch
    assert stalled(PartitionRestore(received=-1, last=68, position=None)) is None
    assert stalled(PartitionRestore(received=-1, last=68, position=-1)) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_read_again_after_the_same_stall_lasted_the_whole_period() -> None:
    clock = Clock()
    guard = RecoveryGuard(app=None, stall_s=10.0, clock=clock)  # type: ignore[arg-type]
    stuck = PartitionRestore(received=-1, last=68, position=69)
    assert guard._due({TP0: stuck}) == {}
    clock.now = 9.0
    assert guard._due({TP0: stuck}) == {}
    clock.now = 10.0
    assert guard._due({TP0: stuck}) == {TP0: 0}


def test_progress_restarts_the_period_and_a_finished_partition_is_forgotten() -> None:
    clock = Clock()
    guard = RecoveryGuard(app=None, stall_s=10.0, clock=clock)  # type: ignore[arg-type]
    guard._due({TP0: PartitionRestore(received=10, last=68, position=69)})
    clock.now = 8.0
    guard._due({TP0: PartitionRestore(received=30, last=68, position=69)})  # moving on
    clock.now = 12.0
    assert guard._due({TP0: PartitionRestore(received=30, last=68, position=69)}) == {}
    clock.now = 18.0
    assert guard._due({TP0: PartitionRestore(received=30, last=68, position=69)}) == {TP0: 31}
    assert guard._due({}) == {}
    assert guard._since == {}
