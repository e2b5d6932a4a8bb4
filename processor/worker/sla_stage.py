"""Live SLA detection: at-risk and breach events by timer, attainment counters, SLA gauges.

The pure rules are in `processor.kpi.sla` (deadlines, once-only emission, attainment) and
`processor.kpi.sla_record` (the typed per-conversation record and the exact attainment facts for
the windows); this stage keeps them running over the conversations a worker owns:

- As the processor's observer it sees every new event applied to a conversation: it matches the
  conversation's policy (channel, and the newest non-empty priority, team and account_id), counts
  attainment when a first response, reply or resolution becomes known, and schedules the
  conversation at its next at-risk or breach instant in a per-partition heap.
- `tick(wall_ms)`, run every second by a Faust timer, pops the conversations that are due,
  publishes their alerts to the SLA topic (`schemas/sla-event.v1.schema.json`), waits for
  Kafka's acknowledgements and only then persists the conversation with its updated
  `SlaTracker` (in the conversation's `SlaRecord`, so the changelog remembers what was
  emitted).
- "Now" for a partition is the wall clock while the worker is caught up on it (no unprocessed
  records), else the newest event time processed on it (never beyond the wall clock): replaying
  a backlog does not raise breaches for replies that are still in the backlog.

Nothing here reads the clock: `tick` gets the wall clock, and `caught_up` and `event_time` tell
it how far each partition is. The Faust wiring is `attach_sla_stage`.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import faust
import orjson
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.config import CHANNELS, Settings
from processor.events import ConversationEvent
from processor.export.worker_metrics import RESPONSE_BUCKETS_S, buckets_with
from processor.kpi.calendar import CALENDAR_24_7
from processor.kpi.conversation import CycleState
from processor.kpi.event_step import EventProcessor, StoredConversation
from processor.kpi.facts import Fact
from processor.kpi.policy import ANY, SLA_METRICS, PolicySet, SlaMetric, SlaPolicy
from processor.kpi.sla import (
    SlaAlert,
    SlaTracker,
    clock_supported,
    deadlines,
    due_alerts,
    measure,
    measured_metric,
    whatsapp_window_closes_ms,
)
from processor.kpi.sla_record import (
    MATCH_FIELDS,
    SlaRecord,
    attainment_facts,
    first_replies,
    is_first_reply,
    new_facts,
)
from processor.kpi.timeline import Ingested
from processor.worker.checkpoint import Checkpoint
from processor.worker.lag import partition_lags
from processor.worker.tables import ChangelogWriter

__all__ = [
    "SCHEMA_NAME",
    "SlaStage",
    "attach_sla_stage",
    "events_caught_up",
]

log = logging.getLogger("msgkpi.worker.sla")

SCHEMA_NAME: Final = "msgkpi.sla-event.v1"
WHATSAPP: Final = "whatsapp"
WINDOW_HORIZON_MS: Final = 3600_000
"""The WhatsApp gauge counts windows closing within this much of now."""
MAX_CONVERSATIONS_PER_TICK: Final = 5000
"""Due conversations handled per tick (after an outage thousands may be due at once); the rest
go on the next tick, a second later."""
_POLICY_CACHE_MAX: Final = 10_000

Publish = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
"""Hands one record (key, value) to the producer; the awaitable it returns resolves on the ack."""
Persist = Callable[[str, StoredConversation], None]
"""Writes a conversation to the table's changelog."""
GaugeKey = tuple[str, str, SlaMetric]
"""(channel label, policy name, metric)."""
_Signature = tuple[str, int, int, int, int | None, int | None]


@dataclass(slots=True)
class _Live:
    """What the stage keeps in memory about one owned conversation with a running clock."""

    partition: int
    signature: _Signature | None = None
    """Policy and the state fields that decide the deadlines, as of the last planning."""
    due_ms: int | None = None
    """Next at-risk or breach instant not emitted yet (the heap entry that is current)."""
    at_risk: frozenset[GaugeKey] = frozenset()


@dataclass(slots=True)
class _Due:
    """A conversation popped from the heap with alerts to publish."""

    conversation_id: str
    stored: StoredConversation
    tracker: SlaTracker
    alerts: list[SlaAlert]
    payloads: list[dict[str, Any]] = field(default_factory=list)


