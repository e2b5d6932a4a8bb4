"""The Grafana dashboards of deploy/grafana against the real thing (there is no Grafana here; what
Grafana would send to Prometheus is checked instead).

Static: both dashboards are valid JSON with unique panel ids and non-overlapping grid
positions, every data source is the provisioned one (by uid), every panel has targets with an
expr, every template variable used is defined. Live, on the real broker: a gateway and a worker
with deploy/msgkpi.yaml as policy file, scraped every second by Debian's `prometheus` with the
rule files of deploy/prometheus/rules (started as tests/e2e/test_alerting.py does); traffic from
the simulator's scenario generator (the last 30 minutes, posted as canonical events) plus a few
events for the rarer series (NPS, clock skew, late, duplicate, reordered, an invalid request,
a record with the wrong key for the DLQ, a WhatsApp customer waiting for 23.5 h). Then:

* every metric name an expr or variable query reads exists on the worker's or the gateway's
  /metrics, or is a recording rule (or Prometheus's own `up`);
* every expr, with the template variables substituted as Grafana would, evaluates in Prometheus
  via /api/v1/query without error; the core panels (first response time, messages, reply
  rate, events processed) return data, and so does every other expr but the gateway's 5xx
  ratio (no 5xx here).

Test-only settings: MSGKPI_REOPEN_WINDOW_S=60 (FCR is decided 60 s after a resolution instead of
72 h, so the FCR ratio has data) and MSGKPI_SNAPSHOT_INTERVAL_S=1 (window gauges refresh every
second).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from aiokafka import AIOKafkaProducer

from processor.traffic.scenario import Scenario, generate_events
from tests.e2e.test_alerting import Process, binary, prometheus_config
from tests.integration.services import (
    REPO_ROOT,
    Deployment,
    Service,
    free_port,
    http_get,
    http_post,
    wait_until,
)
from tests.integration.test_sla_live import message, now_ms, post, warm_up

pytestmark = pytest.mark.e2e

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "msgkpi.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "msgkpi.yaml"
POLICY_FILE = REPO_ROOT / "deploy" / "msgkpi.yaml"
RULES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

PROMETHEUS_SERIES = frozenset({"up"})
"""Series Prometheus makes itself for every target."""
CORE_METRICS = frozenset({"msgkpi_window_first_response_seconds", "msgkpi_window_messages",
                          "msgkpi_window_reply_rate", "msgkpi_worker_events_total"})
"""Every expr reading one of these must return data once traffic has flowed."""
MAY_BE_EMPTY = frozenset({"channel:msgkpi_gateway_errors:ratio_rate5m"})
"""Exprs reading these may return nothing here: the gateway answers 5xx only if /readyz was
polled before Kafka was ready. Every other expr must return data after this traffic (a wrong
label value or aggregation shows up as no data)."""
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
SUBSTITUTED_WINDOW = "5m"
SUBSTITUTED_POLICY = "whatsapp-24-7"
SUBSTITUTED_AGENT = ".+-agent-.+"
"""The simulator's human agents are named <channel>-agent-<name>."""

# PromQL words that look like metric names.
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "group", "stddev",
    "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$")


# --------------------------------------------------------------------------------------------
# Reading the dashboards
# --------------------------------------------------------------------------------------------

def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, and the panels of collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard) if p["type"] != "row"]


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r} / {self.ref}: {self.expr}"


def queries() -> list[Query]:
    found = []
    for path in DASHBOARDS:
        for panel in data_panels(load(path)):
            for target in panel.get("targets", []):
                found.append(Query(path.name, panel["title"], target.get("refId", "?"),
                                   target.get("expr", "")))
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard, variable, query) of every query variable."""
    found = []
    for path in DASHBOARDS:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                found.append((path.name, variable["name"], text))
    return found


def provisioned_uid() -> str:
    config = yaml.safe_load(DATASOURCES.read_text())
    (datasource,) = config["datasources"]
    uid: str = datasource["uid"]
    return uid


def datasource_refs(node: Any) -> Iterator[Any]:
    """Every value of a "datasource" key, anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's interpolation of $var, ${var}, ${var:format} and [[var]]."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise AssertionError(f"undefined variable ${name} in {expr}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, label names and
    durations left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def label_values_selector(query: str) -> tuple[str, str]:
    """`label_values(selector, label)` -> (selector, label)."""
    match = _LABEL_VALUES.match(query)
    assert match and match.group(1), f"not label_values(metric, label): {query}"
    return match.group(1), match.group(2)


