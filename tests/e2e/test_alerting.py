"""End to end, all real: gateway and worker on the real broker, Debian's `prometheus` scraping
them every second with the rules of deploy/prometheus/rules, and `prometheus-alertmanager` with
deploy/alertmanager/alertmanager.yml. A conversation driven past its first-response target
raises MsgkpiSlaBreach at Alertmanager (and its notification reaches the channel's receiver);
a conversation answered in time raises no SLA alert.

Test-only changes, nothing else: the Prometheus config is generated (this test's ports, scrape
and evaluation every 1 s, external labels with the bases of the alerts' links; the rule files
are used as they are: MsgkpiSlaBreach has no `for:`), and the Alertmanager config is
deploy/alertmanager/alertmanager.yml with every receiver URL pointed at a receiver in this test
and group_wait shortened from 30 s/10 s to 1 s (it delays notifications only, not the alert's
arrival at Alertmanager's API).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from tests.integration.services import (
    REPO_ROOT,
    Deployment,
    Service,
    free_port,
    http_get,
    wait_until,
)
from tests.integration.test_sla_live import message, now_ms, post, warm_up

pytestmark = pytest.mark.e2e

TARGET_S = 4
POLICY_FILE = f"""\
policies:
  - name: e2e-whatsapp
    match: {{channel: whatsapp}}
    first_response: {TARGET_S}s
  - name: e2e-telegram
    match: {{channel: telegram}}
    first_response: {TARGET_S}s
"""
EXTERNAL_LABELS = {"msgkpi_docs_url": "https://docs.example/msgkpi",
                   "msgkpi_grafana_url": "https://grafana.example"}
"""The bases of the alerts' links (docs/sla.md, "Links in alerts")."""
RULES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' / '.join(names)} not found: apt-get install -y prometheus "
                "prometheus-alertmanager (make test installs them)")


def get_json(url: str) -> Any:
    status, body = http_get(url, timeout=3)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


class Process:
    """A tool subprocess with its output in a log file; stopped (and killed) by stop()."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, url: str, timeout_s: float = 30) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.log_path.name} exited:\n{self.log_tail()}")
            return http_get(url, timeout=1)[0] == 200
        wait_until(ready, timeout_s, what=url)

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class Receiver:
    """Alertmanager webhook receiver: every notification, by receiver name (URL path)."""

    port: int
    notifications: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((time.time(), self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def alertmanager_config(receiver_port: int) -> dict[str, Any]:
    """The shipped config, receivers pointed at the test receiver, group_wait 1 s."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{receiver_port}/{receiver['name']}"

    def shorten(route: dict[str, Any]) -> None:
        if "group_wait" in route or route is config["route"]:
            route["group_wait"] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


def prometheus_config(gateway_port: int, worker_port: int, alertmanager_port: int
                      ) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s",
                   "external_labels": EXTERNAL_LABELS},
        "rule_files": [str(path) for path in RULES],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "msgkpi-gateway",
             "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}]},
            {"job_name": "msgkpi-worker",
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }


@dataclass
class Stack:
    deployment: Deployment
    gateway: Service
    worker: Service
    prometheus_url: str
    alertmanager_url: str
    receiver: Receiver

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
        result: list[dict[str, Any]] = get_json(url)["data"]["result"]
        return result

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.prometheus_url}/api/v1/alerts")[
            "data"]["alerts"]
        return alerts

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.alertmanager_url}/api/v2/alerts")
        return alerts


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    policy = tmp_path / "msgkpi-e2e.yaml"
    policy.write_text(POLICY_FILE)
    deployment = Deployment(kafka_bootstrap, extra_env={
        "MSGKPI_CONFIG": str(policy), "MSGKPI_EVENTS_PARTITIONS": "3"})
    receiver = Receiver(free_port())
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(receiver.port)))
    services: list[Service] = []
    tools: list[Process] = []
    server = receiver.serve()
    try:
        services.append(Service(deployment, "gateway", free_port(), tmp_path))
        services.append(Service(deployment, "worker", free_port(), tmp_path))
        gateway, worker = services
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(gateway.port, worker.port, am_port)))
        tools.append(Process([
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ], tmp_path / "alertmanager.log"))
        tools.append(Process([
            binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], tmp_path / "prometheus.log"))
        am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
        tools[0].wait_ready(f"{am_url}/-/ready")
        tools[1].wait_ready(f"{prom_url}/-/ready")
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        yield Stack(deployment, gateway, worker, prom_url, am_url, receiver)
    finally:
        for tool in reversed(tools):
            tool.stop()
        for service in reversed(services):
            service.stop()
        server.shutdown()
        server.server_close()