def _no_progress() -> Mapping[int, bool]:
    return {}


async def _no_publish(key: bytes, value: bytes) -> Awaitable[Any]:
    raise RuntimeError("SlaStage.publish is not wired")


def _no_persist(conversation_id: str, stored: StoredConversation) -> None:
    raise RuntimeError("SlaStage.persist is not wired")


class SlaStage:
    """The processor's observer and the SLA timer's state; see the module docstring."""

    def __init__(
        self,
        policies: PolicySet,
        table: MutableMapping[str, StoredConversation],
        registry: CollectorRegistry,
        *,
        channel_label: Callable[[str], str] = str,
        event_time: Mapping[int, int] | None = None,
        caught_up: Callable[[], Mapping[int, bool]] = _no_progress,
        publish: Publish = _no_publish,
        persist: Persist = _no_persist,
        max_per_tick: int = MAX_CONVERSATIONS_PER_TICK,
    ) -> None:
        self.policies = policies
        self._table = table
        self._channel_label = channel_label
        self.event_time: Mapping[int, int] = {} if event_time is None else event_time
        """Newest event time processed per partition (the processor's `partition_max_ms`)."""
        self.caught_up = caught_up
        """Per owned partition: True when every record in it has been processed."""
        self.publish = publish
        self.persist = persist
        self._max_per_tick = max_per_tick
        self._live: dict[str, _Live] = {}
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._at_risk_counts: Counter[GaugeKey] = Counter()
        self._window: dict[str, tuple[int, int]] = {}
        """WhatsApp conversations waiting for a reply: id -> (partition, window closes ms)."""
        self.now_by_partition: dict[int, int] = {}
        """The "now" of each partition at the last tick (also used by the gauges)."""
        self._policy_cache: dict[tuple[str, str | None, str | None, str | None],
                                 SlaPolicy | None] = {}
        self._series: set[tuple[str, str]] = set()
        self._gauge_keys: set[GaugeKey] = set()
        self._children: dict[tuple[int, str, str, str], Any] = {}
        labels = ["channel", "policy", "metric"]
        self.breaches = PromCounter(
            "msgkpi_sla_breaches", "SLA deadlines passed without the reply or resolution "
            "(one per cycle and metric; next_reply: one per waiting period).", labels,
            registry=registry)
        self.measured = PromCounter(
            "msgkpi_sla_measured", "Cycles (first_response, resolution) and replies "
            "(next_reply) whose SLA outcome is known.", labels, registry=registry)
        self.attained = PromCounter(
            "msgkpi_sla_attained", "Measured cycles and replies within their target.", labels,
            registry=registry)
        self.ignored_clocks = PromCounter(
            "msgkpi_sla_clocks_ignored",
            "First responses, replies and resolutions under a policy whose clock was not "
            "measured: it starts before 1970 or after 9996, or ran more than 400 days.",
            registry=registry)
        self.business_seconds = Histogram(
            "msgkpi_business_seconds",
            "First response, next reply and resolution times counted in business hours on the "
            "matching policy's calendar (24/7 calendars: equal to elapsed time).", labels,
            buckets=buckets_with(RESPONSE_BUCKETS_S, policies.targets_s()), registry=registry)
        for policy in policies.policies:
            channels = policy.match.channel
            for channel in (*CHANNELS, "canonical") if ANY in channels else sorted(channels):
                self._ensure_series(channel, policy)
        registry.register(_SlaCollector(self))

    # -- the observer ------------------------------------------------------------------------

    def __call__(self, conversation_id: str, stored: StoredConversation,
                 event: ConversationEvent, ingested: Ingested) -> list[tuple[int, Fact]]:
        """After a new event was applied: policy, attainment, next due instant, gauges.
        Returns the SLA facts for the windows, weighted +1 (measured now) or -1 (a measurement
        the event's reordering withdrew)."""
        policy = None
        window_facts: list[tuple[int, Fact]] = []
        if self.policies.policies:
            policy = self._update_match(stored, event)
            if policy is not None:
                self._ensure_series(event.channel, policy)
                self._measure(stored.timeline.state, policy, ingested)
            if stored.sla is not None:
                window_facts = attainment_facts(stored.sla, stored.timeline.checkpoint_ms,
                                                policy, self.policies, ingested)
        self._plan(conversation_id, stored, policy)
        self._update_window(conversation_id, stored)
        return window_facts

    def _update_match(self, stored: StoredConversation, event: ConversationEvent
                      ) -> SlaPolicy | None:
        record = stored.sla
        if record is None:
            record = stored.sla = SlaRecord()
        match = record.match
        match["channel"] = event.channel
        for field_name in MATCH_FIELDS:
            value = getattr(event, field_name)
            if value:
                match[field_name] = value
        policy = self.policy_of(record)
        record.policy = None if policy is None else policy.name
        return policy

    def policy_of(self, record: SlaRecord | None) -> SlaPolicy | None:
        """The policy that covers a conversation's SLA record now (matched again each time, so a
        changed policy file applies after a restart)."""
        if record is None:
            return None
        match = record.match
        channel = match.get("channel")
        if not channel:
            return None
        key = (channel, match.get("priority"), match.get("team"), match.get("account_id"))
        try:
            return self._policy_cache[key]
        except KeyError:
            pass
        if len(self._policy_cache) >= _POLICY_CACHE_MAX:
            self._policy_cache.clear()
        policy = self._policy_cache[key] = self.policies.match(*key)
        return policy

    def _measure(self, state: CycleState, policy: SlaPolicy, ingested: Ingested) -> None:
        """Attainment of every first response, reply and resolution the event made known."""
        replies = first_replies(ingested)
        calendar = self.policies.calendar_of(policy)
        for fact in new_facts(ingested):
            metric = measured_metric(fact, policy, is_first_reply(fact, state, replies))
            if metric is None:
                continue
            start_ms = fact.at_ms - round(fact.value * 1000)
            if not clock_supported(start_ms, fact.at_ms):
                self.ignored_clocks.inc()
                continue
            channel = self._channel_label(fact.channel)
            self._child(self.business_seconds, channel, policy.name, metric).observe(
                calendar.business_seconds(start_ms, fact.at_ms))
            if policy.target_s(metric) is None:
                continue
            outcome = measure(metric, start_ms, fact.at_ms, policy, calendar)
            self._child(self.measured, channel, policy.name, metric).inc()
            if outcome.within_target:
                self._child(self.attained, channel, policy.name, metric).inc()

    # -- planning: next due instant, at-risk gauge, WhatsApp window ---------------------------

    def _plan(self, conversation_id: str, stored: StoredConversation, policy: SlaPolicy | None,
              *, force: bool = False, precise: bool = False) -> None:
        """Reschedule a conversation and refresh its at-risk entries when its policy, its
        clocks or (`force`) its tracker changed.

        Business-hours deadlines cost tens of microseconds each, too much for every event, so
        unless `precise` the conversation is scheduled at a lower bound: the instants on the
        24/7 calendar (business time never runs faster than elapsed time). Most clocks stop
        before that; when the timer reaches it, it plans precisely on the policy's calendar."""
        state = stored.timeline.state
        live = self._live.get(conversation_id)
        if policy is None or not state.open:
            if live is not None:
                self._drop_live(conversation_id, live)
            return
        signature: _Signature = (policy.name, state.cycles, state.cycle_start_ms,
                                 state.human_clock_ms, state.first_agent_reply_ms,
                                 state.waiting_since_ms)
        if live is None:
            live = self._live[conversation_id] = _Live(stored.partition)
        elif live.signature == signature and not force:
            return
        live.signature = signature
        tracker = _tracker(stored)
        channel = self._channel_label(stored.timeline.channel)
        due: int | None = None
        at_risk: set[GaugeKey] = set()
        calendar = self.policies.calendar_of(policy)
        if not precise:
            calendar = CALENDAR_24_7
        for deadline in deadlines(state, policy, calendar):
            warned = tracker.was_emitted(state, "at_risk", deadline.metric, deadline.period_ms)
            breached = tracker.was_emitted(state, "breach", deadline.metric, deadline.period_ms)
            for done, at_ms in ((warned, deadline.at_risk_ms), (breached, deadline.breach_ms)):
                if not done:
                    due = at_ms if due is None else min(due, at_ms)
            if warned and not breached:
                at_risk.add((channel, policy.name, deadline.metric))
        self._set_at_risk(live, frozenset(at_risk))
        self._schedule(conversation_id, live, due)

    def _schedule(self, conversation_id: str, live: _Live, due_ms: int | None) -> None:
        if due_ms == live.due_ms:
            return
        live.due_ms = due_ms
        if due_ms is None:
            return  # the old heap entry is now stale
        heap = self._heaps.setdefault(live.partition, [])
        heapq.heappush(heap, (due_ms, conversation_id))
        if len(heap) > 1024 and len(heap) > 4 * len(self._live):
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap entries (conversations rescheduled or done)."""
        heaps: dict[int, list[tuple[int, str]]] = {}
        for conversation_id, live in self._live.items():
            if live.due_ms is not None:
                heaps.setdefault(live.partition, []).append((live.due_ms, conversation_id))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps

    def _set_at_risk(self, live: _Live, at_risk: frozenset[GaugeKey]) -> None:
        if at_risk == live.at_risk:
            return
        self._at_risk_counts.subtract(live.at_risk)
        self._at_risk_counts.update(at_risk)
        live.at_risk = at_risk

    def _drop_live(self, conversation_id: str, live: _Live) -> None:
        self._set_at_risk(live, frozenset())
        del self._live[conversation_id]

    def _update_window(self, conversation_id: str, stored: StoredConversation) -> None:
        closes = (whatsapp_window_closes_ms(stored.timeline.state)
                  if stored.timeline.channel == WHATSAPP else None)
        if closes is None:
            self._window.pop(conversation_id, None)
        else:
            self._window[conversation_id] = (stored.partition, closes)

    # -- the timer -----------------------------------------------------------------------------

    def partition_now(self, partition: int, wall_ms: int, caught_up: Mapping[int, bool]
                      ) -> int | None:
        """The wall clock when `partition` is caught up, else the newest event time processed
        on it (capped at the wall clock); None when neither is known."""
        if caught_up.get(partition):
            return wall_ms
        newest = self.event_time.get(partition)
        return None if newest is None else min(newest, wall_ms)

    async def tick(self, wall_ms: int) -> list[dict[str, Any]]:
        """Publish every alert due by each partition's now; returns the events published
        (acknowledged by Kafka, and their conversations persisted)."""
        progress = self.caught_up()
        partitions = set(progress) | set(self._heaps) | {p for p, _ in self._window.values()}
        nows = {}
        for partition in partitions:
            now = self.partition_now(partition, wall_ms, progress)
            if now is not None:
                nows[partition] = now
        self.now_by_partition = nows
        due = self._pop_due(nows)
        for item in due:
            item.payloads = [self._payload(item, alert) for alert in item.alerts]
        sent: list[tuple[_Due, list[Awaitable[Any]]]] = []
        for item in due:
            try:
                acks = [await self.publish(item.conversation_id.encode(), orjson.dumps(p))
                        for p in item.payloads]
            except Exception:
                log.exception("could not publish SLA alerts of %s", item.conversation_id)
                self._replan(item)
                continue
            sent.append((item, acks))
        published: list[dict[str, Any]] = []
        for item, acks in sent:
            results = await asyncio.gather(*acks, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                log.error("SLA alerts of %s not acknowledged (%r); retrying",
                          item.conversation_id, failed[0])
                self._replan(item)
                continue
            published.extend(item.payloads)
            self._commit(item)
        return published

    def _pop_due(self, nows: Mapping[int, int]) -> list[_Due]:
        found: list[_Due] = []
        for partition in list(self._heaps):
            now = nows.get(partition)
            if now is None:
                continue
            while len(found) < self._max_per_tick:
                heap = self._heaps.get(partition)  # (re-read: planning may compact the heaps)
                if not heap or heap[0][0] > now:
                    break
                due_ms, conversation_id = heapq.heappop(heap)
                live = self._live.get(conversation_id)
                if live is None or live.due_ms != due_ms or live.partition != partition:
                    continue  # stale entry
                live.due_ms = None
                stored = self._table.get(conversation_id)
                policy = None if stored is None else self.policy_of(stored.sla)
                if stored is None or policy is None:
                    self._drop_live(conversation_id, live)
                    continue
                tracker = _tracker(stored)
                alerts = due_alerts(stored.timeline.state, tracker, policy,
                                    self.policies.calendar_of(policy), now)
                if alerts:
                    found.append(_Due(conversation_id, stored, tracker, alerts))
                else:  # a lower bound was reached: now the real instant on the calendar
                    self._plan(conversation_id, stored, policy, force=True, precise=True)
        return found

    def _payload(self, item: _Due, alert: SlaAlert) -> dict[str, Any]:
        match = item.stored.sla.match if item.stored.sla is not None else {}
        return {
            "schema": SCHEMA_NAME,
            "alert_id": (f"{item.conversation_id}/{alert.cycle}/{alert.metric}/{alert.kind}/"
                         f"{alert.period_ms}"),
            **alert.to_dict(),
            "channel": item.stored.timeline.channel,
            "conversation_id": item.conversation_id,
            "account_id": match.get("account_id"),
            "team": match.get("team"),
            "priority": match.get("priority"),
        }

    def _replan(self, item: _Due) -> None:
        """Sending failed: the stored tracker is untouched, so the alerts are due again."""
        stored = self._table.get(item.conversation_id)
        if stored is not None:
            self._plan(item.conversation_id, stored, self.policy_of(stored.sla), force=True,
                       precise=True)

    def _commit(self, item: _Due) -> None:
        """The alerts are in Kafka: count them and persist the tracker that says so."""
        for payload in item.payloads:
            if payload["kind"] == "breach":
                self._child(self.breaches, self._channel_label(payload["channel"]),
                            payload["policy"], payload["metric"]).inc()
        stored = self._table.get(item.conversation_id)
        if stored is not item.stored or stored.sla is None:
            # Revoked (or replaced) while we waited: the new owner has its own copy.
            log.info("conversation %s moved while its SLA alerts were sent",
                     item.conversation_id)
            return
        stored.sla.tracker = item.tracker
        self.persist(item.conversation_id, stored)
        self._plan(item.conversation_id, stored, self.policy_of(stored.sla), force=True,
                   precise=True)

    def scheduled(self, conversation_id: str) -> int | None:
        """When the timer will next look at a conversation (None: nothing pending)."""
        live = self._live.get(conversation_id)
        return None if live is None else live.due_ms

    # -- ownership -----------------------------------------------------------------------------

    def rebuild(self) -> None:
        """After recovery or a rebalance: index exactly the conversations in the table."""
        self._live.clear()
        self._heaps.clear()
        self._at_risk_counts.clear()
        self._window.clear()
        for conversation_id, stored in self._table.items():
            if stored is None:  # a changelog record that could not be decoded
                continue
            policy = self.policy_of(stored.sla)
            if policy is not None:
                self._ensure_series(stored.timeline.channel, policy)
            self._plan(conversation_id, stored, policy)
            self._update_window(conversation_id, stored)

    def forget(self, partitions: set[int]) -> None:
        """Revoked partitions: no timers, no gauges for them here any more."""
        for partition in partitions:
            self._heaps.pop(partition, None)
            self.now_by_partition.pop(partition, None)
        for conversation_id, live in list(self._live.items()):
            if live.partition in partitions:
                self._drop_live(conversation_id, live)
        for conversation_id, (partition, _) in list(self._window.items()):
            if partition in partitions:
                del self._window[conversation_id]

    # -- metrics -------------------------------------------------------------------------------

    def _ensure_series(self, channel: str, policy: SlaPolicy) -> None:
        """Create the policy's series at 0 (an alert on increase() needs a sample before the
        first increment)."""
        label = self._channel_label(channel)
        if (label, policy.name) in self._series:
            return
        self._series.add((label, policy.name))
        for metric in SLA_METRICS:
            if policy.target_s(metric) is None:
                continue
            for counter in (self.breaches, self.measured, self.attained):
                self._child(counter, label, policy.name, metric)
            self._gauge_keys.add((label, policy.name, metric))

    def _child(self, counter: PromCounter | Histogram, channel: str, policy: str,
               metric: str) -> Any:
        key = (id(counter), channel, policy, metric)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(channel, policy, metric)
        return child

    def at_risk(self) -> dict[GaugeKey, int]:
        """msgkpi_sla_at_risk: open periods whose at-risk event was emitted and whose breach
        event was not, while their clock still runs."""
        counts = dict.fromkeys(self._gauge_keys, 0)
        counts.update((key, n) for key, n in self._at_risk_counts.items() if n > 0)
        return counts

    def whatsapp_window_closing(self) -> int:
        """WhatsApp conversations waiting for a reply whose 24 h window closes within the hour
        of their partition's now (now < closes <= now + 1 h)."""
        count = 0
        nows = self.now_by_partition
        for partition, closes in self._window.values():
            now = nows.get(partition)
            if now is not None and now < closes <= now + WINDOW_HORIZON_MS:
                count += 1
        return count