def recording_rules() -> set[str]:
    names: set[str] = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


# --------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------

def test_dashboards_and_provisioning_are_well_formed() -> None:
    assert [p.name for p in DASHBOARDS] == ["msgkpi-pipeline.json", "msgkpi-support-kpis.json"]
    uid = provisioned_uid()
    datasources = yaml.safe_load(DATASOURCES.read_text())
    assert datasources["apiVersion"] == 1
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["access"] == "proxy"
    assert re.fullmatch(r"\$\{?MSGKPI_PROMETHEUS_URL\}?", datasource["url"]), datasource["url"]
    providers = yaml.safe_load(PROVIDERS.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert re.fullmatch(r"\$\{?MSGKPI_GRAFANA_DASHBOARDS\}?", provider["options"]["path"])

    policies = {policy["name"] for policy in yaml.safe_load(POLICY_FILE.read_text())["policies"]}
    assert SUBSTITUTED_POLICY in policies

    uids = set()
    for path in DASHBOARDS:
        dashboard = load(path)
        name = path.name
        assert dashboard["uid"] and dashboard["uid"] not in uids, name
        uids.add(dashboard["uid"])
        assert dashboard["title"] and dashboard["schemaVersion"] >= 36, name
        panels = all_panels(dashboard)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        assert all(isinstance(i, int) for i in ids), name
        refs = list(datasource_refs(dashboard))
        assert refs, name
        for ref in refs:
            assert ref == {"type": "prometheus", "uid": uid}, f"{name}: data source {ref}"
        # No two panels on the same grid cells.
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            for x, y in itertools.product(range(pos["x"], pos["x"] + pos["w"]),
                                          range(pos["y"], pos["y"] + pos["h"])):
                assert (x, y) not in cells, f"{name}: {panel['title']!r} overlaps {cells[x, y]!r}"
                cells[x, y] = panel["title"]
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        defined |= set(GRAFANA_INTERVALS)
        for panel in data_panels(dashboard):
            targets = panel.get("targets", [])
            assert targets, f"{name}: {panel['title']!r} has no targets"
            assert panel.get("datasource"), (name, panel["title"])
            assert len({t["refId"] for t in targets}) == len(targets), (name, panel["title"])
            for target in targets:
                assert target.get("expr", "").strip(), f"{name}: {panel['title']!r} no expr"
                substitute(target["expr"], dict.fromkeys(defined, "x"))  # undefined -> error
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                label_values_selector(variable["definition"])


# --------------------------------------------------------------------------------------------
# A real gateway, worker and Prometheus, with traffic
# --------------------------------------------------------------------------------------------

@dataclass
class Live:
    gateway: Service
    worker: Service
    prometheus_url: str
    exposed: set[str]
    """Series names on the worker's and the gateway's /metrics after the traffic."""
    channels: list[str]

    def evaluate(self, expr: str) -> tuple[bool, Any]:
        """(True, result) or (False, Prometheus's error)."""
        url = f"{self.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
        status, body = http_get(url, timeout=10)
        answer = json.loads(body) if body else {}
        if status == 200 and answer.get("status") == "success":
            return True, answer["data"]["result"]
        return False, f"HTTP {status}: {answer.get('error', body[:300])}"

    def values(self) -> dict[str, str]:
        return {"channel": "|".join(self.channels), "window": SUBSTITUTED_WINDOW,
                "policy": SUBSTITUTED_POLICY, "agent": SUBSTITUTED_AGENT, **GRAFANA_INTERVALS}


def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def drive_traffic(deployment: Deployment, gateway: Service) -> int:
    """The simulator's last 30 minutes, plus events for the rarer series; returns how many
    records went to the events topic."""
    now = now_ms()
    stream = generate_events(Scenario(seed=11, start_ms=now - 30 * 60_000,
                                      run_id=f"dash-{uuid.uuid4().hex[:6]}",
                                      conversations_per_s=0.2))
    events = [item.event.to_dict()
              for item in itertools.takewhile(lambda item: item.send_at_ms < now, stream)]
    for start in range(0, len(events), 250):
        status, body = http_post(f"{gateway.url}/webhooks/canonical",
                                 orjson.dumps(events[start:start + 250]))
        assert status == 200, body
    tag = uuid.uuid4().hex[:6]
    nps = message(f"nps-{tag}", "customer", now - 120_000, "telegram")
    skew = [message(f"skew-{tag}", "customer", now - 20 * 60_000, "messenger"),
            message(f"skew-{tag}", "customer", now - 60_000, "messenger")]
    extra = [
        # A WhatsApp customer waiting 23.5 h: the 24 h window closes within the hour, and the
        # 15 min first-response target of whatsapp-24-7 is breached.
        message(f"wa-waiting-{tag}", "customer", now - 23 * 3_600_000 - 30 * 60_000),
        nps, {"event_id": uuid.uuid4().hex, "type": "csat", "channel": "telegram",
              "conversation_id": nps["conversation_id"], "occurred_at": now - 60_000,
              "score": 10, "scale": 10},
        *skew, skew[1],  # the second one again: a duplicate
        message(f"reorder-{tag}", "customer", now - 30_000, "instagram"),
    ]
    post(gateway, *extra)
    # Late (its conversation's checkpoint is past it), and a reply stamped before what it
    # answers: clock skew. Out of order within the grace period: reordered.
    post(gateway, message(f"skew-{tag}", "agent", now - 25 * 60_000, "messenger", agent_id="ana"),
         message(f"reorder-{tag}", "agent", now - 40_000, "instagram", agent_id="ben"))
    status, _ = http_post(f"{gateway.url}/webhooks/canonical", b'{"event_id": "no-type"}')
    assert status == 400
    wrong_key = message(f"dlq-{tag}", "customer", now, "line")
    produce(deployment.bootstrap, f"{deployment.env()['MSGKPI_TOPIC_PREFIX']}.events",
            b"not-the-conversation", orjson.dumps(wrong_key))
    return len(events) + len(extra) + 2 + 1


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp_path = tmp_path_factory.mktemp("dashboards")
    deployment = Deployment(kafka_bootstrap, extra_env={
        "MSGKPI_CONFIG": str(POLICY_FILE), "MSGKPI_EVENTS_PARTITIONS": "3",
        "MSGKPI_REOPEN_WINDOW_S": "60", "MSGKPI_SNAPSHOT_INTERVAL_S": "1"})
    services: list[Service] = []
    prometheus: Process | None = None
    try:
        services.append(Service(deployment, "gateway", free_port(), tmp_path))
        services.append(Service(deployment, "worker", free_port(), tmp_path))
        gateway, worker = services
        config = prometheus_config(gateway.port, worker.port, alertmanager_port=0)
        del config["alerting"]  # no Alertmanager here
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_port = free_port()
        prometheus = Process([
            binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], tmp_path / "prometheus.log")
        prom_url = f"http://127.0.0.1:{prom_port}"
        prometheus.wait_ready(f"{prom_url}/-/ready")
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        warm_up(gateway, worker)
        live = Live(gateway, worker, prom_url, set(), [])
        # The breach counters (created at 0) are scraped before the traffic, so increase()
        # sees the breach.
        wait_until(lambda: bool(live.evaluate("msgkpi_sla_breaches_total")[1]), 30,
                   what="Prometheus to scrape the worker")
        before = worker.sample("msgkpi_worker_events_total")
        sent = drive_traffic(deployment, gateway)
        wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= before + sent, 60,
                   what=f"the worker to process {sent} records; log:\n{worker.log_tail()}")

        def gauges_published() -> bool:
            names = {name for name, _ in worker.metrics()}
            return {"msgkpi_window_fcr_ratio", "msgkpi_window_nps",
                    "msgkpi_window_first_response_seconds"} <= names

        wait_until(gauges_published, 30, what="the window gauges of the traffic")
        # A histogram series is born with its first observation, so Prometheus's first sample
        # of it already holds the whole burst above: rate() is 0 and the ratio rules that
        # divide by it (> 0) are empty. A few more first responses once it has been scraped.
        wait_until(lambda: bool(live.evaluate(
            'msgkpi_first_response_seconds_count{channel="whatsapp", responder="agent"}')[1]),
            30, what="Prometheus to scrape the first-response histogram")
        before = worker.sample("msgkpi_worker_events_total")
        now, tag = now_ms(), uuid.uuid4().hex[:6]
        post(gateway, *(event for channel in ("whatsapp", "telegram") for event in (
            message(f"more-{channel}-{tag}", "customer", now - 20_000, channel),
            message(f"more-{channel}-{tag}", "agent", now - 10_000, channel, agent_id="ana"))))
        wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= before + 4, 30,
                   what="the worker to process the first responses")
        worker_samples, gateway_samples = worker.metrics(), gateway.metrics()
        live.exposed = {name for name, _ in (*worker_samples, *gateway_samples)}
        live.channels = sorted({dict(labels)["channel"] for name, labels in worker_samples
                                if name == "msgkpi_messages_total"})
        yield live
    finally:
        if prometheus is not None:
            prometheus.stop()
        for service in reversed(services):
            service.stop()


