"""Chatwoot: timestamped signature, message authors, lifecycle, CSAT."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from processor.channels.base import Normalized, SignatureInvalid, WebhookRequest
from processor.channels.chatwoot import ChatwootAdapter
from processor.errors import InvalidEvent
from processor.events import Author, EventType
from processor.traffic import samples
from tests.unit.channels.support import NOW_S, get, req, with_headers

SECRET = "cw-webhook-secret"
CONVERSATION = "chatwoot:1:10"


@pytest.fixture
def adapter() -> ChatwootAdapter:
    return ChatwootAdapter(SECRET)


def normalize(adapter: ChatwootAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "chatwoot")
    adapter.verify(request)
    return adapter.normalize(request)


def signed(payload: dict[str, object], timestamp_s: int = NOW_S) -> samples.Signed:
    return samples.chatwoot_signed(SECRET, payload, timestamp_s=timestamp_s)


def test_signature_covers_timestamp_dot_body() -> None:
    headers, body = samples.chatwoot_inbound(SECRET, timestamp_s=NOW_S)
    expected = hmac.new(SECRET.encode(), f"{NOW_S}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Chatwoot-Signature"] == f"sha256={expected}"
    assert headers["X-Chatwoot-Timestamp"] == str(NOW_S)


@pytest.mark.parametrize("created_at", [
    samples.DEFAULT_TIME_S, str(samples.DEFAULT_TIME_S), "2026-01-01T00:00:00.000Z",
    "2026-01-01 00:00:00 UTC", "2026-01-01T01:00:00+01:00",
])
def test_incoming_message_time_in_every_chatwoot_format(
    adapter: ChatwootAdapter, created_at: int | str
) -> None:
    (event,) = normalize(adapter, samples.chatwoot_inbound(SECRET, created_at=created_at,
                                                           timestamp_s=NOW_S)).events
    assert event.occurred_at_ms == samples.DEFAULT_TIME_S * 1000
    assert event.author is Author.CUSTOMER
    assert (event.event_id, event.conversation_id) == ("chatwoot:1:118", CONVERSATION)
    assert (event.customer_id, event.account_id) == ("14", "1")


def test_outgoing_by_user_is_that_agent(adapter: ChatwootAdapter) -> None:
    (event,) = normalize(adapter, samples.chatwoot_agent_reply(SECRET, agent_id=42,
                                                               timestamp_s=NOW_S)).events
    assert (event.author, event.agent_id, event.private) == (Author.AGENT, "42", False)
    assert event.customer_id == "14"


@pytest.mark.parametrize(("changes", "author", "agent_id"), [
    ({"sender": {"id": 7, "name": "Helper", "type": "agent_bot"}}, Author.BOT, "agent_bot:7"),
    ({"sender": {"id": 2, "name": "Captain", "type": "captain_assistant"}}, Author.BOT,
     "captain_assistant:2"),
    ({"sender": None, "content_attributes": {"automation_rule_id": 12}}, Author.BOT,
     "automation:12"),
    ({"sender": {"id": 1, "type": "user"}, "content_attributes": {"automation_rule_id": 3}},
     Author.BOT, "automation:3"),
    ({"message_type": "template", "sender": None}, Author.BOT, "template"),
    ({"sender": None}, Author.AGENT, "unknown"),
    ({"message_type": 1, "sender": {"id": 5, "type": "user"}}, Author.AGENT, "5"),
])
def test_business_side_author_rule(
    adapter: ChatwootAdapter, changes: dict[str, object], author: Author, agent_id: str
) -> None:
    payload = samples.chatwoot_message_payload(message_type="outgoing")
    payload.update(changes)
    (event,) = normalize(adapter, signed(payload)).events
    assert (event.author, event.agent_id) == (author, agent_id)


def test_private_note_is_marked_private(adapter: ChatwootAdapter) -> None:
    (event,) = normalize(adapter, samples.chatwoot_private_note(SECRET, timestamp_s=NOW_S)).events
    assert (event.private, event.author) == (True, Author.AGENT)


def test_activity_and_other_events_are_ignored(adapter: ChatwootAdapter) -> None:
    activity = samples.chatwoot_message_payload(message_type="activity", content="Resolved")
    assert normalize(adapter, signed(activity)) == Normalized([], 1)
    for event in ("conversation_created", "contact_updated", "webwidget_triggered",
                  "conversation_typing_on"):
        payload = samples.chatwoot_conversation_payload(event=event)
        assert normalize(adapter, signed(payload)) == Normalized([], 1)


def test_csat_rating(adapter: ChatwootAdapter) -> None:
    (event,) = normalize(adapter, samples.chatwoot_csat(SECRET, rating=4,
                                                        timestamp_s=NOW_S)).events
    assert (event.type, event.score, event.scale) == (EventType.CSAT, 4.0, 5)
    assert event.conversation_id == CONVERSATION
    assert event.occurred_at_ms == NOW_S * 1000  # when Chatwoot reported the answer


def test_message_updated_without_rating_is_ignored(adapter: ChatwootAdapter) -> None:
    payload = samples.chatwoot_message_payload(event="message_updated", content_type="input_csat")
    assert normalize(adapter, signed(payload)) == Normalized([], 1)
    edit = samples.chatwoot_message_payload(event="message_updated")
    assert normalize(adapter, signed(edit)) == Normalized([], 1)


def test_out_of_range_rating_is_invalid(adapter: ChatwootAdapter) -> None:
    with pytest.raises(InvalidEvent):
        normalize(adapter, samples.chatwoot_csat(SECRET, rating=9, timestamp_s=NOW_S))


@pytest.mark.parametrize(("status", "previous", "expected"), [
    ("resolved", "open", EventType.RESOLVED),
    ("resolved", "pending", EventType.RESOLVED),
    ("open", "resolved", EventType.REOPENED),
    ("open", "pending", EventType.HANDOFF),
    ("snoozed", "open", None),
    ("open", "snoozed", None),
    ("pending", "open", None),
])
def test_status_changes(
    adapter: ChatwootAdapter, status: str, previous: str, expected: EventType | None
) -> None:
    result = normalize(adapter, samples.chatwoot_status(SECRET, status=status, previous=previous,
                                                        timestamp_s=NOW_S))
    if expected is None:
        assert result == Normalized([], 1)
        return
    (event,) = result.events
    assert event.type is expected
    assert event.conversation_id == CONVERSATION
    assert event.occurred_at_ms == (samples.DEFAULT_TIME_S + 600) * 1000 + 250  # updated_at


def test_handoff_names_the_assignee(adapter: ChatwootAdapter) -> None:
    (event,) = normalize(adapter, samples.chatwoot_status(SECRET, status="open", previous="pending",
                                                          timestamp_s=NOW_S)).events
    assert event.agent_id == "1"


def test_status_time_falls_back_to_the_signed_timestamp(adapter: ChatwootAdapter) -> None:
    (event,) = normalize(adapter, samples.chatwoot_status(SECRET, updated_at=None,
                                                          timestamp_s=NOW_S)).events
    assert event.occurred_at_ms == NOW_S * 1000


def test_assignment_and_labels(adapter: ChatwootAdapter) -> None:
    result = normalize(adapter, samples.chatwoot_assigned(SECRET, agent_id=3,
                                                          labels=["billing", "vip"],
                                                          timestamp_s=NOW_S))
    assigned, tagged = result.events
    assert (assigned.type, assigned.agent_id) == (EventType.ASSIGNED, "3")
    assert (tagged.type, tagged.tags) == (EventType.TAGGED, ("billing", "vip"))
    unassigned = samples.chatwoot_conversation_payload(
        event="conversation_updated", changed={"assignee_id": (3, None)}, assignee_id=None)
    assert normalize(adapter, signed(unassigned)) == Normalized([], 1)


def test_account_is_found_in_conversation_messages(adapter: ChatwootAdapter) -> None:
    payload = samples.chatwoot_conversation_payload(account_id=77)
    assert "account" not in payload
    (event,) = normalize(adapter, signed(payload)).events
    assert event.conversation_id == "chatwoot:77:10"


def test_missing_account_or_conversation_is_invalid(adapter: ChatwootAdapter) -> None:
    payload = samples.chatwoot_conversation_payload()
    payload["messages"] = []
    with pytest.raises(InvalidEvent) as caught:
        normalize(adapter, signed(payload))
    assert caught.value.field == "account.id"
    message = samples.chatwoot_message_payload()
    del message["conversation"]
    with pytest.raises(InvalidEvent) as caught:
        normalize(adapter, signed(message))
    assert caught.value.field == "conversation"


@pytest.mark.parametrize(("body", "field"), [
    (b"<html>", "body"), (b'"text"', "body"), (b'{"id": 1}', "event"),
])
def test_not_chatwoot_format(adapter: ChatwootAdapter, body: bytes, field: str) -> None:
    request = req(({}, body), "chatwoot")
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(request)
    assert caught.value.field == field


@pytest.mark.parametrize("skew_s", [-301, 301, -3600 * 24])
def test_stale_or_future_timestamp_is_refused(adapter: ChatwootAdapter, skew_s: int) -> None:
    with pytest.raises(SignatureInvalid):
        adapter.verify(req(samples.chatwoot_inbound(SECRET, timestamp_s=NOW_S + skew_s),
                           "chatwoot"))
    inside = NOW_S + (299 if skew_s > 0 else -299)
    adapter.verify(req(samples.chatwoot_inbound(SECRET, timestamp_s=inside), "chatwoot"))


@pytest.mark.parametrize(("name", "value"), [
    ("X-Chatwoot-Signature", None), ("X-Chatwoot-Signature", "sha256=zz"),
    ("X-Chatwoot-Signature", "deadbeef"), ("X-Chatwoot-Timestamp", None),
    ("X-Chatwoot-Timestamp", "yesterday"), ("X-Chatwoot-Timestamp", str(NOW_S + 1)),
    ("X-Chatwoot-Timestamp", "\uff11\uff12\uff13"),
])
def test_bad_signature_headers(adapter: ChatwootAdapter, name: str, value: str | None) -> None:
    request = with_headers(req(samples.chatwoot_inbound(SECRET, timestamp_s=NOW_S), "chatwoot"),
                           **{name: value})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_rotation() -> None:
    adapter = ChatwootAdapter("rotated," + SECRET)
    adapter.verify(req(samples.chatwoot_inbound(SECRET, timestamp_s=NOW_S), "chatwoot"))
    adapter.verify(req(samples.chatwoot_inbound("rotated", timestamp_s=NOW_S), "chatwoot"))
    with pytest.raises(SignatureInvalid):
        adapter.verify(req(samples.chatwoot_inbound("expired", timestamp_s=NOW_S), "chatwoot"))


def test_body_keeps_utf8_and_escapes_html_like_rails() -> None:
    _, body = samples.chatwoot_agent_reply(SECRET, timestamp_s=NOW_S)
    assert b"\\u003c3" in body
    _, body = samples.chatwoot_inbound(SECRET, content="très", timestamp_s=NOW_S)
    assert "très".encode() in body


def test_no_handshake(adapter: ChatwootAdapter) -> None:
    reply = adapter.handshake(WebhookRequest("GET", "/webhooks/chatwoot", {}, {}, b"", 0))
    assert reply.status == 405
    assert adapter.handshake(get("chatwoot", {"x": "1"})).status == 405
