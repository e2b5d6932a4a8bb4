"""Per-conversation alerts end to end, all real: gateway, worker and `msgkpi ui` on the real
broker, posting to Debian's `prometheus-alertmanager` running deploy/alertmanager/alertmanager.yml.

A conversation going at risk appears in Alertmanager's API with its conversation_id, team,
priority and links, and is resolved after the agent's reply; one left unanswered becomes a
breach that pages (its policy says so), its at-risk warning ends, the team's and channel's
notification reaches the pager receiver, and the reply resolves the breach too.

Test-only changes: receiver URLs point at this test, and group_wait / group_interval are 1 s
(they delay notifications only, not the alerts' arrival at Alertmanager's API).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from tests.e2e.test_alerting import Process, Receiver, alertmanager_config, binary, get_json
from tests.integration.services import Deployment, Service, free_port, wait_until
from tests.integration.test_sla_live import message, now_ms, post, warm_up

pytestmark = pytest.mark.e2e

TARGET_S = 10
DOCS_URL = "https://docs.example/msgkpi/docs"
GRAFANA_URL = "https://grafana.example"
POLICY_FILE = f"""\
policies:
  - name: e2e-urgent
    match: {{channel: chatwoot, priority: [high, urgent]}}
    first_response: {TARGET_S}s
    at_risk: 0.2
    breach_severity: page
    conversation_url: "https://desk.example/app/accounts/{{account_id}}/conversations/{{conversation_id}}"
  - name: e2e-standard
    match: {{channel: "*"}}
    first_response: 1h
"""


@dataclass
class AlertStack:
    gateway: Service
    worker: Service
    ui: Service
    alertmanager_url: str
    receiver: Receiver

    def alerts(self, conversation: str) -> dict[str, dict[str, Any]]:
        """Alertmanager's active alerts of one conversation, by alertname."""
        alerts: list[dict[str, Any]] = get_json(f"{self.alertmanager_url}/api/v2/alerts")
        return {a["labels"]["alertname"]: a for a in alerts
                if a["labels"].get("conversation_id") == conversation}


def _fast_groups(config: dict[str, Any]) -> dict[str, Any]:
    for route in config["route"]["routes"]:
        if "group_interval" in route:
            route["group_interval"] = "1s"
    return config


@pytest.fixture
def alert_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[AlertStack]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_FILE)
    receiver = Receiver(free_port())
    am_port = free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(_fast_groups(alertmanager_config(receiver.port))))
    deployment = Deployment(kafka_bootstrap, extra_env={
        "MSGKPI_CONFIG": str(policy), "MSGKPI_EVENTS_PARTITIONS": "3",
        "MSGKPI_ALERTMANAGER_URL": am_url, "MSGKPI_ALERT_RESEND_S": "5",
        "MSGKPI_DOCS_URL": DOCS_URL, "MSGKPI_GRAFANA_URL": GRAFANA_URL})
    server = receiver.serve()
    services: list[Service] = []
    alertmanager = Process([
        binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
    ], tmp_path / "alertmanager.log")
    try:
        alertmanager.wait_ready(f"{am_url}/-/ready")
        for command in ("gateway", "worker", "ui"):
            services.append(Service(deployment, command, free_port(), tmp_path))
        gateway, worker, ui = services
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        ui.wait_http("/readyz")
        warm_up(gateway, worker)
        yield AlertStack(gateway, worker, ui, am_url, receiver)
    finally:
        for service in reversed(services):
            service.stop()
        alertmanager.stop()
        server.shutdown()
        server.server_close()


def customer(conversation: str) -> dict[str, Any]:
    return message(conversation, "customer", now_ms(), "chatwoot", priority="urgent",
                   team="billing", account_id="7")


def reply(conversation: str) -> dict[str, Any]:
    return message(conversation, "agent", now_ms(), "chatwoot", agent_id="ana")


def test_conversation_alerts_reach_alertmanager_and_resolve_on_reply(
    alert_stack: AlertStack,
) -> None:
    stack = alert_stack
    began = time.monotonic()
    answered, late = f"soon-{uuid.uuid4().hex[:6]}", f"late-{uuid.uuid4().hex[:6]}"
    posted = now_ms()
    post(stack.gateway, customer(answered), customer(late))

    # Both go at risk 2 s in (0.2 x 10 s) and appear at Alertmanager with their id.
    wait_until(lambda: all("MsgkpiSlaConversationAtRisk" in stack.alerts(c)
                           for c in (answered, late)), TARGET_S - 2, interval_s=0.2,
               what=f"at-risk alerts at Alertmanager; ui log:\n{stack.ui.log_tail()}")
    print(f"\nat risk at Alertmanager {now_ms() - posted} ms after the message")
    alert = stack.alerts(answered)["MsgkpiSlaConversationAtRisk"]
    assert {k: alert["labels"][k] for k in ("channel", "policy", "metric", "team", "priority",
                                            "conversation_id", "severity")} == {
        "channel": "chatwoot", "policy": "e2e-urgent", "metric": "first_response",
        "team": "billing", "priority": "urgent", "conversation_id": answered,
        "severity": "warning"}
    notes = alert["annotations"]
    assert notes["conversation_url"] == (
        f"https://desk.example/app/accounts/7/conversations/{answered}")
    assert notes["runbook_url"] == f"{DOCS_URL}/sla.md#per-conversation-alerts"
    assert notes["dashboard_url"] == (
        f"{GRAFANA_URL}/d/msgkpi-support-kpis?var-channel=chatwoot&var-policy=e2e-urgent")
    assert notes["time_left"].endswith(" left") and answered in notes["summary"]
    assert alert["status"]["state"] == "active"

    # The agent answers one: its alert resolves (leaves the API's active alerts).
    post(stack.gateway, reply(answered))
    wait_until(lambda: stack.alerts(answered) == {}, 15, interval_s=0.2,
               what="the answered conversation's alert to resolve")
    print(f"answered conversation resolved {now_ms() - posted} ms after the message")

    # The other breaches: a page (the policy says so) replaces its at-risk warning.
    wait_until(lambda: set(stack.alerts(late)) == {"MsgkpiSlaConversationBreach"},
               TARGET_S + 15, interval_s=0.2, what="the breach replacing the at-risk alert")
    breach = stack.alerts(late)["MsgkpiSlaConversationBreach"]
    assert breach["labels"]["severity"] == "page"
    assert breach["annotations"]["time_left"].startswith("overdue by")

    # One notification per team and channel, to the support duty pager (chatwoot).
    def paged() -> list[dict[str, Any]]:
        return [body for _, name, body in stack.receiver.notifications
                if name == "support-duty-pager" and body["status"] == "firing"]

    wait_until(lambda: bool(paged()), 20, what="the page notification")
    assert paged()[0]["groupLabels"] == {"team": "billing", "channel": "chatwoot"}
    assert late in {a["labels"]["conversation_id"] for a in paged()[0]["alerts"]}

    # The late reply resolves the breach, and the pager hears it.
    post(stack.gateway, reply(late))
    wait_until(lambda: stack.alerts(late) == {}, 15, interval_s=0.2,
               what="the breach to resolve after the reply")
    wait_until(lambda: any(name == "support-duty-pager" and body["status"] == "resolved"
                           for _, name, body in stack.receiver.notifications), 20,
               what="the resolved notification")
    print(f"conversation alerts e2e took {time.monotonic() - began:.1f} s after start-up")
