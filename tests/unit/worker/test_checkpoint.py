"""The checkpoint protocol: changelog first, acknowledgements after, each key written once."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from processor.worker.checkpoint import Checkpoint, CheckpointCollector
from processor.worker.tables import ChangelogWriter


class RecordingWriter(ChangelogWriter):
    """A ChangelogWriter whose flush records what it would hand to the producer."""

    def __init__(self, log: list[Any]) -> None:
        super().__init__(table=None)
        self.log = log

    async def flush(self) -> None:
        queued, self._queued = self._queued, {}
        self.log.append(("changelog", {key: value for key, (_, value) in queued.items()}))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_commit_hands_the_changelog_over_before_any_acknowledgement() -> None:
    log: list[Any] = []
    writer = RecordingWriter(log)
    checkpoint = Checkpoint([writer])
    writer.write(0, "c1", "state-1")
    checkpoint.hold(lambda: log.append("ack batch 1"))
    writer.write(1, "c2", "state-2")
    checkpoint.hold(lambda: log.append("ack batch 2"))
    asyncio.run(checkpoint.commit())
    assert log == [("changelog", {"c1": "state-1", "c2": "state-2"}), "ack batch 1",
                   "ack batch 2"]
    assert not checkpoint.pending


def test_a_key_changed_by_many_batches_is_written_once_with_its_last_value() -> None:
    log: list[Any] = []
    writer = RecordingWriter(log)
    checkpoint = Checkpoint([writer])
    for batch in range(5):
        writer.write(0, "c1", f"after batch {batch}")
        checkpoint.hold(lambda: None)
    writer.write(0, "c2", "open")
    writer.write(0, "c2", None)  # expired before the commit: only the tombstone goes
    asyncio.run(checkpoint.commit())
    assert log == [("changelog", {"c1": "after batch 4", "c2": None})]


def test_due_after_the_interval_or_when_many_keys_wait() -> None:
    clock = Clock()
    writer = RecordingWriter([])
    checkpoint = Checkpoint([writer], interval_s=1.0, max_queued=3, clock=clock)
    assert not checkpoint.due()  # nothing pending
    writer.write(0, "c1", "x")
    checkpoint.hold(lambda: None)
    clock.now += 0.5
    assert not checkpoint.due()
    clock.now += 0.5
    assert checkpoint.due()
    asyncio.run(checkpoint.commit())
    assert not checkpoint.due()
    for key in ("a", "b", "c"):
        writer.write(0, key, "x")
    assert checkpoint.due()  # three keys queued: early, whatever the clock says


def test_acknowledgements_held_during_a_commit_wait_for_the_next_one() -> None:
    log: list[Any] = []

    class SlowWriter(RecordingWriter):
        async def flush(self) -> None:
            await super().flush()
            checkpoint.hold(lambda: log.append("ack of a batch held mid-commit"))

    writer = SlowWriter(log)
    checkpoint = Checkpoint([writer])
    checkpoint.hold(lambda: log.append("ack before"))
    asyncio.run(checkpoint.commit())
    assert log == [("changelog", {}), "ack before"]
    assert checkpoint.pending


def test_the_collector_counts_commits_and_records_written_per_stage() -> None:
    writer = RecordingWriter([])
    checkpoint = Checkpoint([writer])
    registry = CollectorRegistry()
    registry.register(CheckpointCollector({"conversations": checkpoint}))
    for key in ("c1", "c2", "c1"):
        writer.write(0, key, "x")
    asyncio.run(checkpoint.commit())
    labels = {"stage": "conversations"}
    assert registry.get_sample_value("msgkpi_worker_checkpoints_total", labels) == 1
    assert registry.get_sample_value("msgkpi_worker_checkpoint_records_total", labels) == 2


def test_a_revocation_writes_the_changelog_and_drops_the_held_acknowledgements() -> None:
    log: list[Any] = []
    writer = RecordingWriter(log)
    checkpoint = Checkpoint([writer])
    writer.write(0, "c1", "state")
    checkpoint.hold(lambda: log.append("ack for a partition Faust has just forgotten"))
    asyncio.run(checkpoint.revoke())
    assert log == [("changelog", {"c1": "state"})]
    assert not checkpoint.pending
