"""The SLA stage on a plain dict table with a fake clock, a fake producer and a fake changelog:
once-only alerts (also across a restart through the codec), next reply per waiting period,
attainment counters, "now" while caught up vs while replaying, gauges, ownership, and every
event valid against schemas/sla-event.v1.schema.json."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fastjsonschema
import orjson
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import CollectorRegistry

from processor.events import event_from_dict
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.calendar import BusinessCalendar, WeeklyInterval
from processor.kpi.event_step import EventProcessor, Record, StoredConversation
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy
from processor.kpi.sla import WHATSAPP_WINDOW_MS, SlaTracker, next_due_ms
from processor.kpi.sla_record import SlaRecord
from processor.policy_file import parse_policy_text
from processor.worker.codec import ConversationCodec
from processor.worker.sla_stage import SCHEMA_NAME, GaugeKey, SlaStage

ROOT = Path(__file__).resolve().parents[3]
VALIDATE = fastjsonschema.compile(
    orjson.loads((ROOT / "schemas" / "sla-event.v1.schema.json").read_bytes()))

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WALL = T0 + 30 * 86_400_000  # the fake wall clock while replaying: a month later
S = 1000

# whatsapp: FRT 60 s (at risk 30 s), next reply 120 s (60 s), resolution 1 h (30 min).
WA = SlaPolicy("wa", PolicyMatch.of("whatsapp"), first_response_s=60, next_reply_s=120,
               resolution_s=3600, at_risk=0.5)
# any channel, priority vip: FRT 20 s only.
VIP = SlaPolicy("vip", PolicyMatch.of("*", priority="vip"), first_response_s=20)
# telegram: next reply only, so the first wait counts for next_reply.
TG = SlaPolicy("tg", PolicyMatch.of("telegram"), next_reply_s=100)
# chatwoot: FRT 15 min in office hours, Mon-Fri 08:00-18:00 Amsterdam.
OFFICE = BusinessCalendar("Europe/Amsterdam",
                          [WeeklyInterval(day, 8 * 3600, 18 * 3600) for day in range(5)],
                          name="office")
DESK = SlaPolicy("desk", PolicyMatch.of("chatwoot"), calendar="office", first_response_s=900)
POLICIES = PolicySet((VIP, WA, TG, DESK), {"office": OFFICE})


def amsterdam(local: str) -> int:
    """Epoch ms of an Amsterdam wall-clock time."""
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Amsterdam"))
               .timestamp() * 1000)


def record(event_id: str, at_s: float, conversation: str = "c1", partition: int = 0,
           channel: str = "whatsapp", kind: str = "message", **fields: Any) -> Record:
    event = {"event_id": event_id, "type": kind, "channel": channel,
             "conversation_id": conversation, "occurred_at": T0 + int(at_s * S), **fields}
    return Record(partition, conversation.encode(), orjson.dumps(event))


def customer(event_id: str, at_s: float, conversation: str = "c1", **fields: Any) -> Record:
    return record(event_id, at_s, conversation, author="customer", **fields)


def agent(event_id: str, at_s: float, conversation: str = "c1", **fields: Any) -> Record:
    return record(event_id, at_s, conversation, author="agent", agent_id="ana", **fields)


@dataclass
class Producer:
    """Fake SLA topic: records what was sent; can refuse to acknowledge."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    async def publish(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        payload = orjson.loads(value)
        assert key == payload["conversation_id"].encode()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            ack.set_exception(ConnectionError("broker gone"))
        else:
            self.sent.append(payload)
            ack.set_result(None)
        return ack


