"""Faust wiring of the window stage (logic in processor.kpi.pane_store).

conversation stage --fact deltas, keyed by channel--> <app>-facts --> window table (panes)
                                                                  --> msgkpi.kpi snapshots
                                                                  --> msgkpi_window_* gauges
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry

from processor.config import Settings
from processor.export.window_metrics import WindowCollector
from processor.kpi.event_step import EventProcessor, FactDelta, Record
from processor.kpi.pane_store import (
    PaneRecord,
    WindowProcessor,
    decode_deltas,
    encode_deltas,
    snapshot_key,
)
from processor.kpi.windows import WindowSpec, parse_window
from processor.topics import facts_topic
from processor.worker.checkpoint import CHECKPOINT_INTERVAL_S, Checkpoint
from processor.worker.codec import decode_or_drop
from processor.worker.delivery import (
    DELIVERY_CHECK_S,
    DeliveryGuard,
    KafkaRanges,
)
from processor.worker.faust_seams import deliver_batches, local_dict, string_keyed_table
from processor.worker.lag import partition_lags
from processor.worker.tables import ChangelogWriter

__all__ = ["WindowStage", "attach_window_stage"]

log = logging.getLogger("msgkpi.worker.windows")


class WindowRecordCodec(faust.Codec):
    """Pane records and closed-window marks <-> JSON."""

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, PaneRecord):
            return orjson.dumps({"pane": obj.to_dict()})
        return orjson.dumps({"closed": int(obj)})

    def _loads(self, s: bytes) -> Any:
        return decode_or_drop("window", s, _window_record)


def _window_record(data: dict[str, Any]) -> Any:
    return PaneRecord.from_dict(data["pane"]) if "pane" in data else int(data["closed"])


def channel_partition(channel: str, partitions: int) -> int:
    """The facts partition (and window-table partition) that owns `channel`."""
    return int((murmur2(channel.encode()) & 0x7FFFFFFF) % partitions)


class WindowStage:
    """Sends fact deltas and progress reports; owns the window agent, timer and gauges."""

    def __init__(self, app: faust.App, settings: Settings, processor: EventProcessor) -> None:
        self.partitions = settings.topics.events_partitions
        self.specs: tuple[WindowSpec, ...] = tuple(parse_window(w) for w in settings.windows)
        self._settings = settings
        self._app = app
        self._processor = processor
        self.facts = app.topic(
            facts_topic(settings.app_id), key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=self.partitions, internal=True,
        )
        self.kpi = app.topic(settings.topics.kpi, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
        self.table = string_keyed_table(app, "windows", self.partitions, WindowRecordCodec())
        self.changelog = ChangelogWriter(self.table)
        self.checkpoint = Checkpoint([self.changelog])
        self.panes = local_dict(self.table)
        self.windows = WindowProcessor(self.panes, self.specs, settings.grace_ms)
        self.guard = DeliveryGuard(KafkaRanges(settings.kafka_bootstrap, settings.app_id,
                                               self.facts.get_topic_name(),
                                               settings.kafka_security))
        self.applying = asyncio.Lock()
        """Held while a batch of facts is applied, while snapshots are published or the
        checkpoint commits, and by a revocation that drops panes."""

    def owns(self, channel: str) -> bool:
        return channel_partition(channel, self.partitions) in self._owned_partitions()

    def _owned_partitions(self) -> set[int]:
        try:
            assignment = self._app.consumer.assignment()
        except Exception:  # not started yet
            return set()
        return {tp.partition for tp in assignment if tp.topic == self.facts.get_topic_name()}

    async def send_deltas(self, deltas: list[FactDelta]) -> None:
        """Hand a batch's deltas to the window stage and wait until Kafka has them: only then
        may the conversations that produced them be persisted (else a crash could lose them)."""
        grouped: dict[str, dict[int, list[FactDelta]]] = defaultdict(lambda: defaultdict(list))
        for delta in deltas:
            grouped[delta.fact.channel][delta.partition].append(delta)
        pending = []
        for channel, by_source in grouped.items():
            target = channel_partition(channel, self.partitions)
            for source, items in by_source.items():
                # force: publish now, not attached to the current event (Faust would hold
                # attached messages until the commit, after the changelog writes).
                pending.append(await self.facts.send(
                    key=channel.encode(), value=encode_deltas(source, items), partition=target,
                    force=True))
        if pending:
            await asyncio.gather(*pending)

    async def report_progress(self) -> None:
        """Tell every window partition how far each owned source partition has got."""
        lags = partition_lags(self._app, self._settings.topics.events,
                              self._processor.partition_next_offset)
        for source, behind in lags.items():  # unknown counts as behind
            report = orjson.dumps({"report": {
                "src": source, "newest": self._processor.partition_max_ms.get(source),
                "caught_up": behind == 0}})
            for target in range(self.partitions):
                await self.facts.send(key=b"", value=report, partition=target, force=True)

    async def handle(self, records: list[Record]) -> None:
        """A batch of facts records as the stream delivered it (see `DeliveryGuard`)."""
        async with self.applying:
            await self.guard.process(self._app, records, self._apply, self.checkpoint.hold)
            await self.checkpoint.commit_if_due()

    async def handle_dropped_tails(self) -> None:
        async with self.applying:
            await self.guard.process_stalled(self._app, self._apply, self.checkpoint.hold)

    async def commit_when_idle(self) -> None:
        async with self.applying:
            await self.checkpoint.commit_if_due()

    async def _apply(self, records: list[Record]) -> None:
        await self.on_messages([(r.partition, r.value) for r in records if r.value is not None])

    async def on_messages(self, messages: list[tuple[int, bytes]]) -> None:
        """Apply a batch of (facts partition, value) messages and queue each changed pane for
        the checkpoint (which writes it before the batch's offsets are acknowledged)."""
        changed: set[str] = set()
        for partition, value in messages:
            message = orjson.loads(value)
            if "report" in message:
                report = message["report"]
                grown = self.windows.report(partition, report["src"], report["newest"],
                                            report["caught_up"])
                if grown is not None:
                    changed.add(grown)
            else:
                changed |= self.windows.apply(decode_deltas(message["src"], message["deltas"]))
        for key in changed:
            self.changelog.write(self._partition_of_key(key), key, self.panes[key])

    async def publish_snapshots(self) -> None:
        async with self.applying:  # not between a batch's panes and their checkpoint
            await self._publish_snapshots()

    async def _publish_snapshots(self) -> None:
        snapshots: list[dict[str, Any]] = []
        written: set[str] = set()
        deleted: set[str] = set()
        for window_partition in sorted(self._owned_partitions()):
            watermark = self.windows.watermark(self.partitions, window_partition)
            if watermark is None:
                continue
            due, wrote, dropped = self.windows.tick(watermark, self._channels_of(window_partition))
            snapshots += due
            written |= wrote
            deleted |= dropped
        # The snapshots first, acknowledged, and only then the "closed until" marks and the
        # dropped panes: a crash in between re-emits the same closed windows (at least once),
        # instead of persisting a mark for windows that never reached the topic.
        pending = [await self.kpi.send(key=snapshot_key(snapshot), value=orjson.dumps(snapshot),
                                       force=True) for snapshot in snapshots]
        await asyncio.gather(*pending)
        for key in written:
            if key in self.panes:
                self.changelog.write(self._partition_of_key(key), key, self.panes[key])
        for key in deleted:
            self.changelog.write(self._partition_of_key(key), key, None)
        await self.checkpoint.commit()

    def _channels_of(self, window_partition: int) -> Callable[[str], bool]:
        return lambda channel: channel_partition(channel, self.partitions) == window_partition

    def _partition_of_key(self, key: str) -> int:
        kind, first, *_ = key.split("|")
        if kind == "source":
            return int(first)
        return channel_partition(first, self.partitions)

    def forget(self, revoked_partitions: set[int]) -> None:
        """Drop panes and gauges of channels whose window partition went elsewhere."""
        for key in list(self.panes):
            if self._partition_of_key(key) in revoked_partitions:
                del self.panes[key]
        self.windows.reindex()
        for channel, window in list(self.windows.latest_open):
            if channel_partition(channel, self.partitions) in revoked_partitions:
                del self.windows.latest_open[(channel, window)]


def attach_window_stage(app: faust.App, settings: Settings, registry: CollectorRegistry,
                        processor: EventProcessor, unsettled: asyncio.Lock) -> WindowStage:
    """Wire the stage's batch handler, timers and rebalance handlers. Progress reports are sent
    under `unsettled`, which the events handler holds from a batch's processing until its
    deltas are acknowledged: a report never speaks for events whose deltas it could overtake."""
    stage = WindowStage(app, settings, processor)
    registry.register(WindowCollector(stage.windows, stage.owns, settings.max_agent_labels))

    deliver_batches(app, stage.facts, stage.handle, stage.checkpoint.hold)

    @app.timer(CHECKPOINT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def commit_when_idle() -> None:
        await stage.commit_when_idle()

    @app.timer(settings.snapshot_interval_s)  # type: ignore[untyped-decorator]
    async def publish_snapshots() -> None:
        await stage.publish_snapshots()

    @app.timer(DELIVERY_CHECK_S)  # type: ignore[untyped-decorator]
    async def process_dropped_tails() -> None:
        try:
            await stage.handle_dropped_tails()
        except Exception:  # an exception would end Faust's timer for good
            log.exception("delivery check of the facts failed")

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def reset_delivery(sender: Any, assigned: set[Any], **_: Any) -> None:
        facts_topic = stage.facts.get_topic_name()
        stage.guard.reset(tp.partition for tp in assigned if tp.topic == facts_topic)

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def report_progress() -> None:
        async with unsettled:
            await stage.report_progress()

    @stage.table.on_recover  # type: ignore[untyped-decorator]
    async def reindex_after_recovery() -> None:
        stage.windows.reindex()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        facts_topic = stage.facts.get_topic_name()
        async with stage.applying:  # not while a batch is half-way
            await stage.checkpoint.revoke()
            stage.forget({tp.partition for tp in revoked if tp.topic == facts_topic})
            stage.guard.reset(tp.partition for tp in revoked if tp.topic == facts_topic)
        processor.forget_watermarks(
            {tp.partition for tp in revoked if tp.topic == settings.topics.events})
        stage.windows.forget_sources()

    return stage