def _tracker(stored: StoredConversation) -> SlaTracker:
    return SlaTracker() if stored.sla is None else stored.sla.tracker_copy()


class _SlaCollector(Collector):
    def __init__(self, stage: SlaStage) -> None:
        self._stage = stage

    def collect(self) -> Iterator[Metric]:
        at_risk = GaugeMetricFamily(
            "msgkpi_sla_at_risk",
            "Open periods past the at-risk share of their target: at-risk event emitted, no "
            "breach event yet, no reply or resolution yet.",
            labels=["channel", "policy", "metric"])
        for key, count in sorted(self._stage.at_risk().items()):
            at_risk.add_metric(list(key), count)
        window = GaugeMetricFamily(
            "msgkpi_whatsapp_window_closing",
            "WhatsApp conversations waiting for a reply whose 24-hour customer-service window "
            "closes within the hour.", labels=["channel"])
        window.add_metric([WHATSAPP], self._stage.whatsapp_window_closing())
        yield at_risk
        yield window


# -- Faust wiring ------------------------------------------------------------------------------

def events_caught_up(app: faust.App, events_topic: str, processor: EventProcessor
                     ) -> dict[int, bool]:
    """Per owned events partition: has every record Kafka holds been processed? Unknown
    (consumer not started, highwater not fetched yet) counts as not caught up."""
    lags = partition_lags(app, events_topic, processor.partition_next_offset)
    return {partition: lag == 0 for partition, lag in lags.items()}


