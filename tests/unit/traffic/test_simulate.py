"""The traffic simulator: the pure scenario generator, the transport and the command line."""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import socket
import statistics
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.config import CHANNELS, Settings
from processor.events import Author, ConversationEvent, EventType, Resolution, event_from_dict
from processor.traffic.scenario import Scenario, ScheduledEvent, generate_events
from processor.traffic.simulate import add_arguments, run_simulation
from processor.traffic.transport import LiveOptions, run_live

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def take_minutes(scenario: Scenario, minutes: float) -> list[ScheduledEvent]:
    end = scenario.start_ms + int(minutes * 60_000)
    return list(itertools.takewhile(lambda s: s.send_at_ms < end, generate_events(scenario)))


def by_conversation(items: list[ScheduledEvent]) -> dict[str, list[ConversationEvent]]:
    out: dict[str, list[ConversationEvent]] = defaultdict(list)
    for item in items:
        out[item.event.conversation_id].append(item.event)
    return out


@pytest.fixture(scope="module")
def ten_minutes() -> list[ScheduledEvent]:
    return take_minutes(Scenario(seed=42, start_ms=START, run_id="t1"), 10)


# -- generator --------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = take_minutes(Scenario(seed=7, start_ms=START), 3)
    b = take_minutes(Scenario(seed=7, start_ms=START), 3)
    c = take_minutes(Scenario(seed=8, start_ms=START), 3)
    assert a == b
    assert [s.event.to_dict() for s in a] == [s.event.to_dict() for s in b]
    assert a != c


def test_every_event_is_schema_valid_and_round_trips(ten_minutes: list[ScheduledEvent]) -> None:
    for item in ten_minutes:
        wire = orjson.loads(item.event.to_json())
        assert event_from_dict(wire) == item.event
        assert item.send_at_ms == item.event.occurred_at_ms


def test_stream_order_ids_and_conversation_shape(ten_minutes: list[ScheduledEvent]) -> None:
    times = [s.send_at_ms for s in ten_minutes]
    assert times == sorted(times)
    assert times[0] == START
    ids = [s.event.event_id for s in ten_minutes]
    assert len(ids) == len(set(ids))
    for cid, events in by_conversation(ten_minutes).items():
        channel = events[0].channel
        assert cid.startswith(f"t1-{channel}-")
        assert {e.channel for e in events} == {channel}
        first = events[0]
        assert first.type is EventType.MESSAGE and first.author is Author.CUSTOMER
        occurred = [e.occurred_at_ms for e in events]
        assert occurred == sorted(occurred)
    assert {s.event.channel for s in ten_minutes} == set(CHANNELS)


def test_small_agent_and_bot_pools_per_channel(ten_minutes: list[ScheduledEvent]) -> None:
    agents: dict[str, set[str]] = defaultdict(set)
    bots: dict[str, set[str]] = defaultdict(set)
    for s in ten_minutes:
        e = s.event
        if e.author is Author.AGENT and e.agent_id:
            agents[e.channel].add(e.agent_id)
        if e.author is Author.BOT and e.agent_id:
            bots[e.channel].add(e.agent_id)
    for channel in CHANNELS:
        assert 1 <= len(agents[channel]) <= 8
        assert 1 <= len(bots[channel]) <= 2
        assert all(a.startswith(f"{channel}-agent-") for a in agents[channel])


