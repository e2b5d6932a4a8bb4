"""The gateway's HTTP contract, through the real app factory and an in-memory sink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from processor.channels.base import Normalized, WebhookReply, WebhookRequest
from processor.config import Settings
from processor.errors import SinkUnavailable
from processor.gateway import app as app_module
from processor.gateway.sink import ProduceFailed
from tests.unit.gateway.conftest import WEBHOOK_ROUTE, Gateway, MakeGateway, MemorySink, event

# 2026-03-01T10:00:00+01:00 as epoch milliseconds, worked out independently.
T0_MS = 1_772_355_600_000


async def post(gw: Gateway, payload: Any, channel: str = "canonical", **kw: Any) -> Any:
    return await gw.client.post(f"/webhooks/{channel}", data=orjson.dumps(payload), **kw)


async def error_of(response: Any) -> str:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    return str(body["error"])


# --- accepted ------------------------------------------------------------------------------


async def test_one_event_is_written_then_acknowledged(gateway: Gateway) -> None:
    sent = event(extra_field={"kept": True})
    response = await post(gateway, sent)
    assert response.status == 200
    assert await response.json() == {"accepted": 1}
    (got,) = gateway.sink.events
    want = {**sent, "occurred_at": T0_MS}
    assert got.to_dict() == want


async def test_an_array_is_written_in_order_as_one_batch(gateway: Gateway) -> None:
    sent = [
        event(event_id="a", occurred_at=T0_MS),
        event(event_id="b", type="assigned", agent_id="agent-7", author=None),
        event(event_id="c", conversation_id="conv-2", occurred_at="2026-03-01T09:00:01Z"),
    ]
    del sent[1]["author"]
    response = await post(gateway, sent)
    assert response.status == 200
    assert await response.json() == {"accepted": 3}
    assert len(gateway.sink.batches) == 1
    got = [e.to_dict() for e in gateway.sink.batches[0]]
    assert got == [
        {**sent[0]},
        {**sent[1], "occurred_at": T0_MS},
        {**sent[2], "occurred_at": T0_MS + 1000},
    ]


async def test_body_exactly_at_the_cap_is_accepted(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(Settings(max_body_bytes=2000))
    base = orjson.dumps(event(pad=""))
    body = orjson.dumps(event(pad="x" * (2000 - len(base))))
    assert len(body) == 2000
    response = await gw.client.post("/webhooks/canonical", data=body)
    assert response.status == 200
    assert len(gw.sink.events) == 1


# --- 400 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error_prefix"),
    [
        ({k: v for k, v in event().items() if k != "event_id"}, "event_id: is required"),
        (event(type="bogus"), "type: "),
        (event(author=None), "author: "),
        ([event(), event(event_id="2"), event(occurred_at="yesterday")], "[2].occurred_at: "),
        ([event(), event(), {"event_id": "x"}], "[2]."),
        ([], "body: empty array"),
        ("just a string", "event: must be a JSON object"),
    ],
)
async def test_invalid_events_are_refused_and_nothing_is_written(
    gateway: Gateway, payload: Any, error_prefix: str
) -> None:
    response = await post(gateway, payload)
    assert response.status == 400
    assert (await error_of(response)).startswith(error_prefix)
    assert gateway.sink.batches == []
    assert gateway.sample(
        "msgkpi_gateway_rejected_total", channel="canonical", reason="invalid"
    ) == 1


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"event_id": "a"'])
async def test_malformed_json_is_a_400(gateway: Gateway, body: bytes) -> None:
    response = await gateway.client.post("/webhooks/canonical", data=body)
    assert response.status == 400
    assert (await error_of(response)).startswith("body: not valid JSON")
    assert gateway.sink.batches == []


class ExplodingAdapter:
    """An adapter with a bug: raises whatever it is given instead of InvalidEvent."""

    name = "canonical"

    def __init__(self, step: str, exc: Exception) -> None:
        self.step, self.exc = step, exc

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        if self.step == "handshake":
            raise self.exc
        return WebhookReply(200, request.query.get("challenge", "").encode())

    def verify(self, request: WebhookRequest) -> None:
        if self.step == "verify":
            raise self.exc

    def normalize(self, request: WebhookRequest) -> Normalized:
        if self.step == "normalize":
            raise self.exc
        return Normalized(events=[], ignored=2)

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply(200, b"success")


@pytest.mark.parametrize("step", ["verify", "normalize"])
@pytest.mark.parametrize(
    "exc",
    [ValueError("secret-body-text"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
     KeyError("secret-body-text"), TypeError("secret-body-text")],
)
async def test_adapter_bugs_on_bad_input_are_400_and_logged_without_the_body(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture, step: str, exc: Exception
) -> None:
    gw = await make_gateway(adapters={"canonical": ExplodingAdapter(step, exc)})
    with caplog.at_level(logging.WARNING, logger="processor.gateway.app"):
        response = await gw.client.post("/webhooks/canonical", data=b"secret-body-text")
    assert response.status == 400
    assert "canonical" in await error_of(response)
    logged = [r for r in caplog.records if r.name == "processor.gateway.app"]
    assert logged
    assert logged[0].levelno == logging.WARNING
    assert step in logged[0].getMessage()
    assert all("secret-body-text" not in r.getMessage() for r in caplog.records)
    assert gw.sink.batches == []


async def test_handshake_bug_is_a_400(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(adapters={"canonical": ExplodingAdapter("handshake", IndexError())})
    response = await gw.client.get("/webhooks/canonical")
    assert response.status == 400


async def test_delivery_with_only_ignored_items_is_200_and_counted(
    make_gateway: MakeGateway,
) -> None:
    gw = await make_gateway(adapters={"whatsapp": ExplodingAdapter("none", ValueError())})
    response = await gw.client.post("/webhooks/whatsapp", data=b"{}")
    assert response.status == 200
    assert await response.read() == b"success"
    assert gw.sink.batches == []
    assert gw.sample("msgkpi_gateway_ignored_total", channel="whatsapp") == 2
    assert gw.sample("msgkpi_gateway_events_total", channel="whatsapp") == 0


async def test_get_is_the_adapters_handshake(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(adapters={"x": ExplodingAdapter("none", ValueError())})
    response = await gw.client.get("/webhooks/x", params={"challenge": "abc123"})
    assert response.status == 200
    assert await response.read() == b"abc123"


async def test_canonical_has_no_handshake(gateway: Gateway) -> None:
    response = await gateway.client.get("/webhooks/canonical")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert "no handshake" in await error_of(response)


# --- 413 -----------------------------------------------------------------------------------


async def test_over_the_cap_with_content_length_is_413(gateway: Gateway) -> None:
    body = orjson.dumps(event(pad="x" * 5000))
    response = await gateway.client.post("/webhooks/canonical", data=body)
    assert response.status == 413
    assert "4096" in await error_of(response)
    assert gateway.sink.batches == []
    assert gateway.sample(
        "msgkpi_gateway_rejected_total", channel="canonical", reason="too_large"
    ) == 1


async def test_over_the_cap_chunked_without_content_length_is_413(gateway: Gateway) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield orjson.dumps([event()] * 10)[:-1]  # valid start, never finished
        for _ in range(10):
            yield b"," + orjson.dumps(event()) + b" " * 500

    response = await gateway.client.post("/webhooks/canonical", data=chunks())
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request_info.headers
    assert response.status == 413
    assert gateway.sink.batches == []


async def test_chunked_under_the_cap_is_accepted(gateway: Gateway) -> None:
    body = orjson.dumps([event(event_id=str(i)) for i in range(5)])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    response = await gateway.client.post("/webhooks/canonical", data=chunks())
    assert response.status == 200
    assert [e.event_id for e in gateway.sink.events] == ["0", "1", "2", "3", "4"]


# --- 404 / 401 -----------------------------------------------------------------------------


async def test_unknown_channel_is_404_naming_it(gateway: Gateway) -> None:
    response = await post(gateway, event(), channel="smoke-signals")
    assert response.status == 404
    message = await error_of(response)
    assert "unknown channel 'smoke-signals'" in message
    assert "canonical" in message


@pytest.mark.parametrize(
    ("channel", "needed"),
    [("whatsapp", "MSGKPI_WHATSAPP_SECRET and MSGKPI_WHATSAPP_VERIFY_TOKEN"),
     ("telegram", "MSGKPI_TELEGRAM_SECRET")],
)
async def test_platform_without_adapter_is_404_saying_how_to_enable(
    gateway: Gateway, channel: str, needed: str
) -> None:
    response = await post(gateway, event(), channel=channel)
    assert response.status == 404
    assert await error_of(response) == (
        f"channel '{channel}' is disabled: set {needed} to enable it"
    )
    assert gateway.sink.batches == []


async def test_unknown_route_is_a_json_404(gateway: Gateway) -> None:
    response = await gateway.client.get("/nope")
    assert response.status == 404
    assert await error_of(response) == "Not Found"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
     {"Authorization": "Bearer"}, {"Authorization": "Bearer s3cret-and-more"}],
)
async def test_canonical_with_secret_refuses_wrong_or_missing_bearer(
    make_gateway: MakeGateway, headers: dict[str, str]
) -> None:
    gw = await make_gateway(Settings(secrets={"canonical": "s3cret"}))
    response = await post(gw, event(), headers=headers)
    assert response.status == 401
    assert "s3cret" not in await error_of(response)
    assert gw.sink.batches == []
    assert gw.sample(
        "msgkpi_gateway_rejected_total", channel="canonical", reason="bad_signature"
    ) == 1


async def test_canonical_with_secret_accepts_the_right_bearer(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(Settings(secrets={"canonical": "s3cret"}))
    response = await post(gw, event(), headers={"Authorization": "Bearer s3cret"})
    assert response.status == 200
    assert len(gw.sink.events) == 1


# --- 503 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "reason"),
    [(SinkUnavailable("down"), "unavailable"), (ProduceFailed("timeout", "slow"), "timeout")],
)
async def test_sink_unavailable_is_503_with_retry_after(
    make_gateway: MakeGateway, failure: SinkUnavailable, reason: str
) -> None:
    gw = await make_gateway(sink=MemorySink(fail_with=failure))
    response = await post(gw, [event(), event(event_id="2")])
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "retry" in await error_of(response)
    assert gw.sink.batches == []
    assert gw.sample("msgkpi_gateway_produce_errors_total", reason=reason) == 1
    assert gw.sample("msgkpi_gateway_events_total", channel="canonical") == 0
    assert gw.sample(
        "msgkpi_gateway_requests_total", route=WEBHOOK_ROUTE, channel="canonical", status="503"
    ) == 1


# --- health, readiness, metrics ------------------------------------------------------------


async def test_healthz(gateway: Gateway) -> None:
    response = await gateway.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_follows_the_sink(gateway: Gateway) -> None:
    assert (await gateway.client.get("/readyz")).status == 200
    gateway.sink.is_ready = False
    response = await gateway.client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["status"] == "unavailable"


async def test_readyz_is_503_when_the_check_hangs(
    make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    class HangingSink(MemorySink):
        async def ready(self) -> bool:
            await asyncio.Event().wait()
            return True

    monkeypatch.setattr(app_module, "READY_TIMEOUT_S", 0.2)
    gw = await make_gateway(sink=HangingSink())
    async with asyncio.timeout(5):
        assert (await gw.client.get("/readyz")).status == 503


async def test_sink_is_started_and_stopped_with_the_app(make_gateway: MakeGateway) -> None:
    sink = MemorySink()
    gw = await make_gateway(sink=sink)
    assert sink.started and not sink.stopped
    await gw.client.close()
    assert sink.stopped


async def test_metrics_count_requests_events_and_rejections(gateway: Gateway) -> None:
    assert (await post(gateway, event())).status == 200
    assert (await post(gateway, [event(event_id=str(i)) for i in range(3)])).status == 200
    assert (await post(gateway, event(type="nope"))).status == 400
    assert (await post(gateway, event(pad="x" * 5000))).status == 413
    assert (await post(gateway, event(), channel="whatsapp")).status == 404
    assert (await gateway.client.get("/healthz")).status == 200

    s = gateway.sample
    requests = "msgkpi_gateway_requests_total"
    assert s(requests, route=WEBHOOK_ROUTE, channel="canonical", status="200") == 2
    assert s(requests, route=WEBHOOK_ROUTE, channel="canonical", status="400") == 1
    assert s(requests, route=WEBHOOK_ROUTE, channel="canonical", status="413") == 1
    assert s(requests, route=WEBHOOK_ROUTE, channel="whatsapp", status="404") == 1
    assert s(requests, route="/healthz", channel="", status="200") == 1
    assert s("msgkpi_gateway_events_total", channel="canonical") == 4
    assert s("msgkpi_gateway_rejected_total", channel="canonical", reason="invalid") == 1
    assert s("msgkpi_gateway_rejected_total", channel="canonical", reason="too_large") == 1
    assert s("msgkpi_gateway_request_seconds_count", route=WEBHOOK_ROUTE) == 5
    assert s("msgkpi_gateway_request_seconds_bucket", route=WEBHOOK_ROUTE, le="10.0") == 5
    assert s("msgkpi_gateway_request_seconds_bucket", route=WEBHOOK_ROUTE, le="0.001") <= 5

    response = await gateway.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert (
        'msgkpi_gateway_requests_total{channel="canonical",route="/webhooks/{channel}",'
        'status="200"} 2.0' in text
    )
    assert 'msgkpi_gateway_events_total{channel="canonical"} 4.0' in text
    assert 'msgkpi_gateway_produce_errors_total{reason="timeout"} 0.0' in text


async def test_metric_labels_stay_bounded_under_a_flood_of_channel_names(
    gateway: Gateway,
) -> None:
    for i in range(50):
        assert (await post(gateway, event(), channel=f"made-up-{i}")).status == 404
    assert (await gateway.client.get(f"/unknown/{'x' * 300}")).status == 404
    requests = "msgkpi_gateway_requests_total"
    assert gateway.sample(requests, route=WEBHOOK_ROUTE, channel="other", status="404") == 50
    assert gateway.sample(requests, route="other", channel="", status="404") == 1
    text = await (await gateway.client.get("/metrics")).text()
    assert "made-up" not in text
    assert "xxxx" not in text
