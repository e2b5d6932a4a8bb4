"""The simulator's native transport: every encoded delivery passes the real adapter of its
channel, and what the adapter reads back is the simulated event, as far as the platform can
carry it."""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from processor.channels.base import ChannelAdapter, Normalized, WebhookRequest
from processor.channels.canonical import CanonicalAdapter
from processor.channels.registry import build_adapters
from processor.config import CHANNELS, Settings
from processor.events import Author, ConversationEvent, EventType, Resolution
from processor.gateway.app import create_app
from processor.traffic.native import NativeEncoder, default_transport, missing_secrets
from processor.traffic.scenario import Scenario, ScheduledEvent, generate_events
from processor.traffic.simulate import add_arguments, run_simulation
from processor.traffic.transport import HttpRequest, LiveOptions, run_live

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
META = ("whatsapp", "messenger", "instagram")
SECRETS = {c: f"test-secret-{c}-Zq9" for c in CHANNELS}
TOKENS = {c: f"verify-{c}" for c in META}
SETTINGS = Settings(secrets=SECRETS, verify_tokens=TOKENS)
SECONDS_CHANNELS = {"whatsapp", "telegram", "wechat"}

M_CUSTOMER = ("message", "customer")
M_AGENT = ("message", "agent")
M_BOT = ("message", "bot")
NOTE = ("note", "agent")
NATIVE: dict[str, set[tuple[str, str]]] = {
    "whatsapp": {M_CUSTOMER, M_AGENT, M_BOT},
    "messenger": {M_CUSTOMER, M_AGENT, M_BOT, ("handoff", ""), ("assigned", "")},
    "instagram": {M_CUSTOMER, M_AGENT, M_BOT, ("handoff", ""), ("assigned", "")},
    "telegram": {M_CUSTOMER, M_AGENT, M_BOT},
    "line": {M_CUSTOMER},
    "wechat": {M_CUSTOMER, ("assigned", ""), ("resolved", "")},
    "x": {M_CUSTOMER, M_AGENT},
    "chatwoot": {M_CUSTOMER, M_AGENT, M_BOT, NOTE, ("handoff", ""), ("assigned", ""),
                 ("resolved", ""), ("reopened", ""), ("csat", ""), ("tagged", "")},
}
"""Which canonical (type, author) each channel expresses natively (the module doc's table)."""


def kind(event: ConversationEvent) -> tuple[str, str]:
    if event.private:
        return NOTE
    return (event.type.value, event.author.value if event.author else "")


def adapters(settings: Settings = SETTINGS) -> dict[str, ChannelAdapter]:
    found = build_adapters(settings, logging.getLogger("test"))
    found["canonical"] = CanonicalAdapter(settings.secrets.get("canonical"))
    return found


def as_webhook(request: HttpRequest, received_at_ms: int) -> tuple[str, WebhookRequest]:
    url = urlsplit(request.path)
    channel = url.path.rsplit("/", 1)[1]
    return channel, WebhookRequest(
        method="POST", path=url.path, query=dict(parse_qsl(url.query)),
        headers=dict(request.headers), body=request.body, received_at_ms=received_at_ms)


def deliver(found: dict[str, ChannelAdapter], request: HttpRequest,
            received_at_ms: int) -> tuple[str, Normalized]:
    channel, hook = as_webhook(request, received_at_ms)
    adapter = found[channel]
    adapter.verify(hook)
    return channel, adapter.normalize(hook)


def stream(channels: Sequence[str], minutes: float, seed: int = 3,
           rate: float = 0.5) -> list[ScheduledEvent]:
    scenario = Scenario(seed=seed, start_ms=START, run_id=f"n{seed}", channels=tuple(channels),
                        conversations_per_s=rate)
    end = START + int(minutes * 60_000)
    return list(itertools.takewhile(lambda s: s.send_at_ms < end, generate_events(scenario)))


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def expected_agent(encoder: NativeEncoder, event: ConversationEvent) -> str | None:
    """The agent id the channel's adapter reports for a natively sent event."""
    channel, agent = event.channel, event.agent_id
    thread = encoder.thread(event)
    if event.type is EventType.MESSAGE and event.author is Author.CUSTOMER:
        return None
    if channel == "x":
        return "unknown"  # X does not say who typed a DM
    if channel == "chatwoot" and event.type in (EventType.RESOLVED, EventType.REOPENED,
                                                EventType.CSAT, EventType.TAGGED):
        return None  # these Chatwoot events name no agent
    assert agent is not None
    return encoder.agent_as_seen(channel, agent, bot=event.author is Author.BOT, thread=thread)


def expected_time(event: ConversationEvent, clock_s: float) -> int:
    if event.channel == "chatwoot" and event.type is EventType.CSAT:
        return int(clock_s) * 1000  # the signed delivery time
    if event.channel in SECONDS_CHANNELS:
        return event.occurred_at_ms // 1000 * 1000
    return event.occurred_at_ms


