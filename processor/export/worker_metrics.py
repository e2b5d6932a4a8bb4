"""The worker's Prometheus metrics: per-process counters and histograms fed by KPI facts.

These are the live, per-process view. A worker that crashes and replays part of its input may
count some facts twice here; the exact numbers are the windowed KPIs (see docs/kpis.md).
"""

from __future__ import annotations

import time
from collections import Counter as CounterOf
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.export.labels import LabelBudget
from processor.export.plain_metrics import PlainCounter, PlainHistogram
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.facts import Fact, FactKind

__all__ = [
    "RESOLUTION_BUCKETS_S",
    "RESPONSE_BUCKETS_S",
    "AwaitingCollector",
    "WorkerMetrics",
    "buckets_with",
]

RESPONSE_BUCKETS_S: Final = (
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    43200.0, 86400.0, 172800.0, 604800.0,
)
"""First-response and reply buckets: 10 s to 7 days, with common SLA targets as edges."""
RESOLUTION_BUCKETS_S: Final = (
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0,
    259200.0, 604800.0, 1209600.0,
)


def buckets_with(base: Sequence[float], targets_s: Iterable[float]) -> tuple[float, ...]:
    """Bucket edges including every SLA target, so 'share within target' is exact."""
    return tuple(sorted({*base, *(float(t) for t in targets_s if t > 0)}))


