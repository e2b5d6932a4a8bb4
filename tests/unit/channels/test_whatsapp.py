"""WhatsApp Cloud API: fixtures built from the documented webhook fields via samples."""

from __future__ import annotations

import orjson
import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.meta import meta_signature
from processor.channels.whatsapp import WhatsAppAdapter
from processor.errors import InvalidEvent
from processor.events import Author, EventType
from processor.traffic import samples
from tests.unit.channels.support import get, req, with_headers

SECRET = "wa-app-secret"
PNID = samples.WA_PHONE_NUMBER_ID


@pytest.fixture
def adapter() -> WhatsAppAdapter:
    return WhatsAppAdapter(SECRET, "verify-me")


def normalize(adapter: WhatsAppAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "whatsapp")
    adapter.verify(request)
    return adapter.normalize(request)


def test_inbound_text_is_a_customer_message(adapter: WhatsAppAdapter) -> None:
    result = normalize(adapter, samples.whatsapp_inbound(SECRET, wa_id="4915112345678",
                                                         wamid="wamid.ABC", timestamp_s=1700000000))
    (event,) = result.events
    assert result.ignored == 0
    assert event.type is EventType.MESSAGE
    assert event.author is Author.CUSTOMER
    assert event.event_id == f"whatsapp:{PNID}:wamid.ABC"
    assert event.conversation_id == f"whatsapp:{PNID}:4915112345678"
    assert (event.customer_id, event.account_id) == ("4915112345678", PNID)
    assert event.occurred_at_ms == 1_700_000_000_000  # seconds string -> ms


def test_non_ascii_is_signed_over_metas_escaped_bytes(adapter: WhatsAppAdapter) -> None:
    signed = samples.whatsapp_inbound(SECRET, text="Grüße 👋 / ¿qué?")
    headers, body = signed
    assert b"\\u00fc" in body and b"\\/" in body and body.isascii()
    assert normalize(adapter, signed).events[0].author is Author.CUSTOMER
    reserialized = orjson.dumps(orjson.loads(body))  # raw UTF-8, unescaped slash
    assert reserialized != body
    with pytest.raises(SignatureInvalid):
        adapter.verify(req((headers, reserialized), "whatsapp"))


def test_sent_status_with_agent_marker_is_one_outbound_agent_message(
    adapter: WhatsAppAdapter,
) -> None:
    sent = normalize(adapter, samples.whatsapp_status(SECRET, wamid="wamid.OUT9",
                                                      biz_opaque_callback_data="agent:alice"))
    (event,) = sent.events
    assert (event.author, event.agent_id) == (Author.AGENT, "alice")
    assert event.event_id == f"whatsapp:{PNID}:wamid.OUT9"
    assert event.conversation_id == f"whatsapp:{PNID}:16505551234"


@pytest.mark.parametrize("status", ["delivered", "read", "failed"])
def test_later_statuses_are_receipts_and_start_no_clock(
    adapter: WhatsAppAdapter, status: str
) -> None:
    result = normalize(adapter, samples.whatsapp_status(SECRET, status=status))
    assert (result.events, result.ignored) == ([], 1)


@pytest.mark.parametrize(("marker", "category", "author", "agent_id"), [
    ("bot:faq", "service", Author.BOT, "faq"),
    (None, "service", Author.AGENT, "unknown"),
    ('{"campaign":"spring"}', "service", Author.AGENT, "unknown"),
    (None, "marketing", Author.BOT, "template"),
    (None, "utility", Author.BOT, "template"),
    ("agent:bob", "utility", Author.AGENT, "bob"),
])
def test_sender_of_a_sent_status(
    adapter: WhatsAppAdapter, marker: str | None, category: str, author: Author, agent_id: str
) -> None:
    signed = samples.whatsapp_status(SECRET, biz_opaque_callback_data=marker, category=category)
    (event,) = normalize(adapter, signed).events
    assert (event.author, event.agent_id) == (author, agent_id)


def test_batch_of_messages_and_statuses_in_one_post(adapter: WhatsAppAdapter) -> None:
    messages = [samples.whatsapp_message_item(wamid=f"wamid.IN{i}", wa_id="111",
                                              timestamp_s=100 + i) for i in range(3)]
    statuses = [
        samples.whatsapp_status_item(wamid="wamid.OUT1", recipient_id="111", status="sent",
                                     biz_opaque_callback_data="agent:7"),
        samples.whatsapp_status_item(wamid="wamid.OUT0", recipient_id="111", status="delivered"),
        samples.whatsapp_status_item(wamid="wamid.OUT0", recipient_id="111", status="read"),
    ]
    batch = samples.whatsapp_batch(SECRET, messages=messages, statuses=statuses)
    result = normalize(adapter, batch)
    assert [e.event_id.rsplit(":", 1)[1] for e in result.events] == [
        "wamid.IN0", "wamid.IN1", "wamid.IN2", "wamid.OUT1"]
    assert result.ignored == 2