def test_every_metric_name_exists(live: Live) -> None:
    known = live.exposed | recording_rules() | PROMETHEUS_SERIES
    missing = []
    for query in queries():
        names = metric_names(substitute(query.expr, live.values()))
        assert names, f"no metric name found in {query}"
        missing += [f"{name} in {query}" for name in sorted(names - known)]
    for dashboard, variable, text in variable_queries():
        selector, _ = label_values_selector(text)
        missing += [f"{name} in ${variable} of {dashboard}"
                    for name in sorted(metric_names(selector) - known)]
    assert not missing, "metric names that exist nowhere:\n" + "\n".join(missing)


def test_every_expr_evaluates_in_prometheus(live: Live) -> None:
    began = time.monotonic()
    values = live.values()
    all_queries = queries()
    core = [q for q in all_queries if metric_names(q.expr) & CORE_METRICS]
    assert {name for q in core for name in metric_names(q.expr)} >= CORE_METRICS

    errors: list[str] = []
    empty: list[Query] = []
    for query in all_queries:
        ok, result = live.evaluate(substitute(query.expr, values))
        if not ok:
            errors.append(f"{query}\n    -> {result}")
    assert not errors, "exprs Prometheus rejects:\n" + "\n".join(errors)

    # Data: a counter that first appeared with the traffic needs two scrapes before rate()
    # has a value, a recording rule one more evaluation; so wait for it, within a bound.
    def expected_data() -> bool:
        empty[:] = [q for q in all_queries if not live.evaluate(substitute(q.expr, values))[1]]
        return all(metric_names(q.expr) & MAY_BE_EMPTY for q in empty)

    with contextlib.suppress(AssertionError):  # on time-out, the assertions below say which
        wait_until(expected_data, 30, interval_s=0.5, what="data in the panels")
    assert not [q for q in empty if q in core], [str(q) for q in empty if q in core]
    unexpected = [str(q) for q in empty if not metric_names(q.expr) & MAY_BE_EMPTY]
    assert not unexpected, "exprs without data after the traffic:\n" + "\n".join(unexpected)

    # The variables' label_values() queries, as Prometheus series: each lists values.
    for dashboard, variable, text in variable_queries():
        selector, label = label_values_selector(text)
        ok, result = live.evaluate(f"group by ({label}) ({substitute(selector, values)})")
        assert ok and result, (dashboard, variable, result)
        print(f"${variable}: {sorted(r['metric'].get(label, '') for r in result)}")
    print(f"\n{len(all_queries)} exprs evaluated, with data after "
          f"{time.monotonic() - began:.1f} s; {len(empty)} without data (allowed):")
    for query in empty:
        print(f"  {query}")
