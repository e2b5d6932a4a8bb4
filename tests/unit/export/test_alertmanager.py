"""Per-conversation alerts as Alertmanager alerts: labels, annotations, links, start and end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from processor.export.alertmanager import (
    AlertLinks,
    AlertmanagerClient,
    conversation_link,
    human_duration,
    to_alertmanager,
)
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy
from processor.ui.alerts import ConversationAlert, SlaEvent

MIN = 60_000
T0 = 1_796_000_000_000
CHATWOOT = "https://desk.example/app/accounts/{account_id}/conversations/{conversation_id}"
POLICIES = PolicySet((
    SlaPolicy("urgent", PolicyMatch.of("*", priority=["high", "urgent"]), first_response_s=300,
              breach_severity="page", conversation_url=CHATWOOT),
    SlaPolicy("standard", PolicyMatch.of("*"), first_response_s=900),
))
LINKS = AlertLinks("https://docs.example/msgkpi/", "https://grafana.example/d/support",
                   "https://kpi.example/")


def sla_event(kind: str = "at_risk", policy: str = "urgent", **fields: Any) -> SlaEvent:
    values: dict[str, Any] = {
        "alert_id": f"c 1/1/first_response/{kind}/{T0}", "kind": kind,
        "metric": "first_response", "policy": policy, "cycle": 1, "period_ms": T0,
        "start_ms": T0, "due_ms": T0 + 5 * MIN,
        "at_ms": T0 + 4 * MIN if kind == "at_risk" else T0 + 5 * MIN + 1,
        "detected_at_ms": T0 + 5 * MIN, "channel": "chatwoot", "conversation_id": "c 1",
        "account_id": "7", "team": "billing", "priority": "urgent"}
    values.update(fields)
    return SlaEvent(**values)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_active_at_risk_alert() -> None:
    alert = ConversationAlert(sla_event())
    body = to_alertmanager(alert, POLICIES, LINKS, now_ms=T0 + 4 * MIN + 30_000,
                           active_for_ms=4 * MIN)
    assert body["labels"] == {
        "alertname": "MsgkpiSlaConversationAtRisk", "channel": "chatwoot", "policy": "urgent",
        "metric": "first_response", "team": "billing", "priority": "urgent",
        "conversation_id": "c 1", "severity": "warning"}
    notes = body["annotations"]
    assert notes["summary"] == ("chatwoot conversation c 1: first response at risk, "
                                "30s left")
    assert notes["time_left"] == "30s left"
    assert notes["conversation_url"] == (
        "https://desk.example/app/accounts/7/conversations/c%201")
    assert notes["runbook_url"] == (
        "https://docs.example/msgkpi/sla.md#per-conversation-alerts")
    assert notes["dashboard_url"] == (
        "https://grafana.example/d/support?var-channel=chatwoot&var-policy=urgent")
    assert ms(notes["due_at"]) == T0 + 5 * MIN
    assert ms(body["startsAt"]) == T0 + 4 * MIN
    assert ms(body["endsAt"]) == T0 + 8 * MIN + 30_000  # now + active_for
    assert body["generatorURL"] == "https://kpi.example/"


@pytest.mark.parametrize(("policy", "severity"), [("urgent", "page"), ("standard", "ticket"),
                                                  ("removed-policy", "ticket")])
def test_breach_severity_comes_from_the_policy(policy: str, severity: str) -> None:
    body = to_alertmanager(ConversationAlert(sla_event("breach", policy)), POLICIES, LINKS,
                           now_ms=T0 + 7 * MIN, active_for_ms=MIN)
    assert body["labels"]["alertname"] == "MsgkpiSlaConversationBreach"
    assert body["labels"]["severity"] == severity
    assert body["annotations"]["time_left"] == "overdue by 2m"
    assert ("conversation_url" in body["annotations"]) == (policy == "urgent")


def test_ended_alert_ends_at_the_reply() -> None:
    alert = ConversationAlert(sla_event())
    alert.end(T0 + 4 * MIN + 20_000, "answered")
    body = to_alertmanager(alert, POLICIES, LINKS, now_ms=T0 + 6 * MIN, active_for_ms=MIN)
    assert ms(body["endsAt"]) == T0 + 4 * MIN + 20_000
    assert "answered at" in body["annotations"]["summary"]
    early = ConversationAlert(sla_event())
    early.end(T0 + MIN, "answered")  # answered before the alert was due: never ends early
    assert ms(to_alertmanager(early, POLICIES, LINKS, T0, MIN)["endsAt"]) == T0 + 4 * MIN


def test_conversation_without_team_or_priority() -> None:
    event = sla_event(team=None, priority=None, account_id=None)
    body = to_alertmanager(ConversationAlert(event), POLICIES, LINKS, T0, MIN)
    assert body["labels"]["team"] == "support"
    assert "priority" not in body["labels"]
    assert "conversation_url" not in body["annotations"]  # {account_id} has no value


@pytest.mark.parametrize(("template", "expected"), [
    (None, None),
    ("https://h/{channel}/{conversation_id}", "https://h/chatwoot/c%201"),
    ("https://h/{team}?p={priority}&x={{literal}}", "https://h/billing?p=urgent&x={literal}"),
    ("https://h/{account_id}/{conversation_id}", "https://h/a%2Fb/c%201"),
])
def test_conversation_link(template: str | None, expected: str | None) -> None:
    assert conversation_link(template, sla_event(account_id="a/b")) == expected


@pytest.mark.parametrize(("ms_", "text"), [(0, "0s"), (999, "0s"), (59_000, "59s"),
                                           (61_000, "1m 1s"), (3_600_000, "1h"),
                                           (90_061_000, "1d 1h"), (-5, "0s")])
def test_human_duration(ms_: int, text: str) -> None:
    assert human_duration(ms_) == text


def test_client_needs_an_address() -> None:
    with pytest.raises(ValueError):
        AlertmanagerClient([])