# --- per channel: one event per delivery --------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_event_passes_its_adapter_and_reads_back_as_simulated(channel: str) -> None:
    clock = Clock(START / 1000)
    encoder = NativeEncoder(SETTINGS, clock=clock)
    found = adapters()
    native: Counter[tuple[str, str]] = Counter()
    fallback: Counter[tuple[str, str]] = Counter()
    threads: dict[str, set[str]] = defaultdict(set)
    for item in stream([channel], minutes=240, rate=0.05):
        event = item.event
        clock.now_s = event.occurred_at_ms / 1000
        (request,) = encoder.encode([event])
        assert request.events == (event,)
        path, normalized = deliver(found, request, event.occurred_at_ms)
        assert normalized.ignored == 0
        (got,) = normalized.events
        thread = encoder.thread(event)
        threads[event.conversation_id].add(got.conversation_id)
        assert got.conversation_id == thread.conversation_id
        assert (got.account_id, got.customer_id) == (thread.account, thread.customer)
        assert (got.type, got.author, got.private) == (event.type, event.author, event.private)
        assert got.channel == channel
        if path == "canonical":
            fallback[kind(event)] += 1
            assert got.event_id == event.event_id
            assert got.occurred_at_ms == expected_time(event, 0)
            want_agent = None if event.agent_id is None else encoder.agent_as_seen(
                channel, event.agent_id, bot=event.author is Author.BOT or "-bot-" in
                event.agent_id, thread=thread)
            assert got.agent_id == want_agent
            assert (got.resolution, got.tags, got.score) == (
                event.resolution, event.tags, event.score)
            continue
        assert path == channel
        native[kind(event)] += 1
        assert got.event_id.startswith(f"{channel}:{thread.account}:")
        assert got.occurred_at_ms == expected_time(event, clock.now_s)
        assert got.agent_id == expected_agent(encoder, event), event
        if event.type is EventType.CSAT:
            assert (got.score, got.scale) == (event.score, 5)
        if event.type is EventType.TAGGED:
            assert got.tags == event.tags
    assert set(native) == NATIVE[channel], "the channel's native forms"
    # Each simulated conversation is exactly one platform thread, and no two share one.
    assert all(len(ids) == 1 for ids in threads.values())
    assert len({next(iter(ids)) for ids in threads.values()}) == len(threads)


def test_a_batch_is_grouped_per_platform_and_every_event_arrives_exactly_once() -> None:
    now_s = START / 1000 + 300
    encoder = NativeEncoder(SETTINGS, as_array=True, clock=Clock(now_s))
    found = adapters()
    events = [s.event for s in stream(CHANNELS, minutes=10, seed=9, rate=1.0)]
    per_path: Counter[str] = Counter()
    carried: list[ConversationEvent] = []
    received = 0
    for start in range(0, len(events), 60):
        batch = events[start:start + 60]
        requests = encoder.encode(batch)
        assert sorted(e.event_id for r in requests for e in r.events) == sorted(
            e.event_id for e in batch)
        for request in requests:
            path, normalized = deliver(found, request, int(now_s * 1000))
            per_path[path] += 1
            assert len(normalized.events) == len(request.events)
            assert normalized.ignored == 0
            received += len(normalized.events)
            carried.extend(request.events)
            if path in ("telegram", "wechat", "chatwoot"):
                assert len(request.events) == 1  # one update per POST on these platforms
    assert received == len(events) == len(carried)
    assert set(per_path) == {*CHANNELS, "canonical"}
    # Several events per delivery where the platform allows it.
    assert per_path["whatsapp"] < sum(1 for e in events if e.channel == "whatsapp")


def test_whatsapp_agent_reply_is_a_sent_status_with_the_agent_marker() -> None:
    encoder = NativeEncoder(SETTINGS, clock=Clock(START / 1000))
    messages = [s.event for s in stream(["whatsapp"], 60, seed=5, rate=0.05)
                if s.event.type is EventType.MESSAGE and not s.event.private]
    customer = next(e for e in messages if e.author is Author.CUSTOMER)
    reply = next(e for e in messages if e.author is Author.AGENT)
    (request,) = encoder.encode([customer, reply])
    value = orjson.loads(request.body)["entry"][0]["changes"][0]["value"]
    assert [m["type"] for m in value["messages"]] == ["text"]
    (status,) = value["statuses"]
    assert status["status"] == "sent"
    assert status["biz_opaque_callback_data"] == f"{reply.author}:{reply.agent_id}"
    assert b"\\u" in request.body or request.body.isascii()  # Meta's ASCII-only JSON


# --- fallbacks ------------------------------------------------------------------------------------