@dataclass
class Worker:
    """One worker process: processor + SLA stage over a dict table; `changelog` survives it."""

    changelog: dict[str, bytes]
    progress: dict[int, bool] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    table: dict[str, StoredConversation] = field(default_factory=dict)
    producer: Producer = field(default_factory=Producer)

    def __post_init__(self) -> None:
        codec = ConversationCodec()
        for key, value in self.changelog.items():
            self.table[key] = codec.loads(value)

        def persist(conversation_id: str, stored: StoredConversation) -> None:
            self.changelog[conversation_id] = codec.dumps(stored)

        self.stage = SlaStage(POLICIES, self.table, self.registry, caught_up=lambda: self.progress,
                              publish=self.producer.publish, persist=persist)
        metrics = WorkerMetrics(self.registry)
        self.processor = EventProcessor(self.table, metrics, AwaitingIndex(), grace_ms=600_000,
                                        observer=self.stage)
        self.stage.event_time = self.processor.partition_max_ms
        self.stage.rebuild()
        self._codec = codec

    def feed(self, *records: Record) -> None:
        """Process a batch and persist what it changed (as the agent does)."""
        outcome = self.processor.process_batch(records)
        for key, stored in outcome.changed.items():
            self.changelog[key] = self._codec.dumps(stored)

    def tick(self, at_s: float) -> list[tuple[str, str, str]]:
        """Tick at T0 + at_s (wall clock); (kind, metric, conversation) of what was published."""
        published = asyncio.run(self.stage.tick(T0 + int(at_s * S)))
        for payload in published:
            VALIDATE(payload)
        assert published == self.producer.sent[-len(published):] if published else True
        return [(p["kind"], p["metric"], p["conversation_id"]) for p in published]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def w() -> Worker:
    return Worker({}, progress={0: True, 1: True})


def sla_labels(policy: str, metric: str, channel: str = "whatsapp") -> dict[str, str]:
    return {"channel": channel, "policy": policy, "metric": metric}


# -- once-only emission ------------------------------------------------------------------------

def test_at_risk_then_breach_each_once_within_a_tick_of_their_instant(w: Worker) -> None:
    w.feed(customer("m1", 0))
    assert w.tick(29.999) == []
    assert w.tick(30) == [("at_risk", "first_response", "c1")]
    assert w.tick(60) == []  # due at 60 s; a reply at 60 s is still within target
    assert w.tick(60.001) == [("breach", "first_response", "c1")]
    assert w.tick(61) == [] and w.tick(600) == []
    assert w.sample("msgkpi_sla_breaches_total", **sla_labels("wa", "first_response")) == 1
    event = w.producer.sent[-1]
    assert event["schema"] == SCHEMA_NAME
    assert (event["due_ms"], event["at_ms"], event["detected_at_ms"]) == (
        T0 + 60 * S, T0 + 60 * S + 1, T0 + 60 * S + 1)
    assert event["alert_id"] == f"c1/1/first_response/breach/{T0}"


def test_no_alerts_twice_after_a_restart_through_the_codec(w: Worker) -> None:
    w.feed(customer("m1", 0), customer("x1", 0, "c2"))
    assert sorted(w.tick(61)) == [("at_risk", "first_response", "c1"),
                                  ("at_risk", "first_response", "c2"),
                                  ("breach", "first_response", "c1"),
                                  ("breach", "first_response", "c2")]
    # The worker dies; a new one recovers the table from the changelog (codec round trip).
    restarted = Worker(dict(w.changelog), progress={0: True})
    assert restarted.table["c1"].sla is not None
    assert restarted.tick(62) == [] and restarted.tick(120) == []
    # what was not due yet still comes, once: resolution's at-risk at 30 min
    assert restarted.tick(1800) == [("at_risk", "resolution", "c1"),
                                    ("at_risk", "resolution", "c2")]
    assert restarted.tick(1801) == []


def test_a_restart_between_at_risk_and_breach_emits_only_the_breach(w: Worker) -> None:
    w.feed(customer("m1", 0))
    assert w.tick(45) == [("at_risk", "first_response", "c1")]
    restarted = Worker(dict(w.changelog), progress={0: True})
    assert restarted.tick(61) == [("breach", "first_response", "c1")]
    again = Worker(dict(restarted.changelog), progress={0: True})
    assert again.tick(100) == []


def test_unacknowledged_alerts_are_not_persisted_and_are_retried(w: Worker) -> None:
    w.feed(customer("m1", 0))
    before = w.changelog["c1"]
    w.producer.fail = True
    assert w.tick(61) == []
    assert w.changelog["c1"] == before  # the tracker was not written
    assert w.sample("msgkpi_sla_breaches_total", **sla_labels("wa", "first_response")) == 0
    w.producer.fail = False
    assert w.tick(62) == [("at_risk", "first_response", "c1"),
                          ("breach", "first_response", "c1")]
    assert w.changelog["c1"] != before