def test_several_entries_and_changes_are_all_read(adapter: WhatsAppAdapter) -> None:
    one = samples.whatsapp_message_item(wamid="w1", wa_id="1")
    two = samples.whatsapp_message_item(wamid="w2", wa_id="2")
    first = samples.whatsapp_payload(messages=[one])
    second = samples.whatsapp_payload(phone_number_id="999", messages=[two])
    payload = {"object": "whatsapp_business_account",
               "entry": first["entry"] + second["entry"]}
    payload["entry"][1]["changes"].append({"field": "account_update", "value": {"x": 1}})
    result = normalize(adapter, samples.meta_signed(SECRET, payload))
    assert [e.conversation_id for e in result.events] == [f"whatsapp:{PNID}:1", "whatsapp:999:2"]
    assert result.ignored == 1


def test_reactions_are_ignored(adapter: WhatsAppAdapter) -> None:
    result = normalize(adapter, samples.whatsapp_reaction(SECRET))
    assert (result.events, result.ignored) == ([], 1)


def test_business_app_echoes_are_agent_messages(adapter: WhatsAppAdapter) -> None:
    echo = {"from": "15550783881", "to": "+16505551234", "id": "wamid.ECHO",
            "timestamp": "1700000000", "type": "text", "text": {"body": "typed in the app"}}
    payload = samples.whatsapp_payload()
    payload["entry"][0]["changes"] = [{"field": "smb_message_echoes", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
        "message_echoes": [echo]}}]
    (event,) = normalize(adapter, samples.meta_signed(SECRET, payload)).events
    assert (event.author, event.agent_id) == (Author.AGENT, "unknown")
    assert event.conversation_id == f"whatsapp:{PNID}:16505551234"


def test_other_object_or_field_is_ignored_not_rejected(adapter: WhatsAppAdapter) -> None:
    page = samples.messaging_payload("page", "1", [samples.messenger_message_item()])
    assert normalize(adapter, samples.meta_signed(SECRET, page)).ignored == 1
    template = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]}
    result = normalize(adapter, samples.meta_signed(SECRET, template))
    assert (result.events, result.ignored) == ([], 1)


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "body"),
    (b"[]", "body"),
    (b'{"entry": []}', "object"),
    (b'{"object": "whatsapp_business_account"}', "entry"),
    (b'{"object": "whatsapp_business_account", "entry": [1]}', "entry[0]"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",'
     b' "value": {"metadata": {}}}]}]}', "entry[0].changes[0].value.metadata.phone_number_id"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",'
     b' "value": {"metadata": {"phone_number_id": "1"}, "messages": [{"from": "2", "id": "w",'
     b' "type": "text"}]}}]}]}', "entry[0].changes[0].value.messages[0].timestamp"),
])
def test_bodies_not_in_whatsapp_format_name_the_field(
    adapter: WhatsAppAdapter, body: bytes, field: str
) -> None:
    signed = ({"X-Hub-Signature-256": meta_signature(SECRET.encode(), body)}, body)
    request = req(signed, "whatsapp")
    adapter.verify(request)
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(request)
    assert caught.value.field == field


@pytest.mark.parametrize("signature", [None, "sha256=00", "sha256=" + "0" * 64, "garbage"])
def test_wrong_missing_or_malformed_signature(
    adapter: WhatsAppAdapter, signature: str | None
) -> None:
    request = with_headers(req(samples.whatsapp_inbound(SECRET), "whatsapp"),
                           **{"X-Hub-Signature-256": signature})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_secret_rotation_accepts_previous_secret() -> None:
    rotated = WhatsAppAdapter("brand-new," + SECRET, "verify-me")
    rotated.verify(req(samples.whatsapp_inbound(SECRET), "whatsapp"))
    with pytest.raises(SignatureInvalid):
        rotated.verify(req(samples.whatsapp_inbound("retired"), "whatsapp"))


def test_handshake(adapter: WhatsAppAdapter) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "c-123"}
    ok = adapter.handshake(get("whatsapp", query))
    assert (ok.status, ok.body) == (200, b"c-123")
    bad = adapter.handshake(get("whatsapp", {**query, "hub.verify_token": "nope"}))
    assert bad.status == 403


def test_acknowledge_is_an_empty_200(adapter: WhatsAppAdapter) -> None:
    reply = adapter.acknowledge(normalize(adapter, samples.whatsapp_inbound(SECRET)))
    assert (reply.status, reply.body) == (200, b"")
