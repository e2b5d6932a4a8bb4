"""The window stage's gauges (`msgkpi_window_*`), read at scrape time from the newest
open-window snapshots of the channels this worker owns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.export.labels import LabelBudget
from processor.kpi.pane_store import WindowProcessor

__all__ = ["WindowCollector"]


class WindowCollector(Collector):
    """`msgkpi_window_*` gauges from the newest open-window snapshots of owned channels."""

    def __init__(self, windows: WindowProcessor, owns: Callable[[str], bool],
                 max_agents: int = 500) -> None:
        self._windows = windows
        self._owns = owns
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
        for source, report in sorted(self._windows.sources.items()):
            if report.newest_ms is not None:
                progress.add_metric([str(source), str(report.caught_up).lower()],
                                    report.newest_ms / 1000)
        yield progress
        stats = ((frt, "first_response.agent"), (reply, "reply.agent"),
                 (resolution, "resolution"))
        for (channel, window), snapshot in sorted(self._windows.latest_open.items()):
            if not self._owns(channel):
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
