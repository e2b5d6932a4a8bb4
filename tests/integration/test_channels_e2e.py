"""End to end on the real broker: platform-native deliveries of all eight channels, signed as
each platform signs them (`processor/traffic/samples.py`), posted to a real `msgkpi gateway`
and processed by a real `msgkpi worker`. Wrong signatures never reach Kafka, unsupported items
are acknowledged and counted as ignored, the GET handshakes answer, a channel without its secret
is disabled, and the worker's KPIs are exactly what the fixtures imply."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest

from processor.config import CHANNELS
from processor.traffic import samples
from tests.integration.services import Deployment, Service, free_port, http_get, wait_until

pytestmark = pytest.mark.integration

SECRETS = {c: f"e2e-{c}-secret-7Hq2" for c in CHANNELS}
TOKENS = {c: f"e2e-{c}-verify" for c in ("whatsapp", "messenger", "instagram")}
WRONG = "not-the-secret"
T0 = int(time.time()) - 7200
"""Event time of each conversation's first message (epoch seconds)."""
T0_MS = T0 * 1000


def channel_env(*, without: tuple[str, ...] = ()) -> dict[str, str]:
    env = {f"MSGKPI_{c.upper()}_SECRET": s for c, s in SECRETS.items() if c not in without}
    env.update({f"MSGKPI_{c.upper()}_VERIFY_TOKEN": t for c, t in TOKENS.items()})
    return env


def request(url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
            ) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST",
                                 headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass(frozen=True)
class Delivery:
    """One platform delivery and what the gateway must make of it."""

    name: str
    channel: str
    signed: samples.Signed
    events: int
    ignored: int = 0

    def post(self, base_url: str) -> tuple[int, bytes]:
        first, body = self.signed
        if self.channel == "wechat":  # WeChat signs the query, not the body
            return request(f"{base_url}/webhooks/wechat?{urlencode(first)}", body,
                           {"Content-Type": "text/xml"})
        return request(f"{base_url}/webhooks/{self.channel}", body, first)


# Customers, one conversation each unless said otherwise.
WA_A, WA_B = "16505550101", "16505550102"
MS_1, MS_2 = "6000000000000001", "6000000000000002"
IG_1 = "1700000000000001"
TG_CHAT = 5_551_000_111
LINE_A, LINE_B = "U" + "a" * 32, "U" + "b" * 32
WECHAT_OPENID = "oE2eCustomer000000000000001"
X_CUSTOMER = "944480690"


