"""X Account Activity API: DMs, CRC, signature."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.x import XAdapter
from processor.errors import InvalidEvent
from processor.events import Author
from processor.traffic import samples
from tests.unit.channels.support import get, req, with_headers

SECRET = "x-consumer-secret"
ACCOUNT = samples.X_ACCOUNT


@pytest.fixture
def adapter() -> XAdapter:
    return XAdapter(SECRET, bot_app_ids=["999"])


def normalize(adapter: XAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "x")
    adapter.verify(request)
    return adapter.normalize(request)


def test_crc_response_token(adapter: XAdapter) -> None:
    reply = adapter.handshake(get("x", {"crc_token": "crc-abc"}))
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"crc-abc", hashlib.sha256).digest())
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert orjson.loads(reply.body) == {"response_token": "sha256=" + expected.decode()}
    assert adapter.handshake(get("x", {})).status == 400


def test_crc_uses_the_current_secret_during_rotation() -> None:
    reply = XAdapter("current," + SECRET).handshake(get("x", {"crc_token": "t"}))
    expected = base64.b64encode(hmac.new(b"current", b"t", hashlib.sha256).digest()).decode()
    assert orjson.loads(reply.body)["response_token"] == f"sha256={expected}"


def test_inbound_dm(adapter: XAdapter) -> None:
    (event,) = normalize(adapter, samples.x_inbound(SECRET, created_ms=1_700_000_000_999,
                                                    text="¿Hola?")).events
    assert event.author is Author.CUSTOMER
    assert event.event_id == f"x:{ACCOUNT}:1582838499983564806"
    assert event.customer_id == "944480690"
    assert event.occurred_at_ms == 1_700_000_000_999  # ms string


def test_dm_sent_by_the_account_is_business_side_in_the_same_thread(adapter: XAdapter) -> None:
    inbound = normalize(adapter, samples.x_inbound(SECRET)).events[0]
    (reply,) = normalize(adapter, samples.x_outbound(SECRET)).events
    assert (reply.author, reply.agent_id) == (Author.AGENT, "unknown")
    assert reply.customer_id == "944480690"
    assert reply.conversation_id == inbound.conversation_id == f"x:{ACCOUNT}:944480690-{ACCOUNT}"
    (bot,) = normalize(adapter, samples.x_outbound(SECRET, source_app_id="999")).events
    assert (bot.author, bot.agent_id) == (Author.BOT, "app:999")


def test_thread_sorts_ids_numerically() -> None:
    adapter = XAdapter(SECRET)
    event = samples.x_dm_event(sender_id="1000", recipient_id="999")
    payload = samples.x_payload([event], for_user_id="999")
    (found,) = normalize(adapter, samples.x_signed(SECRET, payload)).events
    assert found.conversation_id == "x:999:999-1000"


def test_read_and_typing_are_ignored(adapter: XAdapter) -> None:
    assert normalize(adapter, samples.x_read(SECRET)) == Normalized([], 2)


def test_batch_and_tweets(adapter: XAdapter) -> None:
    events = [samples.x_dm_event(event_id=str(i), created_ms=1000 + i) for i in range(3)]
    payload = samples.x_payload(events)
    payload["tweet_create_events"] = [{"id_str": "1"}, {"id_str": "2"}]
    result = normalize(adapter, samples.x_signed(SECRET, payload))
    assert [e.event_id for e in result.events] == [f"x:{ACCOUNT}:{i}" for i in range(3)]
    assert result.ignored == 2


@pytest.mark.parametrize(("payload", "field"), [
    ({"direct_message_events": []}, "for_user_id"),
    ({"for_user_id": ACCOUNT, "direct_message_events": {}}, "direct_message_events"),
    ({"for_user_id": ACCOUNT, "direct_message_events": [{"type": "message_create", "id": "1",
                                                          "created_timestamp": "1"}]},
     "direct_message_events[0].message_create"),
    ({"for_user_id": ACCOUNT, "direct_message_events": [{"type": "message_create", "id": "1",
                                                          "created_timestamp": "1",
                                                          "message_create": {"sender_id": "5"}}]},
     "direct_message_events[0].message_create.target"),
])
def test_not_x_format(adapter: XAdapter, payload: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalize(adapter, samples.x_signed(SECRET, payload))
    assert caught.value.field == field


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=%%%", "c2hhMjU2",
                                       "sha256=" + "A" * 44, "sha256=ü"])
def test_bad_signatures(adapter: XAdapter, signature: str | None) -> None:
    request = with_headers(req(samples.x_inbound(SECRET), "x"),
                           **{"x-twitter-webhooks-signature": signature})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_rotation_and_resigned_body(adapter: XAdapter) -> None:
    rotated = XAdapter("newer," + SECRET)
    rotated.verify(req(samples.x_inbound(SECRET), "x"))
    headers, body = samples.x_inbound(SECRET, text="naïve")
    with pytest.raises(SignatureInvalid):
        rotated.verify(req((headers, orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)),
                           "x"))