def test_a_few_minutes_contain_every_kind_of_event(ten_minutes: list[ScheduledEvent]) -> None:
    events = [s.event for s in ten_minutes]
    kinds = Counter((e.type, e.author) for e in events)
    assert kinds[(EventType.MESSAGE, Author.AGENT)] > 100
    assert kinds[(EventType.MESSAGE, Author.BOT)] > 20
    assert kinds[(EventType.HANDOFF, None)] > 10
    assert kinds[(EventType.ASSIGNED, None)] > 10
    assert kinds[(EventType.TAGGED, None)] > 10
    resolutions = Counter(e.resolution for e in events if e.type is EventType.RESOLVED)
    assert resolutions[Resolution.RESOLVED] > 50
    assert resolutions[Resolution.NO_REPLY_NEEDED] > 0
    assert resolutions[Resolution.SPAM] > 0
    csat = [e for e in events if e.type is EventType.CSAT]
    assert csat and all(e.scale == 5 and e.score is not None and 1 <= e.score <= 5 for e in csat)
    assert any(e.private for e in events)
    # handoffs go to human agents of that channel
    assert all(e.agent_id and "-agent-" in e.agent_id
               for e in events if e.type is EventType.HANDOFF)
    # reopens: an explicit reopened event, or the customer writing again after a resolution
    explicit = sum(1 for e in events if e.type is EventType.REOPENED)
    customer_again = 0
    for conv in by_conversation(ten_minutes).values():
        resolved = False
        for e in conv:
            if e.type is EventType.RESOLVED:
                resolved = True
            elif resolved and e.type is EventType.MESSAGE and e.author is Author.CUSTOMER:
                customer_again += 1
                resolved = False
    assert explicit > 0
    assert customer_again > 0


def test_agent_reply_delays_are_skewed(ten_minutes: list[ScheduledEvent]) -> None:
    delays = []
    for conv in by_conversation(ten_minutes).values():
        waiting_since: int | None = None
        for e in conv:
            if e.type is EventType.MESSAGE and e.author is Author.CUSTOMER:
                waiting_since = e.occurred_at_ms if waiting_since is None else waiting_since
            elif e.type is EventType.HANDOFF and waiting_since is not None:
                waiting_since = e.occurred_at_ms
            elif e.type is EventType.MESSAGE and e.author is Author.BOT:
                pass  # bots do not stop the human clock
            elif e.type is EventType.MESSAGE and e.author is Author.AGENT and not e.private:
                if waiting_since is not None:
                    delays.append(e.occurred_at_ms - waiting_since)
                waiting_since = None
            elif e.type is EventType.RESOLVED:
                waiting_since = None
    assert len(delays) > 200
    assert min(delays) >= 0
    assert statistics.median(delays) < statistics.mean(delays)


def test_channels_rate_and_run_id_are_honoured() -> None:
    scenario = Scenario(seed=1, start_ms=START, run_id="r9", channels=("telegram", "custom"),
                        conversations_per_s=0.5)
    items = take_minutes(scenario, 5)
    assert {s.event.channel for s in items} == {"telegram", "custom"}
    openers = {s.event.conversation_id for s in items}
    assert 100 < len(openers) < 200  # about 0.5/s over 300 s
    assert all(cid.startswith("r9-") for cid in openers)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_gives_valid_ordered_conversations(seed: int) -> None:
    items = list(itertools.islice(generate_events(Scenario(seed=seed, start_ms=START)), 300))
    assert [s.send_at_ms for s in items] == sorted(s.send_at_ms for s in items)
    for conv in by_conversation(items).values():
        assert conv[0].author is Author.CUSTOMER
        assert [e.occurred_at_ms for e in conv] == sorted(e.occurred_at_ms for e in conv)
        for e in conv:
            assert event_from_dict(e.to_dict()) == e


# -- transport --------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def start_gateway(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_post("/webhooks/canonical", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


FAST = LiveOptions(speed=1e6, batch=3, concurrency=2, backoff_s=0.01, backoff_max_s=0.05,
                   progress_s=0)


async def test_retries_503_and_delivers_every_event_exactly_once() -> None:
    received: Counter[str] = Counter()
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return web.json_response({"error": "kafka unavailable"}, status=503)
        body = orjson.loads(await request.read())
        assert isinstance(body, list)  # --batch > 1 posts arrays
        for item in body:
            received[event_from_dict(item).event_id] += 1
        return web.json_response({"accepted": len(body)})

    items = take_minutes(Scenario(seed=3, start_ms=START), 1)[:40]
    server = await start_gateway(handler)
    out = io.BytesIO()
    try:
        stats = await run_live(items, start_ms=START, gateway=str(server.make_url("")),
                               options=FAST, out=out)
    finally:
        await server.close()
    sent = [s.event.event_id for s in items]
    assert set(received) == set(sent)
    assert all(n == 1 for n in received.values())
    assert stats.generated == stats.delivered == len(items)
    assert stats.failed == stats.rejected == 0
    assert stats.status_5xx == 2 and stats.retries == 2
    written = [orjson.loads(line)["event_id"] for line in out.getvalue().splitlines()]
    assert sorted(written) == sorted(sent)


