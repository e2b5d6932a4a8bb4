"""Messenger: inbound, echoes (agent/bot rule), receipts, handover, batches."""

from __future__ import annotations

import orjson
import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.messenger import MessengerAdapter
from processor.errors import InvalidEvent
from processor.events import Author, EventType
from processor.traffic import samples
from tests.unit.channels.support import get, req, with_headers

SECRET = "page-app-secret"
PAGE = samples.PAGE_ID
PSID = "6789012345678901"


@pytest.fixture
def adapter() -> MessengerAdapter:
    return MessengerAdapter(SECRET, "verify-me", bot_app_ids=["555000555"])


def normalize(adapter: MessengerAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "messenger")
    adapter.verify(request)
    return adapter.normalize(request)


def test_inbound_message(adapter: MessengerAdapter) -> None:
    result = normalize(adapter, samples.messenger_inbound(SECRET, mid="m_1",
                                                          timestamp_ms=1_700_000_000_123))
    (event,) = result.events
    assert (event.type, event.author) == (EventType.MESSAGE, Author.CUSTOMER)
    assert event.event_id == f"messenger:{PAGE}:m_1"
    assert event.conversation_id == f"messenger:{PAGE}:{PSID}"
    assert (event.customer_id, event.account_id) == (PSID, PAGE)
    assert event.occurred_at_ms == 1_700_000_000_123  # already ms


@pytest.mark.parametrize(("metadata", "app_id", "author", "agent_id"), [
    ("agent:alice", None, Author.AGENT, "alice"),
    ("bot:faq", None, Author.BOT, "faq"),
    (None, 555000555, Author.BOT, "app:555000555"),          # configured automation app
    (None, 263902037430900, Author.AGENT, "unknown"),        # Page Inbox, a person
    ("agent:bob", 555000555, Author.AGENT, "bob"),           # the marker wins
    ("free text", None, Author.AGENT, "unknown"),
])
def test_echo_author_rule(
    adapter: MessengerAdapter, metadata: str | None, app_id: int | None, author: Author,
    agent_id: str,
) -> None:
    signed = samples.messenger_echo(SECRET, metadata=metadata, app_id=app_id, mid="m_e")
    (event,) = normalize(adapter, signed).events
    assert (event.author, event.agent_id) == (author, agent_id)
    assert event.conversation_id == f"messenger:{PAGE}:{PSID}"  # recipient of the echo
    assert event.customer_id == PSID


def test_reads_deliveries_and_reactions_are_ignored(adapter: MessengerAdapter) -> None:
    result = normalize(adapter, samples.messenger_read(SECRET))
    assert (result.events, result.ignored) == ([], 3)


@pytest.mark.parametrize(("kind", "event_type"), [
    ("pass_thread_control", EventType.HANDOFF),
    ("take_thread_control", EventType.ASSIGNED),
])
def test_handover_protocol(adapter: MessengerAdapter, kind: str, event_type: EventType) -> None:
    (event,) = normalize(adapter, samples.messenger_handover(SECRET, kind=kind)).events
    assert event.type is event_type
    assert event.agent_id == "app:263902037430900"
    assert event.conversation_id == f"messenger:{PAGE}:{PSID}"
    marked = samples.messenger_handover(SECRET, kind=kind, metadata="agent:carol")
    assert normalize(adapter, marked).events[0].agent_id == "carol"


def test_request_thread_control_is_ignored(adapter: MessengerAdapter) -> None:
    item = {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1,
            "request_thread_control": {"requested_owner_app_id": "1", "metadata": "x"}}
    result = normalize(adapter, samples.messenger_batch(SECRET, [item]))
    assert (result.events, result.ignored) == ([], 1)


def test_batch_with_standby_and_several_entries(adapter: MessengerAdapter) -> None:
    items = [samples.messenger_message_item(mid=f"m_{i}", timestamp_ms=1000 + i) for i in range(2)]
    payload = samples.messaging_payload("page", PAGE, items)
    payload["entry"][0]["standby"] = [samples.messenger_message_item(mid="m_sb", echo=True)]
    payload["entry"].append({"id": "222", "time": 5, "messaging": [
        samples.messenger_message_item(account_id="222", mid="m_other", user_id="9")]})
    payload["entry"][0]["changes"] = [{"field": "feed", "value": {"item": "post"}}]
    result = normalize(adapter, samples.meta_signed(SECRET, payload))
    assert [e.event_id for e in result.events] == [
        f"messenger:{PAGE}:m_0", f"messenger:{PAGE}:m_1", f"messenger:{PAGE}:m_sb",
        "messenger:222:m_other"]
    assert result.events[2].author is Author.AGENT
    assert result.ignored == 1


def test_non_ascii_text_signature_is_over_escaped_bytes(adapter: MessengerAdapter) -> None:
    headers, body = samples.messenger_inbound(SECRET, text="こんにちは")
    assert b"\\u3053" in body
    assert normalize(adapter, (headers, body)).events[0].author is Author.CUSTOMER
    with pytest.raises(SignatureInvalid):
        adapter.verify(req((headers, orjson.dumps(orjson.loads(body))), "messenger"))


def test_other_object_is_ignored(adapter: MessengerAdapter) -> None:
    result = normalize(adapter, samples.instagram_inbound(SECRET))
    assert (result.events, result.ignored) == ([], 1)


@pytest.mark.parametrize(("payload", "field"), [
    ({"object": "page", "entry": [{"messaging": []}]}, "entry[0].id"),
    ({"object": "page", "entry": [{"id": "1", "messaging": {}}]}, "entry[0].messaging"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"message": {"mid": "m"},
                                                             "timestamp": 1}]}]},
     "entry[0].messaging[0].sender"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [
        {"sender": {"id": "2"}, "recipient": {"id": "1"}, "message": {"mid": "m"}}]}]},
     "entry[0].messaging[0].timestamp"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [
        {"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 1, "message": {}}]}]},
     "entry[0].messaging[0].message.mid"),
    ({"object": 7, "entry": []}, "object"),
])
def test_malformed_messenger_bodies(
    adapter: MessengerAdapter, payload: dict[str, object], field: str
) -> None:
    request = req(samples.meta_signed(SECRET, payload), "messenger")
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(request)
    assert caught.value.field == field


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=abc", "sha256=" + "f" * 64])
def test_bad_signatures(adapter: MessengerAdapter, signature: str | None) -> None:
    request = with_headers(req(samples.messenger_inbound(SECRET), "messenger"),
                           **{"X-Hub-Signature-256": signature})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_rotation_and_handshake() -> None:
    adapter = MessengerAdapter(f"fresh,{SECRET}", "new-token,old-token")
    adapter.verify(req(samples.messenger_inbound(SECRET), "messenger"))
    adapter.verify(req(samples.messenger_inbound("fresh"), "messenger"))
    query = {"hub.mode": "subscribe", "hub.verify_token": "old-token", "hub.challenge": "99"}
    assert adapter.handshake(get("messenger", query)).body == b"99"
    query["hub.verify_token"] = "bad-token"
    assert adapter.handshake(get("messenger", query)).status == 403
