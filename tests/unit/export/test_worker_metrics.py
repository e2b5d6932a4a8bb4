"""Prometheus export of KPI facts: bounded label values under a flood of new agents, tags and
channels, and the live wait gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from processor.export.labels import OTHER, LabelBudget
from processor.export.worker_metrics import AwaitingCollector, WorkerMetrics, buckets_with
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.facts import Fact, FactKind


def reply(agent: str, channel: str = "whatsapp", seconds: float = 30.0) -> Fact:
    return Fact(FactKind.REPLY, channel, 0, f"e-{agent}", "agent", agent, seconds, 1)


def test_label_budget_admits_the_first_values_then_folds_into_other() -> None:
    budget = LabelBudget(2, max_length=8)
    assert [budget(v) for v in ("a", "b", "c", "a", "far-too-long-id")] == [
        "a", "b", OTHER, "a", OTHER]


def test_a_flood_of_agent_ids_keeps_metrics_bounded() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, max_agents=50, max_channels=5)
    metrics.record(reply(f"agent-{i}") for i in range(5000))
    metrics.record(reply("x", channel=f"channel-{i}") for i in range(100))
    text = generate_latest(registry).decode()
    agents = {line.split('agent="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith("msgkpi_agent_replies_total{")}
    channels = {line.split('channel="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith("msgkpi_reply_seconds_count{")}
    assert len(agents) == 51 and OTHER in agents
    assert len(channels) == 6 and OTHER in channels
    assert registry.get_sample_value(
        "msgkpi_agent_replies_total", {"channel": "whatsapp", "agent": OTHER}) == 4950
    assert len(text.encode()) < 200_000


def test_sla_targets_become_bucket_edges() -> None:
    assert 450.0 in buckets_with((60.0, 900.0), (450, 0))
    assert buckets_with((60.0,), (60,)) == (60.0,)


def test_wait_gauges_report_count_and_oldest_wait_per_channel() -> None:
    index = AwaitingIndex()
    index.update("c1", "line", 1_000)
    index.update("c2", "line", 4_000)
    index.update("c3", "x", 9_000)
    index.update("c3", "x", None)  # answered
    registry = CollectorRegistry()
    registry.register(AwaitingCollector(index, LabelBudget(10), now_ms=lambda: 61_000))
    assert registry.get_sample_value("msgkpi_awaiting_reply", {"channel": "line"}) == 2
    assert registry.get_sample_value(
        "msgkpi_oldest_awaiting_reply_seconds", {"channel": "line"}) == 60.0
    assert registry.get_sample_value("msgkpi_awaiting_reply", {"channel": "x"}) is None