def deliveries() -> list[Delivery]:
    """Every channel: an inbound message, a business-side reply, receipts, a batch where the
    platform sends several events per POST, and a type msgkpi does not use."""
    wa, ms, ig = SECRETS["whatsapp"], SECRETS["messenger"], SECRETS["instagram"]
    tg, ln, wc, xs, cw = (SECRETS[c] for c in ("telegram", "line", "wechat", "x", "chatwoot"))
    wa_inbound = samples.whatsapp_inbound(wa, wa_id=WA_A, wamid="wamid.E2E.A1", text="Hola 👋",
                                          timestamp_s=T0)
    return [
        # WhatsApp: A writes at T0, agent ana answers at +60 (a `sent` status with the marker);
        # delivered/read receipts; a reaction; Meta redelivers A's message (a duplicate).
        Delivery("wa inbound", "whatsapp", wa_inbound, 1),
        Delivery("wa agent reply", "whatsapp", samples.whatsapp_status(
            wa, status="sent", wamid="wamid.E2E.OUT1", recipient_id=WA_A, timestamp_s=T0 + 60,
            biz_opaque_callback_data="agent:ana"), 1),
        Delivery("wa receipts", "whatsapp", samples.whatsapp_batch(wa, statuses=[
            samples.whatsapp_status_item(wamid="wamid.E2E.OUT1", recipient_id=WA_A,
                                         status=status, timestamp_s=T0 + 61 + i)
            for i, status in enumerate(("delivered", "read"))]), 0, ignored=2),
        Delivery("wa reaction", "whatsapp", samples.whatsapp_reaction(wa, wa_id=WA_A,
                                                                      timestamp_s=T0 + 70),
                 0, ignored=1),
        Delivery("wa redelivery", "whatsapp", wa_inbound, 1),
        # B: two messages and a bot reply (+30 after the first) in one POST.
        Delivery("wa batch", "whatsapp", samples.whatsapp_batch(
            wa,
            messages=[samples.whatsapp_message_item(wamid=f"wamid.E2E.B{i}", wa_id=WA_B,
                                                    text="¿Hay alguien?", timestamp_s=T0 + t)
                      for i, t in ((1, 0), (2, 10))],
            statuses=[samples.whatsapp_status_item(
                wamid="wamid.E2E.OUT2", recipient_id=WA_B, timestamp_s=T0 + 30,
                biz_opaque_callback_data="bot:helper")]), 3),
        # Messenger: user 1 at T0, the bot passes the thread to carl at +30 (the human clock
        # starts there), carl's echo at +45: FRT 15. User 2: message and echo (+90) in one POST.
        Delivery("ms inbound", "messenger", samples.messenger_inbound(
            ms, mid="m_E2E_1", user_id=MS_1, timestamp_ms=T0_MS), 1),
        Delivery("ms handover", "messenger", samples.messenger_handover(
            ms, metadata="agent:carl", user_id=MS_1, timestamp_ms=T0_MS + 30_000), 1),
        Delivery("ms echo", "messenger", samples.messenger_echo(
            ms, metadata="agent:carl", mid="m_E2E_E1", user_id=MS_1,
            timestamp_ms=T0_MS + 45_000), 1),
        Delivery("ms receipts", "messenger", samples.messenger_read(
            ms, user_id=MS_1, timestamp_ms=T0_MS + 50_000), 0, ignored=3),
        Delivery("ms batch", "messenger", samples.messenger_batch(ms, [
            samples.messenger_message_item(mid="m_E2E_2", user_id=MS_2, text="Bonjour",
                                           timestamp_ms=T0_MS),
            samples.messenger_message_item(mid="m_E2E_E2", user_id=MS_2, echo=True,
                                           metadata="agent:dora", timestamp_ms=T0_MS + 90_000),
        ]), 2),
        # Instagram: an echo without a marker is agent `unknown`, FRT 120.
        Delivery("ig inbound", "instagram", samples.instagram_inbound(
            ig, mid="aWdfE2E1", user_id=IG_1, timestamp_ms=T0_MS), 1),
        Delivery("ig echo", "instagram", samples.instagram_echo(
            ig, mid="aWdfE2E2", user_id=IG_1, timestamp_ms=T0_MS + 120_000), 1),
        Delivery("ig read and unsend", "instagram", samples.instagram_read(
            ig, user_id=IG_1, timestamp_ms=T0_MS + 130_000), 0, ignored=2),
        # Telegram (one update per POST): the customer, then the business owner at +30.
        Delivery("tg inbound", "telegram", samples.telegram_inbound(
            tg, update_id=700_001, chat_id=TG_CHAT, date_s=T0, text="Привет"), 1),
        Delivery("tg owner reply", "telegram", samples.telegram_business_message(
            tg, update_id=700_002, chat_id=TG_CHAT, date_s=T0 + 30), 1),
        Delivery("tg edit", "telegram", samples.telegram_edited(tg, update_id=700_003), 0,
                 ignored=1),
        Delivery("tg reaction", "telegram", samples.telegram_reaction(tg, update_id=700_004), 0,
                 ignored=1),
        # LINE: two users in one POST; the console's Verify call; a follow event. LINE never
        # sends the bot's replies: one comes through the canonical feed, below.
        Delivery("line batch", "line", samples.line_batch(ln, [
            samples.line_message_event(user_id=LINE_A, timestamp_ms=T0_MS, text="こんにちは",
                                       webhook_event_id="01E2E0000000000000000000A1",
                                       message_id="500000000000000001"),
            samples.line_message_event(user_id=LINE_B, timestamp_ms=T0_MS + 5_000,
                                       webhook_event_id="01E2E0000000000000000000B1",
                                       message_id="500000000000000002"),
        ]), 2),
        Delivery("line verify", "line", samples.line_verify(ln), 0),
        Delivery("line follow", "line", samples.line_follow(ln), 0, ignored=1),
        # WeChat: a text message and a customer-service session (assigned); a subscribe event.
        Delivery("wechat inbound", "wechat", samples.wechat_inbound(
            wc, msg_id="7000000000000001", from_user=WECHAT_OPENID, create_time_s=T0), 1),
        Delivery("wechat kf session", "wechat", samples.wechat_kf_session(
            wc, from_user=WECHAT_OPENID, create_time_s=T0 + 60), 1),
        Delivery("wechat subscribe", "wechat", samples.wechat_subscribe(wc), 0, ignored=1),
        # X: the customer's DM and the account's answer (+90, agent unknown) in one POST.
        Delivery("x batch", "x", samples.x_batch(xs, [
            samples.x_dm_event(event_id="1900000000000000001", sender_id=X_CUSTOMER,
                               created_ms=T0_MS),
            samples.x_dm_event(event_id="1900000000000000002", sender_id=samples.X_ACCOUNT,
                               recipient_id=X_CUSTOMER, created_ms=T0_MS + 90_000,
                               source_app_id="268278"),
        ]), 2),
        Delivery("x read and typing", "x", samples.x_read(xs), 0, ignored=2),
        # Chatwoot: incoming, agent 1 answers at +90, resolved at +600; a contact event.
        Delivery("chatwoot inbound", "chatwoot", samples.chatwoot_inbound(
            cw, message_id=9001, created_at=T0), 1),
        Delivery("chatwoot agent reply", "chatwoot", samples.chatwoot_agent_reply(
            cw, message_id=9002, created_at=T0 + 90), 1),
        Delivery("chatwoot resolved", "chatwoot", samples.chatwoot_status(
            cw, updated_at=T0 + 600.0), 1),
        Delivery("chatwoot contact event", "chatwoot", samples.chatwoot_signed(
            cw, {"event": "contact_created", "id": 55, "name": "Jane"}), 0, ignored=1),
    ]