def sla_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"].startswith("MsgkpiSla")]


def test_breach_reaches_alertmanager_and_healthy_traffic_raises_nothing(stack: Stack) -> None:
    began = time.monotonic()
    warm_up(stack.gateway, stack.worker)
    # Prometheus must hold a 0 sample of the breach counter before the breach (increase()).
    wait_until(lambda: any(
        float(r["value"][1]) == 0 for r in stack.query(
            'msgkpi_sla_breaches_total{policy="e2e-whatsapp",channel="whatsapp"}')), 30,
        what="the breach counter scraped at 0")

    late, healthy = f"late-{uuid.uuid4().hex[:6]}", f"healthy-{uuid.uuid4().hex[:6]}"
    start = now_ms()
    post(stack.gateway, message(late, "customer", start),
         message(healthy, "customer", start, "telegram"))
    time.sleep(1.0)
    post(stack.gateway, message(healthy, "agent", now_ms(), "telegram", agent_id="ana"))
    deadline_ms = start + TARGET_S * 1000

    found: list[dict[str, Any]] = []

    def breach_at_alertmanager() -> bool:
        found[:] = [a for a in sla_alerts(stack.alertmanager_alerts())
                    if a["labels"]["alertname"] == "MsgkpiSlaBreach"]
        return bool(found)

    wait_until(breach_at_alertmanager, TARGET_S + 30, interval_s=0.2,
               what="MsgkpiSlaBreach at Alertmanager")
    arrived_ms = now_ms()
    alert = found[0]
    print(f"\nMsgkpiSlaBreach at Alertmanager {arrived_ms - deadline_ms} ms after the deadline"
          f" (polled every 200 ms): labels={alert['labels']} state={alert['status']['state']}"
          f" summary={alert['annotations']['summary']!r}")
    assert arrived_ms - deadline_ms < 20_000
    assert {k: alert["labels"][k] for k in ("channel", "policy", "metric", "severity", "team")} == {
        "channel": "whatsapp", "policy": "e2e-whatsapp", "metric": "first_response",
        "severity": "ticket", "team": "support"}
    assert alert["status"]["state"] == "active"  # not inhibited, not silenced
    assert alert["annotations"]["runbook_url"] == (
        "https://docs.example/msgkpi/operations.md#msgkpislabreach")
    assert alert["annotations"]["dashboard_url"] == (
        "https://grafana.example/d/msgkpi-support-kpis?var-channel=whatsapp&var-policy=e2e-whatsapp")

    # ... and its notification reaches the messaging lead's ticket receiver.
    def notified() -> bool:
        return any(name == "messaging-lead-tickets" for _, name, _ in stack.receiver.notifications)

    wait_until(notified, 30, what="the webhook notification")
    at, name, body = next(n for n in stack.receiver.notifications
                          if n[1] == "messaging-lead-tickets")
    print(f"notification to {name} {int(at * 1000) - deadline_ms} ms after the deadline: "
          f"{[a['labels']['alertname'] for a in body['alerts']]}")

    # Healthy traffic: answered in time, measured as attained, no SLA alert anywhere.
    wait_until(lambda: any(float(r["value"][1]) == 1 for r in stack.query(
        'msgkpi_sla_attained_total{policy="e2e-telegram",metric="first_response"}')), 15,
        what="the healthy conversation measured as attained")
    time.sleep(2.0)  # two more evaluations
    breaches = stack.query('msgkpi_sla_breaches_total{policy="e2e-telegram"}')
    assert breaches and all(float(r["value"][1]) == 0 for r in breaches), breaches
    assert [a["labels"] for a in sla_alerts(stack.prometheus_alerts())
            if a["labels"].get("channel") != "whatsapp"] == []
    assert [(a["labels"]["alertname"], a["labels"]["channel"])
            for a in sla_alerts(stack.alertmanager_alerts())] == [
        ("MsgkpiSlaBreach", "whatsapp")]
    assert all(n[2]["commonLabels"].get("channel") != "telegram"
               for n in stack.receiver.notifications)
    print(f"e2e took {time.monotonic() - began:.1f} s after start-up")
