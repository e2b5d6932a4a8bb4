"""Prometheus and Alertmanager configuration: valid, rule tests pass, routes and inhibition right.

Needs promtool, amtool and the alertmanager binary (Debian packages prometheus and
prometheus-alertmanager); `make test` installs them. Nothing here is skipped: a missing tool is
a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = [PROMETHEUS_DIR / "rules" / "msgkpi-recording.yml",
              PROMETHEUS_DIR / "rules" / "msgkpi-alerts.yml"]
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL_HINT = ("`make test` installs it (Debian: apt-get install -y prometheus "
                "prometheus-alertmanager)")


def tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' / '.join(names)} not found on PATH: {INSTALL_HINT}")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          check=False, cwd=ROOT)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load(PROMETHEUS_DIR / "rules" / "msgkpi-alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# -- Prometheus --------------------------------------------------------------------------------

def test_prometheus_config_is_valid() -> None:
    assert_ok(run(tool("promtool"), "check", "config", PROMETHEUS_CONFIG))


def test_prometheus_config_scrapes_gateway_and_worker_with_limits() -> None:
    config = load(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: [t for sc in job["static_configs"] for t in sc["targets"]]
               for name, job in jobs.items()}
    assert targets["msgkpi-gateway"] == ["127.0.0.1:8080"]
    assert targets["msgkpi-worker"] == ["127.0.0.1:6066"]
    for job in jobs.values():
        assert job["sample_limit"] > 0
        assert job["label_limit"] > 0
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file()


def test_rules_are_valid() -> None:
    assert_ok(run(tool("promtool"), "check", "rules", *RULE_FILES))


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests in deploy/prometheus/tests"
    assert_ok(run(tool("promtool"), "test", "rules", *RULE_TESTS))


def test_recording_rules_are_named_level_metric_operation() -> None:
    groups = load(RULE_FILES[0])["groups"]
    names = [rule["record"] for group in groups for rule in group["rules"]]
    assert names
    for name in names:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name
    for window in ("5m", "30m", "1h", "6h", "3d"):
        assert f"channel_policy:msgkpi_sla_attainment:ratio_rate{window}" in names


def test_every_alert_is_labelled_and_annotated() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["labels"]["team"] in {"support", "platform"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        docs = '{{ or $externalLabels.msgkpi_docs_url "https://msgkpi-docs.invalid" }}/'
        grafana = '{{ or $externalLabels.msgkpi_grafana_url "http://127.0.0.1:3000" }}/d/'
        assert annotations["runbook_url"].startswith(f"{docs}operations.md#"), rule["alert"]
        assert annotations["dashboard_url"].startswith(grafana), rule["alert"]


def test_every_alert_has_a_firing_and_a_silent_rule_test() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for test in load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    expected = {"MsgkpiSlaBreach", "MsgkpiSlaAtRiskBuildUp", "MsgkpiSlaBurnRateFast",
                "MsgkpiSlaBurnRateMedium", "MsgkpiSlaBurnRateSlow", "MsgkpiNoEvents",
                "MsgkpiConsumerLagHigh", "MsgkpiDlqGrowing", "MsgkpiGatewayErrors",
                "MsgkpiWorkerDown", "MsgkpiGatewayDown"}
    assert names == expected
    assert names - fired == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


# -- Alertmanager ------------------------------------------------------------------------------

def test_alertmanager_config_is_valid() -> None:
    assert_ok(run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG))


ROUTE_CASES = [
    # (labels, receiver)
    ("alertname=MsgkpiWorkerDown severity=page team=platform", "platform-oncall-pager"),
    ("alertname=MsgkpiGatewayErrors severity=page team=platform channel=whatsapp",
     "platform-oncall-pager"),
    ("alertname=MsgkpiDlqGrowing severity=ticket team=platform", "platform-tickets"),
    ("alertname=MsgkpiSlaBurnRateFast severity=page team=support channel=whatsapp "
     "policy=whatsapp-24-7 metric=first_response", "messaging-lead-pager"),
    ("alertname=MsgkpiSlaBreach severity=ticket team=support channel=telegram "
     "policy=telegram-line-wechat metric=next_reply", "messaging-lead-tickets"),
    ("alertname=MsgkpiSlaBurnRateMedium severity=page team=support channel=instagram",
     "social-lead-pager"),
    ("alertname=MsgkpiSlaBreach severity=ticket team=support channel=x", "social-lead-tickets"),
    ("alertname=MsgkpiSlaBurnRateFast severity=page team=support channel=chatwoot",
     "support-duty-pager"),
    ("alertname=MsgkpiSlaBurnRateFast severity=page team=support channel=xmpp",
     "support-duty-pager"),
    ("alertname=MsgkpiSlaAtRiskBuildUp severity=ticket team=support channel=canonical",
     "support-duty-tickets"),
    ("alertname=SomethingElse", "support-duty-tickets"),
    # per-conversation alerts of `msgkpi ui`: any team, by channel group and severity
    ("alertname=MsgkpiSlaConversationBreach severity=page team=billing channel=whatsapp "
     "conversation_id=c1", "messaging-lead-pager"),
    ("alertname=MsgkpiSlaConversationAtRisk severity=warning team=billing channel=whatsapp "
     "conversation_id=c1", "messaging-lead-tickets"),
    ("alertname=MsgkpiSlaConversationBreach severity=page team=emea channel=instagram",
     "social-lead-pager"),
    ("alertname=MsgkpiSlaConversationBreach severity=ticket team=emea channel=x",
     "social-lead-tickets"),
    ("alertname=MsgkpiSlaConversationBreach severity=page team=support channel=chatwoot",
     "support-duty-pager"),
    ("alertname=MsgkpiSlaConversationAtRisk severity=warning team=support channel=chatwoot",
     "support-duty-tickets"),
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTE_CASES,
                         ids=[" ".join(case[0].split()[:2]) + "->" + case[1]
                              for case in ROUTE_CASES])
def test_route(labels: str, receiver: str) -> None:
    result = run(tool("amtool"), "config", "routes", "test",
                 f"--config.file={ALERTMANAGER_CONFIG}", f"--verify.receivers={receiver}",
                 *labels.split())
    assert_ok(result)
    assert result.stdout.strip() == receiver


RECEIVER_BY_TEAM_SEVERITY = {
    ("platform", "page"): "platform-oncall-pager",
    ("platform", "ticket"): "platform-tickets",
    ("support", "page"): "messaging-lead-pager",  # channel=whatsapp below
    ("support", "ticket"): "messaging-lead-tickets",
}


def test_every_alert_rule_reaches_a_named_receiver() -> None:
    for rule in alert_rules():
        labels = {"alertname": rule["alert"], "channel": "whatsapp", **rule["labels"]}
        result = run(tool("amtool"), "config", "routes", "test",
                     f"--config.file={ALERTMANAGER_CONFIG}",
                     *(f"{k}={v}" for k, v in labels.items()))
        assert_ok(result)
        expected = RECEIVER_BY_TEAM_SEVERITY[labels["team"], labels["severity"]]
        assert result.stdout.strip() == expected, rule["alert"]


# -- inhibition, against a real Alertmanager ---------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _request(url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = tool("prometheus-alertmanager", "alertmanager")
    port = _free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={ALERTMANAGER_CONFIG}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {process.stderr.read()}"
                                if process.stderr else "alertmanager did not start")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def _alert(**labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"labels": labels, "annotations": {"summary": "test"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}


def _inhibited(url: str) -> dict[tuple[str, str], bool]:
    alerts = _request(f"{url}/api/v2/alerts")
    return {(a["labels"]["alertname"], a["labels"].get("channel", a["labels"].get("reason", ""))):
            bool(a["status"]["inhibitedBy"]) for a in alerts}


def _wait_for(url: str, expected: dict[tuple[str, str], bool]) -> None:
    deadline = time.monotonic() + 15
    while True:
        got = _inhibited(url)
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == expected


def test_inhibition(alertmanager: str) -> None:
    sla = {"team": "support", "policy": "p", "metric": "first_response"}
    _request(f"{alertmanager}/api/v2/alerts", [
        _alert(alertname="MsgkpiSlaBurnRateFast", severity="page", channel="whatsapp", **sla),
        _alert(alertname="MsgkpiSlaBurnRateSlow", severity="ticket", channel="whatsapp", **sla),
        _alert(alertname="MsgkpiSlaBurnRateSlow", severity="ticket", channel="telegram", **sla),
        _alert(alertname="MsgkpiSlaBreach", severity="ticket", channel="line", **sla),
        _alert(alertname="MsgkpiGatewayErrors", severity="page", team="platform",
               channel="line"),
    ])
    # a page silences the slow-burn ticket of the same channel/policy/metric only
    _wait_for(alertmanager, {
        ("MsgkpiSlaBurnRateFast", "whatsapp"): False,
        ("MsgkpiSlaBurnRateSlow", "whatsapp"): True,
        ("MsgkpiSlaBurnRateSlow", "telegram"): False,
        ("MsgkpiSlaBreach", "line"): False,
        ("MsgkpiGatewayErrors", "line"): False,
    })
    _request(f"{alertmanager}/api/v2/alerts", [
        _alert(alertname="MsgkpiWorkerDown", severity="page", team="platform"),
        _alert(alertname="MsgkpiNoEvents", severity="ticket", team="platform",
               reason="no_events"),
    ])
    # a worker that is down silences every SLA alert and the no-events ticket it causes
    _wait_for(alertmanager, {
        ("MsgkpiSlaBurnRateFast", "whatsapp"): True,
        ("MsgkpiSlaBurnRateSlow", "whatsapp"): True,
        ("MsgkpiSlaBurnRateSlow", "telegram"): True,
        ("MsgkpiSlaBreach", "line"): True,
        ("MsgkpiGatewayErrors", "line"): False,
        ("MsgkpiWorkerDown", ""): False,
        ("MsgkpiNoEvents", "no_events"): True,
    })
