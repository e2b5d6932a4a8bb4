"""The msgkpi_window_* gauges of reply rate, CSAT/NPS, tags and unique customers, and a
Prometheus recorder for every fact kind."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from processor.export.labels import LabelBudget
from processor.export.window_metrics import _AgentFamilies, _RateFamilies, _SlaFamilies
from processor.export.worker_metrics import WorkerMetrics
from processor.kpi.facts import Fact, FactKind


def gauges(snapshot: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    families = _RateFamilies()
    families.add("whatsapp", "1h", snapshot)
    return {(f.name, tuple(s.labels.values())): s.value
            for f in families.families() for s in f.samples}


@pytest.mark.parametrize(
    ("counts", "name", "labels", "value"),
    [
        pytest.param({"reply_rate.received": 4, "reply_rate.answered": 3},
                     "msgkpi_window_reply_rate", ("whatsapp", "1h"), 0.75, id="reply_rate"),
        pytest.param({"reply_rate.received": 2}, "msgkpi_window_reply_rate",
                     ("whatsapp", "1h"), 0.0, id="reply_rate_none_answered"),
        pytest.param({"csat.responses": 2, "csat.score_sum_x100": 750, "csat.satisfied": 1},
                     "msgkpi_window_csat_score", ("whatsapp", "1h", "avg"), 3.75, id="csat_avg"),
        pytest.param({"csat.responses": 4, "csat.score_sum_x100": 1600, "csat.satisfied": 3},
                     "msgkpi_window_csat_satisfied_ratio", ("whatsapp", "1h"), 0.75,
                     id="csat_satisfied"),
        pytest.param({"nps.responses": 4, "nps.promoters": 2, "nps.detractors": 1},
                     "msgkpi_window_nps", ("whatsapp", "1h"), 25.0, id="nps"),
        pytest.param({"fcr.resolved": 4, "fcr.first_contact": 3, "fcr.reopened": 1},
                     "msgkpi_window_fcr_ratio", ("whatsapp", "1h"), 0.75, id="fcr"),
        pytest.param({"fcr.resolved": 4, "fcr.reopened": 4},
                     "msgkpi_window_fcr_ratio", ("whatsapp", "1h"), 0.0, id="fcr_none"),
        pytest.param({"fcr.resolved": 4}, "msgkpi_window_fcr_decided_cycles",
                     ("whatsapp", "1h"), 4, id="fcr_decided"),
    ],
)
def test_rate_gauges(counts: dict[str, int], name: str, labels: tuple[str, ...], value: float
                     ) -> None:
    got = gauges({"counts": counts, "tags": {}, "unique_customers": 0})
    assert got[(name, labels)] == pytest.approx(value)


def test_no_rate_without_a_denominator_and_tags_and_customers() -> None:
    got = gauges({"counts": {}, "tags": {"billing": 3}, "unique_customers": 7})
    assert not any(name in ("msgkpi_window_reply_rate", "msgkpi_window_nps",
                            "msgkpi_window_csat_score", "msgkpi_window_fcr_ratio")
                   for name, _ in got)
    assert got[("msgkpi_window_tag_messages", ("whatsapp", "1h", "billing"))] == 3
    assert got[("msgkpi_window_unique_customers", ("whatsapp", "1h"))] == 7


def test_agent_gauges_average_frt_count_replies_and_bound_agent_labels() -> None:
    families = _AgentFamilies(LabelBudget(2))
    zero = {"messages": 0, "replies": 0, "first_responses": 0, "first_response_ms": 0,
            "resolutions": 0}
    families.add("whatsapp", "1h", {"agents": {
        "ana": {**zero, "replies": 3, "first_responses": 2, "first_response_ms": 5000},
        "bo": {**zero, "messages": 1},
        "cy": {**zero, "replies": 1, "first_responses": 1, "first_response_ms": 1000},
        "other": {**zero, "replies": 2, "first_responses": 1, "first_response_ms": 500},
    }})
    got = {(f.name, tuple(s.labels.values())): s.value
           for f in families.families() for s in f.samples}
    frt, replies = "msgkpi_window_agent_first_response_seconds", "msgkpi_window_agent_replies"
    assert got == {
        (frt, ("whatsapp", "1h", "ana")): 2.5,
        (replies, ("whatsapp", "1h", "ana")): 3,
        (replies, ("whatsapp", "1h", "bo")): 0,  # no first response: no average
        (frt, ("whatsapp", "1h", "other")): 0.75,  # cy beyond the budget, with the pane's other
        (replies, ("whatsapp", "1h", "other")): 3,
    }


def test_every_fact_kind_has_a_recorder() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, max_tags=1)
    facts = [Fact(FactKind.ANSWERED, "wa", 0, "a", "agent", "", 3.0, 1),
             Fact(FactKind.EXCLUDED, "wa", 0, "r", "answered", "", 3.0, 1),
             Fact(FactKind.CSAT, "wa", 0, "c", "5", "", 4.0, 0),
             Fact(FactKind.CSAT, "wa", 0, "n", "10", "", 7.0, 0),
             Fact(FactKind.TAG, "wa", 0, "t", "billing", "", 1.0, 0),
             Fact(FactKind.TAG, "wa", 0, "t", "refund", "", 1.0, 0)]
    for kind in FactKind:
        metrics.record([f for f in facts if f.kind is kind]
                       or [Fact(kind, "wa", 0, "x", "agent", "a1", 1.0, 1)])
    value = registry.get_sample_value
    assert value("msgkpi_reply_rate_messages_total",
                 {"channel": "wa", "outcome": "answered"}) == 1
    assert value("msgkpi_reply_rate_messages_total",
                 {"channel": "wa", "outcome": "excluded"}) == 1
    assert value("msgkpi_csat_responses_total",
                 {"channel": "wa", "scale": "5", "category": "satisfied"}) == 1
    assert value("msgkpi_csat_responses_total",
                 {"channel": "wa", "scale": "10", "category": "passive"}) == 1
    assert value("msgkpi_csat_score_total", {"channel": "wa", "scale": "10"}) == 7
    assert value("msgkpi_tag_messages_total", {"channel": "wa", "tag": "billing"}) == 1
    assert value("msgkpi_tag_messages_total", {"channel": "wa", "tag": "other"}) == 1


def test_sla_gauges_give_attainment_and_measured_per_policy_and_metric() -> None:
    families = _SlaFamilies()
    families.add("whatsapp", "1h", {"sla": {
        "gold": {"first_response": {"measured": 4, "attained": 3},
                 "next_reply": {"measured": 2, "attained": 0}}}})
    got = {(f.name, tuple(s.labels.values())): s.value
           for f in families.families() for s in f.samples}
    assert got == {
        ("msgkpi_window_sla_attainment_ratio", ("whatsapp", "1h", "gold", "first_response")):
            0.75,
        ("msgkpi_window_sla_attainment_ratio", ("whatsapp", "1h", "gold", "next_reply")): 0.0,
        ("msgkpi_window_sla_measured", ("whatsapp", "1h", "gold", "first_response")): 4,
        ("msgkpi_window_sla_measured", ("whatsapp", "1h", "gold", "next_reply")): 2,
    }