def attach_sla_stage(app: faust.App, settings: Settings, stage: SlaStage,
                     processor: EventProcessor, conversations: Any, changelog: ChangelogWriter,
                     checkpoint: Checkpoint, unsettled: asyncio.Lock) -> None:
    """Wire the stage to the SLA topic, the conversation table (written through `changelog`),
    a 1 s timer and rebalances. The timer runs under `unsettled`, which the event agent holds
    while a batch's state is ahead of its acknowledged facts."""
    sla_topic = app.topic(settings.topics.sla, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    async def publish(key: bytes, value: bytes) -> Awaitable[Any]:
        # force: publish now; inside an agent Faust would hold the message until the commit.
        sent: Awaitable[Any] = await sla_topic.send(key=key, value=value, force=True)
        return sent

    def persist(conversation_id: str, stored: StoredConversation) -> None:
        changelog.write(stored.partition, conversation_id, stored)

    stage.event_time = processor.partition_max_ms
    stage.caught_up = lambda: events_caught_up(app, settings.topics.events, processor)
    stage.publish = publish
    stage.persist = persist

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def sla_tick() -> None:
        try:
            async with unsettled:
                try:
                    await stage.tick(int(time.time() * 1000))
                finally:
                    # Alerts emitted must be on record at once (none twice after a restart).
                    await checkpoint.commit()
        except Exception:  # an exception would end Faust's timer for good
            log.exception("SLA tick failed")

    @conversations.on_recover  # type: ignore[untyped-decorator]
    async def rebuild_sla() -> None:
        stage.rebuild()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_sla(sender: Any, revoked: set[Any], **_: Any) -> None:
        stage.forget({tp.partition for tp in revoked if tp.topic == settings.topics.events})