def canonical_line_reply() -> dict[str, object]:
    """The reply LINE cannot deliver, posted to the canonical feed on LINE's own thread id."""
    return {"event_id": "line-reply-1", "type": "message", "channel": "line",
            "conversation_id": f"line:{samples.LINE_DESTINATION}:{LINE_A}",
            "occurred_at": T0_MS + 20_000, "author": "agent", "agent_id": "erin"}


def wrongly_signed() -> list[Delivery]:
    """A new inbound message per channel, signed with the wrong secret: 401, never in Kafka."""
    return [
        Delivery("bad wa", "whatsapp", samples.whatsapp_inbound(
            WRONG, wamid="wamid.BAD", wa_id=WA_A, timestamp_s=T0 + 5), 0),
        Delivery("bad ms", "messenger", samples.messenger_inbound(
            WRONG, mid="m_BAD", user_id=MS_1, timestamp_ms=T0_MS + 5), 0),
        Delivery("bad ig", "instagram", samples.instagram_inbound(
            WRONG, mid="aWdfBAD", user_id=IG_1, timestamp_ms=T0_MS + 5), 0),
        Delivery("bad tg", "telegram", samples.telegram_inbound(
            WRONG, update_id=700_099, chat_id=TG_CHAT, date_s=T0 + 5), 0),
        Delivery("bad line", "line", samples.line_inbound(
            WRONG, user_id=LINE_A, webhook_event_id="01E2EBAD", timestamp_ms=T0_MS + 5), 0),
        Delivery("bad wechat", "wechat", samples.wechat_inbound(
            WRONG, msg_id="7000000000000099", from_user=WECHAT_OPENID, create_time_s=T0 + 5), 0),
        Delivery("bad x", "x", samples.x_inbound(
            WRONG, event_id="1900000000000000099", created_ms=T0_MS + 5), 0),
        Delivery("bad chatwoot", "chatwoot", samples.chatwoot_inbound(
            WRONG, message_id=9099, created_at=T0 + 5), 0),
    ]


