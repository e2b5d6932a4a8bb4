"""Instagram messaging: same Messenger Platform shape with object=instagram."""

from __future__ import annotations

import orjson
import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.instagram import InstagramAdapter
from processor.errors import InvalidEvent
from processor.events import Author
from processor.traffic import samples
from tests.unit.channels.support import get, req

SECRET = "ig-app-secret"
IG = samples.IG_ACCOUNT_ID
IGSID = "1234567890123456"


@pytest.fixture
def adapter() -> InstagramAdapter:
    return InstagramAdapter(SECRET, "verify-me")


def normalize(adapter: InstagramAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "instagram")
    adapter.verify(request)
    return adapter.normalize(request)


def test_inbound_dm(adapter: InstagramAdapter) -> None:
    (event,) = normalize(adapter, samples.instagram_inbound(SECRET, mid="ig_1")).events
    assert event.author is Author.CUSTOMER
    assert event.channel == "instagram"
    assert event.event_id == f"instagram:{IG}:ig_1"
    assert event.conversation_id == f"instagram:{IG}:{IGSID}"


def test_echo_is_business_side(adapter: InstagramAdapter) -> None:
    (plain,) = normalize(adapter, samples.instagram_echo(SECRET)).events
    assert (plain.author, plain.agent_id, plain.customer_id) == (Author.AGENT, "unknown", IGSID)
    (bot,) = normalize(adapter, samples.instagram_echo(SECRET, metadata="bot:ig-bot")).events
    assert (bot.author, bot.agent_id) == (Author.BOT, "ig-bot")


def test_reads_and_unsent_messages_are_ignored(adapter: InstagramAdapter) -> None:
    result = normalize(adapter, samples.instagram_read(SECRET))
    assert (result.events, result.ignored) == ([], 2)


def test_batch_mixes_customer_and_echo(adapter: InstagramAdapter) -> None:
    items = [
        samples.messenger_message_item(account_id=IG, user_id="1", mid="a", timestamp_ms=10),
        samples.messenger_message_item(account_id=IG, user_id="2", mid="b", timestamp_ms=20),
        samples.messenger_message_item(account_id=IG, user_id="1", mid="c", echo=True,
                                       metadata="agent:dora", timestamp_ms=30),
    ]
    result = normalize(adapter, samples.instagram_batch(SECRET, items))
    assert [(e.conversation_id, e.author) for e in result.events] == [
        (f"instagram:{IG}:1", Author.CUSTOMER), (f"instagram:{IG}:2", Author.CUSTOMER),
        (f"instagram:{IG}:1", Author.AGENT)]


def test_page_object_is_not_instagram(adapter: InstagramAdapter) -> None:
    result = normalize(adapter, samples.messenger_inbound(SECRET))
    assert (result.events, result.ignored) == ([], 1)


def test_comment_changes_are_ignored(adapter: InstagramAdapter) -> None:
    payload = {"object": "instagram", "entry": [{"id": IG, "time": 1, "changes": [
        {"field": "comments", "value": {"id": "1", "text": "nice"}}]}]}
    result = normalize(adapter, samples.meta_signed(SECRET, payload))
    assert (result.events, result.ignored) == ([], 1)


def test_non_ascii_and_signature(adapter: InstagramAdapter) -> None:
    headers, body = samples.instagram_inbound(SECRET, text="Olá 😀")
    assert normalize(adapter, (headers, body)).events
    with pytest.raises(SignatureInvalid):
        adapter.verify(req((headers, orjson.dumps(orjson.loads(body))), "instagram"))
    with pytest.raises(SignatureInvalid):
        adapter.verify(req(samples.instagram_inbound("other-secret"), "instagram"))


def test_missing_mid_is_invalid(adapter: InstagramAdapter) -> None:
    item = samples.messenger_message_item(account_id=IG)
    del item["message"]["mid"]
    with pytest.raises(InvalidEvent) as caught:
        normalize(adapter, samples.instagram_batch(SECRET, [item]))
    assert caught.value.field == "entry[0].messaging[0].message.mid"


def test_handshake(adapter: InstagramAdapter) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "ig"}
    assert adapter.handshake(get("instagram", query)).body == b"ig"
    query["hub.verify_token"] = "x"
    assert adapter.handshake(get("instagram", query)).status == 403