def test_channels_without_their_secret_go_canonical_unchanged_with_one_warning() -> None:
    settings = Settings(secrets={"whatsapp": "s1", "messenger": "s2", "line": "s3"},
                        verify_tokens={"whatsapp": "t1"})
    warnings: list[str] = []
    encoder = NativeEncoder(settings, warn=warnings.append, clock=Clock(START / 1000))
    assert encoder.native_channels == {"whatsapp", "line"}
    events = [s.event for s in stream(["messenger", "telegram", "line"], 30, seed=2)]
    sent: list[dict[str, Any]] = []
    for chunk in (events[: len(events) // 2], events[len(events) // 2:]):
        for request in encoder.encode(chunk):
            if request.path == "/webhooks/canonical":
                body = orjson.loads(request.body)
                sent.extend(body if isinstance(body, list) else [body])
    plain = [e.to_dict() for e in events if e.channel in ("messenger", "telegram")]
    assert [d for d in sent if d["channel"] in ("messenger", "telegram")] == plain
    assert sorted(warnings) == [
        "channel messenger: MSGKPI_MESSENGER_VERIFY_TOKEN not set; its events go to "
        "/webhooks/canonical",
        "channel telegram: MSGKPI_TELEGRAM_SECRET not set; its events go to /webhooks/canonical",
    ]


def test_fallback_requests_carry_the_canonical_bearer_token() -> None:
    settings = Settings(secrets={**SECRETS, "canonical": "bearer-1"}, verify_tokens=TOKENS)
    encoder = NativeEncoder(settings, clock=Clock(START / 1000))
    resolved = next(s.event for s in stream(["line"], 60, seed=4, rate=0.1)
                    if s.event.type is EventType.RESOLVED)
    (request,) = encoder.encode([resolved])
    assert request.path == "/webhooks/canonical"
    assert request.headers["Authorization"] == "Bearer bearer-1"
    _, normalized = deliver(adapters(settings), request, START)
    assert normalized.events[0].resolution in tuple(Resolution)


def test_default_transport_is_native_only_when_every_channel_has_its_secret() -> None:
    assert default_transport(SETTINGS, CHANNELS) == "native"
    assert default_transport(Settings(), ["line"]) == "canonical"
    no_token = Settings(secrets={"whatsapp": "s"})
    assert missing_secrets(no_token, "whatsapp") == ["MSGKPI_WHATSAPP_VERIFY_TOKEN"]
    assert default_transport(no_token, ["whatsapp"]) == "canonical"
    assert default_transport(SETTINGS, ["line", "myhelpdesk"]) == "canonical"
    assert default_transport(Settings(secrets={"line": " , "}), ["line"]) == "canonical"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_transport_option_selects_the_native_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse().transport is None
    assert parse("--transport", "native").transport == "native"
    with pytest.raises(SystemExit):
        parse("--transport", "smoke-signals")
    chosen: list[object] = []

    async def fake_live_main(*args: Any) -> Any:
        chosen.append(args[-1])
        from processor.traffic.transport import SendStats
        return SendStats()

    monkeypatch.setattr("processor.traffic.simulate._live_main", fake_live_main)
    run_simulation(SETTINGS, parse("--duration", "0.1", "--progress", "0"))
    run_simulation(SETTINGS, parse("--duration", "0.1", "--transport", "canonical"))
    run_simulation(Settings(), parse("--duration", "0.1"))
    assert [type(e).__name__ for e in chosen] == ["NativeEncoder", "NoneType", "NoneType"]


# --- live, through the real gateway app --------------------------------------------------------


@dataclass
class MemorySink:
    events: list[ConversationEvent] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, events: Sequence[ConversationEvent]) -> None:
        self.events.extend(events)

    async def ready(self) -> bool:
        return True


async def test_live_native_traffic_is_accepted_by_the_gateway_with_nothing_ignored() -> None:
    sink = MemorySink()
    registry = CollectorRegistry()
    app = create_app(SETTINGS, sink, adapters(), registry)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        start_ms = int(time.time() * 1000)
        scenario = Scenario(seed=21, start_ms=start_ms, run_id="live", conversations_per_s=1.0)
        stats = await run_live(
            generate_events(scenario), start_ms=start_ms,
            gateway=str(server.make_url("")).rstrip("/"),
            options=LiveOptions(speed=60, duration_s=2.0, batch=4, progress_s=0),
            encoder=NativeEncoder(SETTINGS, as_array=True))
    finally:
        await server.close()
    assert stats.generated > 50
    assert (stats.rejected, stats.failed, stats.first_error) == (0, 0, None)
    assert stats.delivered == stats.generated == len(sink.events)
    by_channel = Counter(e.channel for e in sink.events)
    assert set(by_channel) == set(CHANNELS)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for m in registry.collect() for s in m.samples}
    native = sum(v for (name, labels), v in samples.items()
                 if name == "msgkpi_gateway_events_total" and ("channel", "canonical")
                 not in labels)
    ignored = sum(v for (name, _), v in samples.items() if name == "msgkpi_gateway_ignored_total")
    assert native > stats.generated / 2
    assert ignored == 0