def test_answered_in_time_raises_nothing(w: Worker) -> None:
    w.feed(customer("m1", 0), agent("m2", 25))
    assert w.tick(100) == []
    w.feed(record("r1", 200, kind="resolved"))
    assert w.tick(7200) == []
    assert w.stage.at_risk() == {k: 0 for k in w.stage.at_risk()}


def test_next_reply_once_per_waiting_period_and_first_wait_is_frt(w: Worker) -> None:
    w.feed(customer("m1", 0), agent("m2", 10))
    assert w.tick(500) == []  # the first wait was first response's, answered in time
    w.feed(customer("m3", 1000))
    assert w.tick(1060) == [("at_risk", "next_reply", "c1")]
    assert w.tick(1120.001) == [("breach", "next_reply", "c1")]
    w.feed(customer("m4", 1130))  # same waiting period: nothing new
    assert w.tick(1300) == []
    w.feed(agent("m5", 1400), customer("m6", 1500))
    assert w.tick(1560) == [("at_risk", "next_reply", "c1")]
    assert w.tick(1620.001) == [("breach", "next_reply", "c1")]
    assert w.sample("msgkpi_sla_breaches_total", **sla_labels("wa", "next_reply")) == 2
    assert w.sample("msgkpi_sla_breaches_total", **sla_labels("wa", "first_response")) == 0


def test_policy_without_frt_target_covers_the_first_wait_with_next_reply(w: Worker) -> None:
    w.feed(record("t1", 0, "t", channel="telegram", author="customer"))
    assert w.tick(100.001) == [("at_risk", "next_reply", "t"), ("breach", "next_reply", "t")]


def test_business_hours_deadline_waits_for_the_office_to_open(w: Worker) -> None:
    friday = (amsterdam("2026-06-12T17:50") - T0) / S
    w.feed(record("d1", friday, "d", channel="chatwoot", author="customer"))
    # Cheap lower bound first (12 min of elapsed time); the timer then finds nothing due and
    # plans on the calendar: 10 min on Friday, 2 min on Monday.
    assert w.tick(friday + 12 * 60) == []
    assert w.stage.scheduled("d") == amsterdam("2026-06-15T08:02")
    assert w.tick((amsterdam("2026-06-15T08:01:59") - T0) / S) == []
    assert w.tick((amsterdam("2026-06-15T08:02") - T0) / S) == [
        ("at_risk", "first_response", "d")]
    assert w.tick((amsterdam("2026-06-15T08:05") - T0) / S) == []
    assert w.tick((amsterdam("2026-06-15T08:05") - T0) / S + 0.001) == [
        ("breach", "first_response", "d")]
    assert w.producer.sent[-1]["due_ms"] == amsterdam("2026-06-15T08:05")


def test_due_at_closing_time_breaches_only_when_the_office_reopens(w: Worker) -> None:
    friday = (amsterdam("2026-06-12T17:45") - T0) / S
    w.feed(record("d1", friday, "d", channel="chatwoot", author="customer"))
    assert w.tick((amsterdam("2026-06-12T17:57") - T0) / S) == [
        ("at_risk", "first_response", "d")]
    assert w.tick((amsterdam("2026-06-14T23:59") - T0) / S) == []  # a reply would be in time
    assert w.tick((amsterdam("2026-06-15T08:00") - T0) / S + 0.001) == [
        ("breach", "first_response", "d")]


def test_policy_match_keeps_the_newest_non_empty_values(w: Worker) -> None:
    w.feed(customer("m1", 0, priority="vip", account_id="acme"))
    stored = w.table["c1"]
    assert stored.sla is not None and stored.sla.policy == "vip"
    w.feed(customer("m2", 1))  # no priority: still vip
    assert stored.sla.policy == "vip"
    assert stored.sla.match == {"channel": "whatsapp", "priority": "vip", "account_id": "acme"}
    assert w.tick(20.001) == [("at_risk", "first_response", "c1"),
                              ("breach", "first_response", "c1")]
    assert w.producer.sent[-1]["policy"] == "vip"
    assert w.producer.sent[-1]["account_id"] == "acme"
    assert w.producer.sent[-1]["priority"] == "vip"
    assert w.producer.sent[-1]["team"] is None
    w.feed(customer("m3", 30, priority="normal"))  # a newer value: now the whatsapp policy
    assert stored.sla.policy == "wa"


