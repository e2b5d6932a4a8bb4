"""End to end on the real broker: scripted conversations posted to a real `msgkpi gateway` are
processed by a real `msgkpi worker`; its /metrics must show exactly the KPIs the script implies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.services import Deployment, Service, free_port, http_post, wait_until

pytestmark = pytest.mark.integration

T0 = (int(time.time()) - 7200) * 1000


def event(event_id: str, conversation: str, channel: str, at_s: float, kind: str = "message",
          **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id, "type": kind, "channel": channel, "conversation_id": conversation,
        "occurred_at": T0 + int(at_s * 1000), **fields,
    }


def script() -> list[dict[str, Any]]:
    """Conversations whose KPIs are worked out by hand in the expectations below."""
    wa, ms, tg, ig = "whatsapp", "messenger", "telegram", "instagram"
    return [
        # c1: two cycles. Cycle 1: FRT 120 (ana), replies 120 (ana) and 120 (bob, from the
        # oldest of two waiting messages), resolved at 600 -> resolution 600.
        event("c1-1", "c1", wa, 0, author="customer"),
        event("c1-2", "c1", wa, 120, author="agent", agent_id="ana"),
        event("c1-3", "c1", wa, 300, author="customer"),
        event("c1-4", "c1", wa, 360, author="customer"),
        event("c1-5", "c1", wa, 420, author="agent", agent_id="bob"),
        event("c1-6", "c1", wa, 600, "resolved", agent_id="ana"),
        # Cycle 2 (the customer writes again): FRT 30 (ana), resolution 100.
        event("c1-7", "c1", wa, 1000, author="customer"),
        event("c1-8", "c1", wa, 1030, author="agent", agent_id="ana"),
        event("c1-9", "c1", wa, 1100, "resolved"),  # no agent_id and no assignee: "unknown"
        # c2: a bot answers first (bot FRT 5), hands off at 60; the human FRT and reply count
        # from the handoff: 90 - 60 = 30.
        event("c2-1", "c2", ms, 0, author="customer"),
        event("c2-2", "c2", ms, 5, author="bot", agent_id="helperbot"),
        event("c2-3", "c2", ms, 60, "handoff", agent_id="carl"),
        event("c2-4", "c2", ms, 90, author="agent", agent_id="carl"),
        # c3: a private note never counts; resolved as no_reply_needed: no resolution time.
        event("c3-1", "c3", tg, 0, author="customer"),
        event("c3-2", "c3", tg, 10, author="agent", agent_id="dora", private=True),
        event("c3-3", "c3", tg, 50, "resolved", resolution="no_reply_needed"),
        # c4: still waiting.
        event("c4-1", "c4", tg, 0, author="customer"),
        # c5: an agent message in an unknown conversation: volume only, no clock.
        event("c5-1", "c5", ig, 0, author="agent", agent_id="erin"),
        # c6: delivered out of order: the reply arrives before the message it answers.
        event("c6-2", "c6", wa, 100, author="agent", agent_id="dan"),
        event("c6-1", "c6", wa, 40, author="customer"),
    ]


EXPECTED = {
    ("msgkpi_first_response_seconds_count", (("channel", "whatsapp"), ("responder", "agent"))): 3,
    ("msgkpi_first_response_seconds_sum", (("channel", "whatsapp"), ("responder", "agent"))): 210,
    ("msgkpi_first_response_seconds_sum", (("channel", "messenger"), ("responder", "agent"))): 30,
    ("msgkpi_first_response_seconds_sum", (("channel", "messenger"), ("responder", "bot"))): 5,
    ("msgkpi_first_response_seconds_bucket",
     (("channel", "whatsapp"), ("le", "60.0"), ("responder", "agent"))): 2,
    ("msgkpi_reply_seconds_count", (("channel", "whatsapp"), ("responder", "agent"))): 4,
    ("msgkpi_reply_seconds_sum", (("channel", "whatsapp"), ("responder", "agent"))): 330,
    ("msgkpi_reply_seconds_sum", (("channel", "messenger"), ("responder", "agent"))): 30,
    ("msgkpi_reply_seconds_sum", (("channel", "messenger"), ("responder", "bot"))): 5,
    ("msgkpi_resolution_seconds_count", (("channel", "whatsapp"),)): 2,
    ("msgkpi_resolution_seconds_sum", (("channel", "whatsapp"),)): 700,
    ("msgkpi_resolution_seconds_count", (("channel", "telegram"),)): 0,
    ("msgkpi_handle_seconds_sum", (("channel", "whatsapp"),)): 480 + 70,
    ("msgkpi_messages_total", (("author", "customer"), ("channel", "whatsapp"))): 5,
    ("msgkpi_messages_total", (("author", "agent"), ("channel", "whatsapp"))): 4,
    ("msgkpi_messages_total", (("author", "bot"), ("channel", "messenger"))): 1,
    ("msgkpi_messages_total", (("author", "customer"), ("channel", "telegram"))): 2,
    ("msgkpi_messages_total", (("author", "agent"), ("channel", "telegram"))): 0,
    ("msgkpi_messages_total", (("author", "agent"), ("channel", "instagram"))): 1,
    ("msgkpi_cycles_total", (("channel", "whatsapp"), ("event", "opened"))): 3,
    ("msgkpi_cycles_total", (("channel", "whatsapp"), ("event", "resolved"))): 2,
    ("msgkpi_cycles_total", (("channel", "telegram"), ("event", "opened"))): 2,
    ("msgkpi_cycles_total", (("channel", "telegram"), ("event", "resolved"))): 1,
    ("msgkpi_cycles_total", (("channel", "instagram"), ("event", "opened"))): 0,
    ("msgkpi_cycles_resolved_without_reply_total",
     (("channel", "telegram"), ("resolution", "no_reply_needed"))): 1,
    ("msgkpi_agent_first_responses_total", (("agent", "ana"), ("channel", "whatsapp"))): 2,
    ("msgkpi_agent_first_response_seconds_total", (("agent", "ana"), ("channel", "whatsapp"))): 150,
    ("msgkpi_agent_first_response_seconds_total", (("agent", "dan"), ("channel", "whatsapp"))): 60,
    ("msgkpi_agent_first_responses_total", (("agent", "carl"), ("channel", "messenger"))): 1,
    ("msgkpi_agent_replies_total", (("agent", "ana"), ("channel", "whatsapp"))): 2,
    ("msgkpi_agent_replies_total", (("agent", "bob"), ("channel", "whatsapp"))): 1,
    ("msgkpi_agent_resolutions_total", (("agent", "ana"), ("channel", "whatsapp"))): 1,
    ("msgkpi_agent_resolutions_total", (("agent", "unknown"), ("channel", "whatsapp"))): 1,
    ("msgkpi_awaiting_reply", (("channel", "telegram"),)): 1,
    ("msgkpi_worker_duplicates_total", ()): 1,
    ("msgkpi_worker_reordered_events_total", ()): 1,
    ("msgkpi_worker_dlq_total", (("reason", "invalid"),)): 0,
}


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    deployment = Deployment(kafka_bootstrap)
    gateway = Service(deployment, "gateway", free_port(), tmp_path)
    worker = Service(deployment, "worker", free_port(), tmp_path)
    try:
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        yield gateway, worker
    finally:
        worker.stop()
        gateway.stop()


def test_scripted_conversations_give_exact_metrics(pipeline: tuple[Service, Service]) -> None:
    gateway, worker = pipeline
    events = script()
    status, body = http_post(f"{gateway.url}/webhooks/canonical", orjson.dumps(events[:10]))
    assert status == 200, body
    for one in events[10:]:
        status, body = http_post(f"{gateway.url}/webhooks/canonical", orjson.dumps(one))
        assert status == 200, body
    status, body = http_post(f"{gateway.url}/webhooks/canonical", orjson.dumps(events[0]))
    assert status == 200, body
    total = len(events) + 1

    wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= total, 90,
               what=f"{total} events processed; worker log:\n{worker.log_tail()}")
    metrics = worker.metrics()
    assert metrics[("msgkpi_worker_events_total", frozenset())] == total
    wrong = {
        (name, labels): (metrics.get((name, frozenset(labels)), 0.0), want)
        for (name, labels), want in EXPECTED.items()
        if metrics.get((name, frozenset(labels)), 0.0) != want
    }
    assert wrong == {}, "(got, want) per sample"
    assert gateway.sample("msgkpi_gateway_events_total", channel="canonical") == total


def test_invalid_post_is_rejected_whole_and_nothing_reaches_the_worker(
    pipeline: tuple[Service, Service],
) -> None:
    gateway, worker = pipeline
    good = event("ok-1", "z1", "line", 0, author="customer")
    bad = event("bad-1", "z1", "line", 5, author="robot")
    status, body = http_post(f"{gateway.url}/webhooks/canonical", orjson.dumps([good, bad]))
    assert status == 400
    assert b"author" in body and b"[1]" in body
    status, _ = http_post(f"{gateway.url}/webhooks/canonical", orjson.dumps(
        event("ok-2", "z2", "line", 0, author="customer")))
    assert status == 200
    wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= 1, 60, what="one event")
    time.sleep(1.0)
    assert worker.sample("msgkpi_worker_events_total") == 1
    assert worker.sample("msgkpi_messages_total", channel="line", author="customer") == 1
