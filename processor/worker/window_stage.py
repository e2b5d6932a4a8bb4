"""Faust wiring of the window stage (logic in processor.worker.windows).

conversation stage --fact deltas, keyed by channel--> <app>-facts --> window table (panes)
                                                                  --> msgkpi.kpi snapshots
                                                                  --> msgkpi_window_* gauges
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.config import Settings
from processor.export.labels import LabelBudget
from processor.kpi.windows import WindowSpec, parse_window
from processor.worker.codec import decode_or_drop
from processor.worker.delivery import (
    DELIVERY_CHECK_S,
    DeliveryGuard,
    KafkaRanges,
)
from processor.worker.lag import next_offset_to_process
from processor.worker.processor import EventProcessor, FactDelta, Record
from processor.worker.tables import ChangelogWriter, string_keyed_table
from processor.worker.windows import (
    PaneRecord,
    WindowProcessor,
    decode_deltas,
    encode_deltas,
    snapshot_key,
)

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
            f"{settings.app_id}-facts", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=self.partitions, internal=True,
        )
        self.kpi = app.topic(settings.topics.kpi, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
        self.table = string_keyed_table(app, "windows", self.partitions, WindowRecordCodec())
        self.changelog = ChangelogWriter(self.table)
        self.windows = WindowProcessor(self.table.data, self.specs, settings.grace_ms)
        self.guard = DeliveryGuard(KafkaRanges(settings.kafka_bootstrap, settings.app_id,
                                               self.facts.get_topic_name(),
                                               settings.kafka_security))
        self.applying = asyncio.Lock()
        """Held while a batch of facts is applied, and by a revocation that drops panes."""

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

    def _events_lag(self) -> dict[int, int]:
        """Records not yet processed per owned events partition (Faust's consumer view)."""
        consumer = self._app.consumer
        events_topic = self._settings.topics.events
        processed = self._processor.partition_next_offset
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            if tp.topic != events_topic:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                lag[tp.partition] = -1  # not fetched yet: counts as behind
            else:
                # An empty partition is caught up at once: nothing it could still deliver is
                # older than what the others report.
                lag[tp.partition] = max(
                    0, int(highwater) - next_offset_to_process(consumer, tp, processed))
        return lag

    async def report_progress(self) -> None:
        """Tell every window partition how far each owned source partition has got."""
        try:
            lag = self._events_lag()
        except Exception:  # consumer not ready (starting, rebalancing)
            return
        for source, behind in lag.items():
            report = orjson.dumps({"report": {
                "src": source, "newest": self._processor.partition_max_ms.get(source),
                "caught_up": behind == 0}})
            for target in range(self.partitions):
                await self.facts.send(key=b"", value=report, partition=target, force=True)

    async def handle(self, records: list[Record]) -> None:
        """A batch of facts records as the stream delivered it (see `DeliveryGuard`)."""
        async with self.applying:
            await self.guard.process(self._app, records, self._apply)

    async def handle_dropped_tails(self) -> None:
        async with self.applying:
            await self.guard.process_stalled(self._app, self._apply)

    async def _apply(self, records: list[Record]) -> None:
        await self.on_messages([(r.partition, r.value) for r in records if r.value is not None])

    async def on_messages(self, messages: list[tuple[int, bytes]]) -> None:
        """Apply a batch of (facts partition, value) messages, then hand each changed pane to
        the changelog once (before Faust acks the batch, so before those offsets can be
        committed)."""
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
            self.changelog.write(self._partition_of_key(key), key, self.table.data[key])
        await self.changelog.flush()

    async def publish_snapshots(self) -> None:
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
            if key in self.table.data:
                self.changelog.write(self._partition_of_key(key), key, self.table.data[key])
        for key in deleted:
            self.changelog.write(self._partition_of_key(key), key, None)
        await self.changelog.flush()

    def _channels_of(self, window_partition: int) -> Callable[[str], bool]:
        return lambda channel: channel_partition(channel, self.partitions) == window_partition

    def _partition_of_key(self, key: str) -> int:
        kind, first, *_ = key.split("|")
        if kind == "source":
            return int(first)
        return channel_partition(first, self.partitions)

    def forget(self, revoked_partitions: set[int]) -> None:
        """Drop panes and gauges of channels whose window partition went elsewhere."""
        for key in list(self.table.data):
            if self._partition_of_key(key) in revoked_partitions:
                del self.table.data[key]
        self.windows.reindex()
        for channel, window in list(self.windows.latest_open):
            if channel_partition(channel, self.partitions) in revoked_partitions:
                del self.windows.latest_open[(channel, window)]


class WindowCollector(Collector):
    """`msgkpi_window_*` gauges from the newest open-window snapshots of owned channels."""

    def __init__(self, stage: WindowStage, max_agents: int = 500) -> None:
        self._stage = stage
        self._agent_label = LabelBudget(max_agents)

    def collect(self) -> Iterator[Metric]:
        frt = GaugeMetricFamily(
            "msgkpi_window_first_response_seconds",
            "Agent first response time in the rolling window (avg exact; p50/p90 within 1%).",
            labels=["channel", "window", "stat"])
        reply = GaugeMetricFamily(
            "msgkpi_window_reply_seconds", "Agent reply time in the rolling window.",
            labels=["channel", "window", "stat"])
        resolution = GaugeMetricFamily(
            "msgkpi_window_resolution_seconds", "Resolution time in the rolling window.",
            labels=["channel", "window", "stat"])
        messages = GaugeMetricFamily(
            "msgkpi_window_messages", "Messages in the rolling window, by author.",
            labels=["channel", "window", "author"])
        cycles = GaugeMetricFamily(
            "msgkpi_window_cycles", "Cycles opened and resolved in the rolling window.",
            labels=["channel", "window", "event"])
        rates = _RateFamilies()
        agents = _AgentFamilies(self._agent_label)
        sla = _SlaFamilies()
        progress = GaugeMetricFamily(
            "msgkpi_window_source_newest_seconds",
            "Per source partition of msgkpi.events: newest event time processed (unix s), as "
            "heard by this worker's window stage; the window watermark derives from these.",
            labels=["partition", "caught_up"])
        for source, report in sorted(self._stage.windows.sources.items()):
            if report.newest_ms is not None:
                progress.add_metric([str(source), str(report.caught_up).lower()],
                                    report.newest_ms / 1000)
        yield progress
        stats = ((frt, "first_response.agent"), (reply, "reply.agent"),
                 (resolution, "resolution"))
        for (channel, window), snapshot in sorted(self._stage.windows.latest_open.items()):
            if not self._stage.owns(channel):
                continue
            for family, series in stats:
                values = snapshot["times"].get(series)
                for stat in ("avg", "p50", "p90"):
                    if values and values[stat] is not None:
                        family.add_metric([channel, window, stat], values[stat])
            for name, count in snapshot["counts"].items():
                kind, _, label = name.partition(".")
                if kind == "messages":
                    messages.add_metric([channel, window, label], count)
                elif kind == "cycles" and label in ("opened", "resolved"):
                    cycles.add_metric([channel, window, label], count)
            rates.add(channel, window, snapshot)
            agents.add(channel, window, snapshot)
            sla.add(channel, window, snapshot)
        yield from (frt, reply, resolution, messages, cycles)
        yield from rates.families()
        yield from agents.families()
        yield from sla.families()


class _AgentFamilies:
    """Per-agent first response time and replies of the open windows; agents beyond the label
    budget are summed into `other`."""

    def __init__(self, agent_label: LabelBudget) -> None:
        labels = ["channel", "window", "agent"]
        self._agent_label = agent_label
        self.frt = GaugeMetricFamily(
            "msgkpi_window_agent_first_response_seconds",
            "Average first response time of the agent's first responses in the rolling window "
            "(exact).", labels=labels)
        self.replies = GaugeMetricFamily(
            "msgkpi_window_agent_replies",
            "Agent messages that answered a waiting customer in the rolling window.",
            labels=labels)

    def add(self, channel: str, window: str, snapshot: dict[str, Any]) -> None:
        totals: dict[str, list[int]] = {}
        for agent, figures in snapshot.get("agents", {}).items():
            total = totals.setdefault(self._agent_label(agent), [0, 0, 0])
            total[0] += figures.get("first_responses", 0)
            total[1] += figures.get("first_response_ms", 0)
            total[2] += figures.get("replies", 0)
        for agent, (responses, frt_ms, replies) in sorted(totals.items()):
            labels = [channel, window, agent]
            if responses > 0:
                self.frt.add_metric(labels, frt_ms / 1000 / responses)
            self.replies.add_metric(labels, replies)

    def families(self) -> Iterator[Metric]:
        yield from (self.frt, self.replies)


class _SlaFamilies:
    """SLA attainment per policy and metric of the open windows (policies come from the
    policy file, so the label values are bounded by it)."""

    def __init__(self) -> None:
        labels = ["channel", "window", "policy", "metric"]
        self.attainment = GaugeMetricFamily(
            "msgkpi_window_sla_attainment_ratio",
            "Share of the window's measured first responses, next replies or resolutions "
            "within the policy's target (business time on its calendar).", labels=labels)
        self.measured = GaugeMetricFamily(
            "msgkpi_window_sla_measured",
            "First responses, next replies or resolutions in the window that the policy "
            "measured (the attainment's denominator).", labels=labels)

    def add(self, channel: str, window: str, snapshot: dict[str, Any]) -> None:
        for policy, metrics in sorted(snapshot.get("sla", {}).items()):
            for metric, figures in sorted(metrics.items()):
                labels = [channel, window, policy, metric]
                measured = figures["measured"]
                self.measured.add_metric(labels, measured)
                if measured > 0:
                    self.attainment.add_metric(labels, figures["attained"] / measured)

    def families(self) -> Iterator[Metric]:
        yield from (self.attainment, self.measured)


class _RateFamilies:
    """Reply rate, CSAT/NPS, tags, unique customers and FCR of the open windows."""

    def __init__(self) -> None:
        labels = ["channel", "window"]
        self.reply_rate = GaugeMetricFamily(
            "msgkpi_window_reply_rate",
            "Share of the window's customer messages answered by an agent or bot (spam and "
            "no_reply_needed cycles excluded).", labels=labels)
        self.csat = GaugeMetricFamily(
            "msgkpi_window_csat_score", "CSAT score (1-5 scale) in the rolling window.",
            labels=[*labels, "stat"])
        self.satisfied = GaugeMetricFamily(
            "msgkpi_window_csat_satisfied_ratio",
            "Share of CSAT answers (1-5 scale) scoring 4 or 5.", labels=labels)
        self.nps = GaugeMetricFamily(
            "msgkpi_window_nps", "NPS: % promoters (9-10) - % detractors (0-6), -100 to 100.",
            labels=labels)
        self.tags = GaugeMetricFamily(
            "msgkpi_window_tag_messages", "Events per tag in the rolling window (top 10 tags).",
            labels=[*labels, "tag"])
        self.customers = GaugeMetricFamily(
            "msgkpi_window_unique_customers",
            "Distinct customers who wrote in the rolling window (exact).", labels=labels)
        self.fcr = GaugeMetricFamily(
            "msgkpi_window_fcr_ratio",
            "First contact resolution: of the resolved cycles whose reopen window ended in the "
            "rolling window, the share with exactly one agent and no reopen.", labels=labels)
        self.fcr_decided = GaugeMetricFamily(
            "msgkpi_window_fcr_decided_cycles",
            "Resolved cycles whose reopen window ended in the rolling window (FCR's "
            "denominator).", labels=labels)

    def add(self, channel: str, window: str, snapshot: dict[str, Any]) -> None:
        counts = snapshot["counts"]
        labels = [channel, window]
        received = counts.get("reply_rate.received", 0)
        if received > 0:
            self.reply_rate.add_metric(labels, counts.get("reply_rate.answered", 0) / received)
        responses = counts.get("csat.responses", 0)
        if responses > 0:
            self.csat.add_metric([*labels, "avg"],
                                 counts.get("csat.score_sum_x100", 0) / 100 / responses)
            self.satisfied.add_metric(labels, counts.get("csat.satisfied", 0) / responses)
        nps = counts.get("nps.responses", 0)
        if nps > 0:
            self.nps.add_metric(labels, 100 * (counts.get("nps.promoters", 0)
                                               - counts.get("nps.detractors", 0)) / nps)
        for tag, count in snapshot.get("tags", {}).items():
            self.tags.add_metric([*labels, tag], count)
        self.customers.add_metric(labels, snapshot.get("unique_customers", 0))
        decided = counts.get("fcr.resolved", 0)
        self.fcr_decided.add_metric(labels, decided)
        if decided > 0:
            self.fcr.add_metric(labels, counts.get("fcr.first_contact", 0) / decided)

    def families(self) -> Iterator[Metric]:
        yield from (self.reply_rate, self.csat, self.satisfied, self.nps, self.tags,
                    self.customers, self.fcr, self.fcr_decided)


def attach_window_stage(app: faust.App, settings: Settings, registry: CollectorRegistry,
                        processor: EventProcessor, unsettled: asyncio.Lock) -> WindowStage:
    """Wire the stage's agent, timers and rebalance handlers. Progress reports are sent under
    `unsettled`, which the event agent holds from a batch's processing until its deltas are
    acknowledged: a report never speaks for events whose deltas it could overtake."""
    stage = WindowStage(app, settings, processor)
    registry.register(WindowCollector(stage, settings.max_agent_labels))

    @app.agent(stage.facts, name="msgkpi.windows")
    async def aggregate_windows(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_max, within=settings.batch_within_s
        )
        async for batch in batches:
            await stage.handle([Record(event.message.partition, event.key, event.value,
                                       event.message.offset) for event in batch])

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
            stage.forget({tp.partition for tp in revoked if tp.topic == facts_topic})
            stage.guard.reset(tp.partition for tp in revoked if tp.topic == facts_topic)
        processor.forget_watermarks(
            {tp.partition for tp in revoked if tp.topic == settings.topics.events})
        stage.windows.forget_sources()

    return stage