def test_no_policy_no_alerts_and_no_counters(w: Worker) -> None:
    w.feed(record("l1", 0, "l", channel="line", author="customer"))
    assert w.tick(10 * 86_400) == []
    assert w.table["l"].sla == SlaRecord(match={"channel": "line"}, policy=None)


# -- attainment --------------------------------------------------------------------------------

def test_attainment_counts_each_outcome_once(w: Worker) -> None:
    w.feed(customer("m1", 0), agent("m2", 60))  # FRT exactly on target: attained
    w.feed(customer("m3", 100), agent("m4", 221))  # next reply 121 s > 120 s: missed
    w.feed(customer("m5", 300), agent("m6", 320))  # next reply 20 s: attained
    w.feed(record("r1", 4000, kind="resolved"))  # resolution 4000 s > 3600 s: missed
    counts = {metric: (w.sample("msgkpi_sla_attained_total", **sla_labels("wa", metric)),
                       w.sample("msgkpi_sla_measured_total", **sla_labels("wa", metric)))
              for metric in ("first_response", "next_reply", "resolution")}
    assert counts == {"first_response": (1, 1), "next_reply": (1, 2), "resolution": (0, 1)}
    w.feed(agent("m4", 221))  # a duplicate changes nothing
    assert w.sample("msgkpi_sla_measured_total", **sla_labels("wa", "next_reply")) == 2


def test_first_reply_counts_as_next_reply_when_the_policy_has_no_frt_target(w: Worker) -> None:
    w.feed(record("t1", 0, "t", channel="telegram", author="customer"),
           record("t2", 90, "t", channel="telegram", author="agent", agent_id="ana"))
    labels = sla_labels("tg", "next_reply", "telegram")
    assert w.sample("msgkpi_sla_measured_total", **labels) == 1
    assert w.sample("msgkpi_sla_attained_total", **labels) == 1


def test_frt_counts_from_the_handoff(w: Worker) -> None:
    w.feed(customer("m1", 0), record("b1", 5, author="bot", agent_id="bot"),
           record("h1", 100, kind="handoff", agent_id="ana"), agent("m2", 150))
    assert w.sample("msgkpi_sla_attained_total", **sla_labels("wa", "first_response")) == 1


def test_series_exist_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    SlaStage(POLICIES, {}, registry)
    assert registry.get_sample_value("msgkpi_sla_breaches_total",
                                     sla_labels("wa", "first_response")) == 0
    assert registry.get_sample_value("msgkpi_sla_measured_total",
                                     sla_labels("wa", "resolution")) == 0
    # a "*" policy covers every known channel; only the metrics it sets a target for
    assert registry.get_sample_value("msgkpi_sla_breaches_total",
                                     sla_labels("vip", "first_response", "x")) == 0
    assert registry.get_sample_value("msgkpi_sla_breaches_total",
                                     sla_labels("vip", "next_reply", "x")) is None
    assert registry.get_sample_value("msgkpi_sla_at_risk",
                                     sla_labels("tg", "next_reply", "telegram")) == 0


# -- "now": wall clock when caught up, event time while replaying ---------------------------------

def test_replaying_a_backlog_uses_event_time_so_late_read_replies_raise_nothing() -> None:
    w = Worker({}, progress={0: False})
    w.feed(customer("m1", 0))
    # The wall clock is a month later, but the partition's newest event is at 0 s.
    assert w.tick((WALL - T0) / S) == []
    w.feed(agent("m2", 50), record("r1", 100, kind="resolved"))  # the backlog: in time
    assert w.tick((WALL - T0) / S) == []
    w.progress[0] = True
    assert w.tick((WALL - T0) / S) == []
    assert w.sample("msgkpi_sla_attained_total", **sla_labels("wa", "first_response")) == 1


def test_replay_fires_when_event_time_passes_the_deadline() -> None:
    w = Worker({}, progress={0: False})
    w.feed(customer("m1", 0), customer("x1", 10, "c2"))
    assert w.tick((WALL - T0) / S) == []
    w.feed(customer("y1", 61, "c3"))  # event time moves past c1's breach
    assert w.tick((WALL - T0) / S) == [("at_risk", "first_response", "c1"),
                                       ("breach", "first_response", "c1"),
                                       ("at_risk", "first_response", "c2")]
    assert w.producer.sent[1]["detected_at_ms"] == T0 + 61 * S