# (channel, responder) -> (count, sum of seconds)
EXPECTED_FIRST_RESPONSE = {
    ("whatsapp", "agent"): (1, 60.0),
    ("whatsapp", "bot"): (1, 30.0),
    ("messenger", "agent"): (2, 15.0 + 90.0),
    ("instagram", "agent"): (1, 120.0),
    ("telegram", "agent"): (1, 30.0),
    ("line", "agent"): (1, 20.0),
    ("wechat", "agent"): (0, 0.0),
    ("x", "agent"): (1, 90.0),
    ("chatwoot", "agent"): (1, 90.0),
}
# (channel, author) -> messages_total
EXPECTED_MESSAGES = {
    ("whatsapp", "customer"): 3, ("whatsapp", "agent"): 1, ("whatsapp", "bot"): 1,
    ("messenger", "customer"): 2, ("messenger", "agent"): 2,
    ("instagram", "customer"): 1, ("instagram", "agent"): 1,
    ("telegram", "customer"): 1, ("telegram", "agent"): 1,
    ("line", "customer"): 2, ("line", "agent"): 1,
    ("wechat", "customer"): 1, ("wechat", "agent"): 0,
    ("x", "customer"): 1, ("x", "agent"): 1,
    ("chatwoot", "customer"): 1, ("chatwoot", "agent"): 1,
}


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Service, Service, Service]]:
    """Gateway and worker with all eight channels, and a second gateway without LINE's secret."""
    deployment = Deployment(kafka_bootstrap, extra_env=channel_env())
    no_line = Deployment(kafka_bootstrap, tag=f"{deployment.tag}-noline",
                         extra_env=channel_env(without=("line",)))
    gateway = Service(deployment, "gateway", free_port(), tmp_path)
    worker = Service(deployment, "worker", free_port(), tmp_path)
    other = Service(no_line, "gateway", free_port(), tmp_path, name="gateway-no-line")
    try:
        for service, path in ((gateway, "/readyz"), (worker, "/metrics"), (other, "/readyz")):
            service.wait_http(path)
        yield gateway, worker, other
    finally:
        for service in (other, worker, gateway):
            service.stop()