async def test_gives_up_after_bounded_tries_and_counts_the_failure() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": "kafka unavailable"}, status=503)

    items = take_minutes(Scenario(seed=3, start_ms=START), 1)[:7]
    server = await start_gateway(handler)
    try:
        stats = await run_live(items, start_ms=START, gateway=str(server.make_url("")),
                               options=LiveOptions(speed=1e6, batch=3, max_tries=3,
                                                   backoff_s=0.001, progress_s=0))
    finally:
        await server.close()
    assert stats.delivered == 0
    assert stats.failed == stats.generated == 7
    assert stats.batches_failed == 3  # 3 + 3 + 1
    assert stats.status_5xx == 9 and stats.retries == 6


async def test_4xx_is_counted_not_retried_and_its_body_kept() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": "conversation_id: is required"}, status=400)

    items = take_minutes(Scenario(seed=3, start_ms=START), 1)[:2]
    server = await start_gateway(handler)
    err = io.StringIO()
    try:
        stats = await run_live(items, start_ms=START, gateway=str(server.make_url("")),
                               options=LiveOptions(speed=1e6, progress_s=0), err=err)
    finally:
        await server.close()
    assert stats.rejected == 2 and stats.status_4xx == 2 and stats.retries == 0
    assert stats.first_error is not None and "conversation_id: is required" in stats.first_error
    assert "conversation_id: is required" in err.getvalue()


async def test_single_event_batches_post_objects_and_stop_finishes_in_flight() -> None:
    received: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        assert isinstance(body, dict)
        await asyncio.sleep(0.01)
        received.append(event_from_dict(body).event_id)
        return web.json_response({"accepted": 1})

    stop = asyncio.Event()
    server = await start_gateway(handler)
    try:
        asyncio.get_running_loop().call_later(0.3, stop.set)
        stats = await run_live(
            generate_events(Scenario(seed=5, start_ms=START)), start_ms=START,
            gateway=str(server.make_url("")),
            options=LiveOptions(speed=600, batch=1, concurrency=4, progress_s=0), stop=stop)
    finally:
        await server.close()
    assert stats.generated > 0
    assert stats.in_flight == 0
    assert stats.delivered == stats.generated == len(received) == len(set(received))


# -- command line -----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_dry_run_writes_jsonl_that_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = parse("--dry-run", "--out", str(out), "--seed", "11", "--run-id", "dry",
                 "--start", str(START), "--duration", "30", "--speed", "10",
                 "--channels", "whatsapp,line")
    assert run_simulation(Settings(), args) == 0
    lines = out.read_bytes().splitlines()
    assert lines
    for line in lines:
        data = orjson.loads(line)
        assert event_from_dict(data).to_dict() == data
    expected = take_minutes(
        Scenario(seed=11, start_ms=START, run_id="dry", channels=("whatsapp", "line"),
                 conversations_per_s=0.2), 5)  # 30 s wall at speed 10 = 5 simulated minutes
    assert [orjson.loads(line) for line in lines] == [s.event.to_dict() for s in expected]


def test_defaults_and_validation() -> None:
    args = parse()
    assert (args.rate, args.duration, args.batch, args.speed) == (2.0, None, 1, 1.0)
    assert args.channels == CHANNELS and args.gateway is None and not args.dry_run
    assert parse("--channels", "whatsapp, X ,whatsapp").channels == ("whatsapp", "x")
    for bad in (["--rate", "0"], ["--speed", "-1"], ["--batch", "0"], ["--channels", ","],
                ["--channels", "Bad Name"], ["--start", "yesterday"]):
        with pytest.raises(SystemExit):
            parse(*bad)


def test_exit_code_is_nonzero_when_nothing_could_be_delivered() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = parse("--gateway", f"http://127.0.0.1:{port}", "--duration", "0.3", "--speed", "100",
                 "--max-tries", "1", "--progress", "0", "--seed", "1")
    assert run_simulation(Settings(), args) == 1