def test_caught_up_uses_the_wall_clock_and_event_time_never_runs_ahead_of_it() -> None:
    w = Worker({}, progress={0: True, 1: False})
    w.feed(customer("m1", 0))
    assert w.stage.partition_now(0, T0 + 5, w.progress) == T0 + 5
    w.feed(customer("f1", 7200, "future", partition=1))  # stamped two hours ahead
    assert w.stage.partition_now(1, T0 + 5, w.progress) == T0 + 5
    assert w.stage.partition_now(2, T0 + 5, w.progress) is None  # nothing known
    assert w.tick(61) == [("at_risk", "first_response", "c1"),
                          ("breach", "first_response", "c1")]
    assert w.tick(100) == []  # "future": its partition's now is capped at the wall clock


# -- gauges ------------------------------------------------------------------------------------

def test_at_risk_gauge_counts_warned_not_yet_breached_running_clocks(w: Worker) -> None:
    key: GaugeKey = ("whatsapp", "wa", "first_response")
    w.feed(customer("m1", 0), customer("x1", 0, "c2"), customer("y1", 0, "c3"))
    w.tick(31)
    assert w.stage.at_risk()[key] == 3
    assert w.sample("msgkpi_sla_at_risk", **sla_labels("wa", "first_response")) == 3
    w.feed(agent("m2", 40))  # answered: no longer at risk
    w.feed(record("y2", 41, "c3", kind="resolved"))  # resolved without reply: no clock
    assert w.stage.at_risk()[key] == 1
    w.tick(61)  # c2 breached
    assert w.stage.at_risk()[key] == 0


def test_whatsapp_window_gauge(w: Worker) -> None:
    w.feed(customer("m1", 0), customer("x1", 600, "c2"),
           record("t1", 0, "t", channel="telegram", author="customer"))
    hour = 3600
    w.tick(WHATSAPP_WINDOW_MS / S - 2 * hour)
    assert w.sample("msgkpi_whatsapp_window_closing", channel="whatsapp") == 0
    w.tick(WHATSAPP_WINDOW_MS / S - hour)  # c1 closes in exactly an hour: counted
    assert w.sample("msgkpi_whatsapp_window_closing", channel="whatsapp") == 1
    w.tick(WHATSAPP_WINDOW_MS / S - hour + 600)
    assert w.sample("msgkpi_whatsapp_window_closing", channel="whatsapp") == 2
    w.feed(agent("m2", WHATSAPP_WINDOW_MS / S - hour + 601))  # answered: not waiting
    w.tick(WHATSAPP_WINDOW_MS / S - hour + 602)
    assert w.sample("msgkpi_whatsapp_window_closing", channel="whatsapp") == 1
    w.tick(WHATSAPP_WINDOW_MS / S + 600)  # closed windows do not count
    assert w.sample("msgkpi_whatsapp_window_closing", channel="whatsapp") == 0


# -- ownership ---------------------------------------------------------------------------------

def test_revoked_partitions_have_no_timers_or_gauges_and_rebuild_restores_them(w: Worker) -> None:
    w.feed(customer("m1", 0), customer("p1", 0, "p", partition=1))
    w.tick(31)
    key: GaugeKey = ("whatsapp", "wa", "first_response")
    assert w.stage.at_risk()[key] == 2
    w.processor.forget_partitions({1})
    w.stage.forget({1})
    assert w.stage.at_risk()[key] == 1
    assert w.tick(61) == [("breach", "first_response", "c1")]
    # reassigned: the table is recovered and the stage rebuilt from it
    w.table["p"] = ConversationCodec().loads(w.changelog["p"])
    w.stage.rebuild()
    assert w.stage.at_risk()[key] == 1
    assert w.tick(62) == [("breach", "first_response", "p")]


def test_a_burst_is_spread_over_ticks_and_each_alert_sent_once(w: Worker) -> None:
    w.stage._max_per_tick = 2
    w.feed(*(customer(f"m{i}", 0, f"c{i}") for i in range(5)))
    sizes = [len(w.tick(61)) for _ in range(4)]
    assert sizes == [4, 4, 2, 0]  # at-risk and breach of 2, 2 and 1 conversations
    assert w.sample("msgkpi_sla_breaches_total", **sla_labels("wa", "first_response")) == 5