class WorkerMetrics:
    """Counters and histograms of the KPI facts, with bounded label values."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        sla_targets_s: Iterable[float] = (),
        max_agents: int = 500,
        max_channels: int = 64,
        max_tags: int = 200,
    ) -> None:
        targets = tuple(sla_targets_s)
        self.agent_label = LabelBudget(max_agents)
        self.channel_label = LabelBudget(max_channels)
        self.tag_label = LabelBudget(max_tags)
        self._declare_kpis(registry, targets)
        self._declare_agent_counters(registry)
        self._declare_pipeline(registry)
        self._declare_rates(registry)
        self._recorders: dict[FactKind, Callable[[Fact, str], None]] = {
            FactKind.MESSAGE: self._record_message,
            FactKind.CYCLE_OPENED: self._record_opened,
            FactKind.CYCLE_RESOLVED: self._record_resolved,
            FactKind.FIRST_RESPONSE: self._record_first_response,
            FactKind.REPLY: self._record_reply,
            FactKind.RESOLUTION: self._record_resolution,
            FactKind.HANDLE: self._record_handle,
            FactKind.CLOCK_SKEW: self._record_clock_skew,
            FactKind.ANSWERED: self._record_answered,
            FactKind.EXCLUDED: self._record_excluded,
            FactKind.CSAT: self._record_csat,
            FactKind.TAG: self._record_tag,
            # FCR is decided at the end of the reopen window, in event time: only the window
            # gauges and snapshots can place it (msgkpi_window_fcr_ratio).
            FactKind.FCR: lambda fact, channel: None,
            FactKind.REOPENED: self._record_reopened,
            # The SLA stage derives these for the windows and counts msgkpi_sla_* itself.
            FactKind.SLA: lambda fact, channel: None,
        }

    def _declare_kpis(self, registry: CollectorRegistry, targets: tuple[float, ...]) -> None:
        response = buckets_with(RESPONSE_BUCKETS_S, targets)
        resolution = buckets_with(RESOLUTION_BUCKETS_S, targets)
        self.first_response = PlainHistogram(
            registry,
            "msgkpi_first_response_seconds", "First response time per cycle (event time).",
            ["channel", "responder"], buckets=response)
        self.reply = PlainHistogram(
            registry,
            "msgkpi_reply_seconds", "Every reply time: reply - oldest unanswered message.",
            ["channel", "responder"], buckets=response)
        self.resolution = PlainHistogram(
            registry,
            "msgkpi_resolution_seconds", "Cycle start to resolution.",
            ["channel"], buckets=resolution)
        self.handle = PlainHistogram(
            registry,
            "msgkpi_handle_seconds", "First agent reply to resolution (messaging AHT).",
            ["channel"], buckets=resolution)
        self.messages = PlainCounter(
            registry,
            "msgkpi_messages", "Messages counted, by author (private notes excluded).",
            ["channel", "author"])
        self.cycles = PlainCounter(
            registry,
            "msgkpi_cycles", "Conversation cycles opened and resolved.",
            ["channel", "event"])
        self.reopened = PlainCounter(
            registry,
            "msgkpi_cycles_reopened",
            "Resolved cycles followed by a new cycle within the reopen window (no first contact "
            "resolution).", ["channel"])
        self.resolved_without_reply = PlainCounter(
            registry,
            "msgkpi_cycles_resolved_without_reply",
            "Cycles resolved before any agent reply (they have no FRT).",
            ["channel", "resolution"])

    def _declare_agent_counters(self, registry: CollectorRegistry) -> None:
        labels = ["channel", "agent"]
        self.agent_messages = PlainCounter(
            registry,
            "msgkpi_agent_messages", "Outbound messages per human agent.", labels)
        self.agent_replies = PlainCounter(
            registry,
            "msgkpi_agent_replies", "Replies to a waiting customer, per human agent.", labels)
        self.agent_first_responses = PlainCounter(
            registry,
            "msgkpi_agent_first_responses", "First responses per human agent.", labels)
        self.agent_first_response_seconds = PlainCounter(
            registry,
            "msgkpi_agent_first_response_seconds",
            "Summed first-response seconds per human agent (divide by first responses).",
            labels)
        self.agent_resolutions = PlainCounter(
            registry,
            "msgkpi_agent_resolutions", "Cycles resolved, per agent who resolved them.", labels)

    def _declare_rates(self, registry: CollectorRegistry) -> None:
        self.reply_rate_messages = PlainCounter(
            registry,
            "msgkpi_reply_rate_messages",
            "Customer messages answered (first agent or bot reply after them) or excluded "
            "(cycle resolved as spam/no_reply_needed); received = msgkpi_messages_total"
            "{author=\"customer\"}.", ["channel", "outcome"])
        self.csat_responses = PlainCounter(
            registry,
            "msgkpi_csat_responses",
            "Survey answers; category satisfied|unsatisfied (scale 5), "
            "promoter|passive|detractor (scale 10).", ["channel", "scale", "category"])
        self.csat_score = PlainCounter(
            registry,
            "msgkpi_csat_score", "Summed survey scores (divide by responses for the average).",
            ["channel", "scale"])
        self.tag_messages = PlainCounter(
            registry,
            "msgkpi_tag_messages", "Events per tag (at most 200 tag values, then 'other').",
            ["channel", "tag"])

    def _declare_pipeline(self, registry: CollectorRegistry) -> None:
        self.events = PlainCounter(
            registry,
            "msgkpi_worker_events", "Events consumed from msgkpi.events and processed.")
        self.duplicates = PlainCounter(
            registry,
            "msgkpi_worker_duplicates", "Events dropped as duplicates (same event_id).")
        self.late = PlainCounter(
            registry,
            "msgkpi_worker_late_events",
            "Events older than the grace period: state updated, closed windows not.")
        self.reordered = PlainCounter(
            registry,
            "msgkpi_worker_reordered_events",
            "Events that arrived out of order within the grace period and were placed in order.")
        self.retractions = PlainCounter(
            registry,
            "msgkpi_worker_fact_retractions",
            "Facts withdrawn by a reordered or late event that the counters and histograms "
            "above could not take back (they keep the old value; windows are exact).")
        self.clock_skew = PlainCounter(
            registry,
            "msgkpi_worker_clock_skew_events",
            "Replies stamped before what they answer; durations clamped to 0.", ["channel"])
        self.future = PlainCounter(
            registry,
            "msgkpi_worker_future_events",
            "Events stamped more than 5 minutes after Kafka received them; their event time "
            "was set to the record's timestamp.")
        self.expired = PlainCounter(
            registry,
            "msgkpi_worker_conversations_expired",
            "Conversations dropped from the worker's table after being idle with no open cycle "
            "for the dedupe horizon (8 days) or the reopen window plus grace, if longer.")
        self.dlq = PlainCounter(
            registry,
            "msgkpi_worker_dlq", "Events sent to msgkpi.dlq, by reason.", ["reason"])

    def record(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            self._recorders[fact.kind](fact, self.channel_label(fact.channel))

    def record_change(self, added: list[Fact], retracted: list[Fact]) -> None:
        """Record a reordering's net effect. A retracted fact and an added one that touch the
        same series with the same value cancel out (e.g. a message that only changed cycle);
        what cannot be taken back from a counter is counted in the retractions metric."""
        if not retracted:
            self.record(added)
            return
        added_effects = CounterOf(_effect(fact) for fact in added)
        retracted_effects = CounterOf(_effect(fact) for fact in retracted)
        surplus = added_effects - retracted_effects
        for fact in added:
            if surplus[_effect(fact)] > 0:
                surplus[_effect(fact)] -= 1
                self.record((fact,))
        self.retractions.inc((retracted_effects - added_effects).total())

    def _record_message(self, fact: Fact, channel: str) -> None:
        self.messages.labels(channel, fact.role).inc()
        if fact.role == "agent":
            self.agent_messages.labels(channel, self.agent_label(fact.agent)).inc()

    def _record_opened(self, fact: Fact, channel: str) -> None:
        self.cycles.labels(channel, "opened").inc()

    def _record_resolved(self, fact: Fact, channel: str) -> None:
        self.cycles.labels(channel, "resolved").inc()
        self.agent_resolutions.labels(channel, self.agent_label(fact.agent)).inc()
        if fact.value:
            self.resolved_without_reply.labels(channel, fact.role).inc()

    def _record_reopened(self, fact: Fact, channel: str) -> None:
        self.reopened.labels(channel).inc()

    def _record_first_response(self, fact: Fact, channel: str) -> None:
        self.first_response.labels(channel, fact.role).observe(fact.value)
        if fact.role == "agent":
            agent = self.agent_label(fact.agent)
            self.agent_first_responses.labels(channel, agent).inc()
            self.agent_first_response_seconds.labels(channel, agent).inc(fact.value)

    def _record_reply(self, fact: Fact, channel: str) -> None:
        self.reply.labels(channel, fact.role).observe(fact.value)
        if fact.role == "agent":
            self.agent_replies.labels(channel, self.agent_label(fact.agent)).inc()

    def _record_resolution(self, fact: Fact, channel: str) -> None:
        self.resolution.labels(channel).observe(fact.value)

    def _record_handle(self, fact: Fact, channel: str) -> None:
        self.handle.labels(channel).observe(fact.value)

    def _record_clock_skew(self, fact: Fact, channel: str) -> None:
        self.clock_skew.labels(channel).inc()

    def _record_answered(self, fact: Fact, channel: str) -> None:
        self.reply_rate_messages.labels(channel, "answered").inc()

    def _record_excluded(self, fact: Fact, channel: str) -> None:
        self.reply_rate_messages.labels(channel, "excluded").inc()

    def _record_csat(self, fact: Fact, channel: str) -> None:
        score = fact.value
        if fact.role == "10":
            category = "promoter" if score >= 9 else "detractor" if score <= 6 else "passive"
        else:
            category = "satisfied" if score >= 4 else "unsatisfied"
        self.csat_responses.labels(channel, fact.role, category).inc()
        self.csat_score.labels(channel, fact.role).inc(score)

    def _record_tag(self, fact: Fact, channel: str) -> None:
        self.tag_messages.labels(channel, self.tag_label(fact.role)).inc()


def _effect(fact: Fact) -> tuple[FactKind, str, str, str, float]:
    """What a fact does to the Prometheus series: everything but its identity and cycle."""
    return (fact.kind, fact.channel, fact.role, fact.agent, fact.value)


class AwaitingCollector(Collector):
    """`msgkpi_awaiting_reply` and `msgkpi_oldest_awaiting_reply_seconds`, read at scrape time
    from the conversations this worker owns."""

    def __init__(
        self,
        index: AwaitingIndex,
        channel_label: LabelBudget,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._index = index
        self._channel_label = channel_label
        self._now_ms = now_ms

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "msgkpi_awaiting_reply", "Open conversations waiting for an agent reply.",
            labels=["channel"])
        oldest = GaugeMetricFamily(
            "msgkpi_oldest_awaiting_reply_seconds",
            "Wait so far of the longest-waiting customer (now - waiting_since).",
            labels=["channel"])
        merged: dict[str, tuple[int, float]] = {}
        for channel, wait in self._index.by_channel(self._now_ms()).items():
            label = self._channel_label(channel)
            count, seconds = merged.get(label, (0, 0.0))
            merged[label] = (count + wait.waiting, max(seconds, wait.oldest_wait_seconds))
        for label, (count, seconds) in sorted(merged.items()):
            waiting.add_metric([label], count)
            oldest.add_metric([label], seconds)
        yield waiting
        yield oldest