def test_native_deliveries_of_every_channel_give_exact_metrics(
    stack: tuple[Service, Service, Service],
) -> None:
    gateway, worker, _ = stack
    accepted: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    for delivery in deliveries():
        status, body = delivery.post(gateway.url)
        assert status == 200, (delivery.name, body)
        if delivery.channel == "wechat":
            assert body == b"success"
        accepted[delivery.channel] += delivery.events
        ignored[delivery.channel] += delivery.ignored
    status, body = request(f"{gateway.url}/webhooks/canonical", orjson.dumps(
        canonical_line_reply()), {"Content-Type": "application/json"})
    assert status == 200, body
    for delivery in wrongly_signed():
        status, body = delivery.post(gateway.url)
        assert status == 401, (delivery.name, status, body)
        assert b"7Hq2" not in body  # no secret is ever echoed
    total = sum(accepted.values()) + 1  # + the canonical LINE reply

    wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= total, 90,
               what=f"{total} events processed; worker log:\n{worker.log_tail()}")
    time.sleep(1.5)  # anything else (a wrongly signed delivery) would show up by now
    metrics = worker.metrics()
    assert metrics[("msgkpi_worker_events_total", frozenset())] == total
    assert worker.sample("msgkpi_worker_duplicates_total") == 1  # the WhatsApp redelivery
    assert worker.sample("msgkpi_worker_dlq_total", reason="invalid") == 0

    wrong: dict[tuple[str, str, str], tuple[object, object]] = {}
    for (channel, author), want in EXPECTED_MESSAGES.items():
        got = worker.sample("msgkpi_messages_total", channel=channel, author=author)
        if got != want:
            wrong[("messages", channel, author)] = (got, want)
    for (channel, responder), (count, seconds) in EXPECTED_FIRST_RESPONSE.items():
        labels = {"channel": channel, "responder": responder}
        got_count = worker.sample("msgkpi_first_response_seconds_count", **labels)
        got_sum = worker.sample("msgkpi_first_response_seconds_sum", **labels)
        if (got_count, got_sum) != (count, seconds):
            wrong[("first_response", channel, responder)] = ((got_count, got_sum),
                                                             (count, seconds))
    resolution = (worker.sample("msgkpi_resolution_seconds_count", channel="chatwoot"),
                  worker.sample("msgkpi_resolution_seconds_sum", channel="chatwoot"))
    if resolution != (1, 600.0):
        wrong[("resolution", "chatwoot", "")] = (resolution, (1, 600.0))
    assert wrong == {}, "(got, want)"

    for channel in CHANNELS:
        assert gateway.sample("msgkpi_gateway_events_total", channel=channel) == \
            accepted[channel], channel
        assert gateway.sample("msgkpi_gateway_ignored_total", channel=channel) == \
            ignored[channel], channel
        assert gateway.sample("msgkpi_gateway_rejected_total", channel=channel,
                              reason="bad_signature") == 1, channel


def test_handshakes_answer_and_a_channel_without_its_secret_is_disabled(
    stack: tuple[Service, Service, Service],
) -> None:
    gateway, _, no_line = stack
    base = f"{gateway.url}/webhooks"
    meta = {"hub.mode": "subscribe", "hub.verify_token": TOKENS["whatsapp"],
            "hub.challenge": "1158201444"}
    assert http_get(f"{base}/whatsapp?{urlencode(meta)}") == (200, b"1158201444")
    wrong_token = {**meta, "hub.verify_token": "guess"}
    assert http_get(f"{base}/whatsapp?{urlencode(wrong_token)}")[0] == 403

    query = samples.wechat_handshake_query(SECRETS["wechat"], echostr="e2e-echo-42")
    assert http_get(f"{base}/wechat?{urlencode(query)}") == (200, b"e2e-echo-42")
    forged = samples.wechat_handshake_query(WRONG, echostr="e2e-echo-42")
    assert http_get(f"{base}/wechat?{urlencode(forged)}")[0] == 401

    status, body = http_get(f"{base}/x?crc_token=e2eCrcToken")
    digest = hmac.new(SECRETS["x"].encode(), b"e2eCrcToken", hashlib.sha256).digest()
    assert status == 200
    assert orjson.loads(body) == {"response_token": "sha256=" + base64.b64encode(digest).decode()}

    # The other gateway runs without MSGKPI_LINE_SECRET: LINE is off, the rest is on.
    status, body = request(f"{no_line.url}/webhooks/line",
                           samples.line_inbound(SECRETS["line"])[1],
                           samples.line_inbound(SECRETS["line"])[0])
    assert status == 404
    assert "MSGKPI_LINE_SECRET" in orjson.loads(body)["error"]
    assert http_get(f"{no_line.url}/webhooks/line")[0] == 404
    assert no_line.sample("msgkpi_gateway_events_total", channel="line") == 0
    assert "channel line disabled" in no_line.log_tail(200)
    assert http_get(f"{no_line.url}/webhooks/x?crc_token=t")[0] == 200