def test_stale_heap_entries_are_compacted(w: Worker) -> None:
    for i in range(300):  # each event reschedules its conversation
        w.feed(*(record(f"{i}-{k}", k, f"c{i}", author=("customer", "agent")[k % 2],
                        agent_id="ana") for k in range(6)))
    assert sum(len(heap) for heap in w.stage._heaps.values()) <= 4 * 300
    assert len(w.tick(1800)) == 300  # every conversation's resolution at-risk, once
    assert w.tick(1801) == []


def test_schedule_matches_next_due_ms(w: Worker) -> None:
    w.feed(customer("m1", 0), agent("m2", 10), customer("m3", 100))
    stored = w.table["c1"]
    w.tick(50)
    expected = next_due_ms(stored.timeline.state, _tracker(stored), WA, POLICIES.calendar_of(WA))
    assert w.stage.scheduled("c1") == expected == T0 + 160 * S


def _tracker(stored: StoredConversation) -> SlaTracker:
    return SlaTracker() if stored.sla is None else stored.sla.tracker_copy()


# -- docs: every alert's runbook_url has its section ---------------------------------------------

def test_every_runbook_url_points_at_a_section_of_operations_md() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/msgkpi-alerts.yml").read_text())
    anchors = {rule["annotations"]["runbook_url"].split("#", 1)[1]
               for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs/operations.md").read_text(), re.M)
    slugs = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    assert anchors - slugs == set()


def test_business_seconds_histogram_counts_only_open_hours() -> None:
    """FRT of a customer message Friday 17:50 answered Monday 08:05 on a Mon-Fri 08:00-18:00
    calendar: 10 min + 5 min = 900 business seconds."""
    policies = parse_policy_text(
        "calendars:\n  office:\n    timezone: UTC\n    hours: {mon-fri: ['08:00-18:00']}\n"
        "policies:\n  - name: std\n    match: {channel: line}\n    calendar: office\n"
        "    first_response: 1h\n", "inline")
    registry = CollectorRegistry()
    table: dict[str, Any] = {}
    stage = SlaStage(policies, table, registry)
    processor = EventProcessor(table, WorkerMetrics(registry), AwaitingIndex(), 600_000,
                               observer=stage)
    friday_1750 = 1_795_197_000_000  # 2026-11-20 17:50 UTC, a Friday
    monday_0805 = friday_1750 + (2 * 86_400 + 14 * 3_600 + 15 * 60) * 1000
    for event_id, at, author in (("q", friday_1750, "customer"), ("a", monday_0805, "agent")):
        event = event_from_dict({"event_id": event_id, "type": "message", "channel": "line",
                                 "conversation_id": "c", "occurred_at": at, "author": author})
        processor.process_batch([Record(0, b"c", event.to_json(), 1)])
    labels = {"channel": "line", "policy": "std", "metric": "first_response"}
    assert registry.get_sample_value("msgkpi_business_seconds_sum", labels) == 900.0
    assert registry.get_sample_value("msgkpi_sla_attained_total", labels) == 1.0


def _sla_deltas(worker: Worker, *records: Record) -> list[tuple[int, str, str, float]]:
    outcome = worker.processor.process_batch(records)
    for key, stored in outcome.changed.items():
        worker.changelog[key] = worker._codec.dumps(stored)
    return [(d.weight, d.fact.role, d.fact.agent, d.fact.value) for d in outcome.deltas
            if d.fact.kind == "sla"]


def test_attainment_facts_for_the_windows_follow_reordering_across_a_restart() -> None:
    """A late customer message makes an earlier agent message the FRT, so the later reply
    becomes a next reply though its own fact (10 s, cycle 1) did not change: the SLA facts
    sent to the windows withdraw its FRT measurement and add the new ones, also after a
    restart through the codec."""
    changelog: dict[str, bytes] = {}
    before = Worker(changelog)
    assert _sla_deltas(before, agent("r1", 20)) == []  # no cycle open: volume only
    assert _sla_deltas(before, customer("m2", 30), agent("r2", 40)) == [
        (1, "first_response", "wa", 1.0)]
    after = Worker(changelog)  # the restored SLA record still knows what was measured
    assert sorted(_sla_deltas(after, customer("m1", 10))) == sorted([
        (-1, "first_response", "wa", 1.0), (1, "first_response", "wa", 1.0),
        (1, "next_reply", "wa", 1.0)])
