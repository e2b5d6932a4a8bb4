"""LINE Messaging API: x-line-signature, verify call, events[]."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.line import LineAdapter
from processor.errors import InvalidEvent
from processor.events import Author
from processor.traffic import samples
from tests.unit.channels.support import get, req, with_headers

SECRET = "line-channel-secret"
DEST = samples.LINE_DESTINATION
USER = "U" + "4af4980629" * 3 + "ab"


@pytest.fixture
def adapter() -> LineAdapter:
    return LineAdapter(SECRET)


def normalize(adapter: LineAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "line")
    adapter.verify(request)
    return adapter.normalize(request)


def test_signature_is_base64_hmac_of_raw_body() -> None:
    headers, body = samples.line_inbound(SECRET)
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest())
    assert headers["x-line-signature"] == expected.decode()


def test_user_message(adapter: LineAdapter) -> None:
    result = normalize(adapter, samples.line_inbound(SECRET, text="こんにちは",
                                                     timestamp_ms=1_700_000_000_456))
    (event,) = result.events
    assert event.author is Author.CUSTOMER
    assert event.event_id == f"line:{DEST}:01FZ74A0TDDPYRVKNK77XKC3ZR"
    assert event.conversation_id == f"line:{DEST}:{USER}"
    assert (event.customer_id, event.account_id) == (USER, DEST)
    assert event.occurred_at_ms == 1_700_000_000_456


def test_group_message_thread_is_the_group(adapter: LineAdapter) -> None:
    event = samples.line_message_event(group_id="C" + "1" * 32)
    (found,) = normalize(adapter, samples.line_batch(SECRET, [event])).events
    assert found.conversation_id == f"line:{DEST}:C{'1' * 32}"
    assert found.customer_id == USER


def test_console_verify_call_is_accepted_with_no_events(adapter: LineAdapter) -> None:
    assert normalize(adapter, samples.line_verify(SECRET)) == Normalized([], 0)


def test_batch_and_ignored_event_types(adapter: LineAdapter) -> None:
    events = [samples.line_message_event(webhook_event_id=f"01E{i}", message_id=str(i),
                                         timestamp_ms=1000 + i) for i in range(3)]
    events.append({"type": "unsend", "timestamp": 5, "mode": "active", "webhookEventId": "01X",
                   "deliveryContext": {"isRedelivery": False},
                   "source": {"type": "user", "userId": USER}, "unsend": {"messageId": "1"}})
    result = normalize(adapter, samples.line_batch(SECRET, events))
    assert [e.event_id[-4:] for e in result.events] == ["01E0", "01E1", "01E2"]
    assert result.ignored == 1


def test_follow_is_ignored(adapter: LineAdapter) -> None:
    assert normalize(adapter, samples.line_follow(SECRET)) == Normalized([], 1)


def test_redelivery_keeps_the_event_id(adapter: LineAdapter) -> None:
    first = normalize(adapter, samples.line_inbound(SECRET)).events[0]
    again = normalize(adapter, samples.line_inbound(SECRET, redelivery=True)).events[0]
    assert first.event_id == again.event_id
    assert again.extra.get("redelivery") is True


def test_non_ascii_resigned_differently_fails(adapter: LineAdapter) -> None:
    headers, body = samples.line_inbound(SECRET, text="café")
    escaped = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert escaped != body
    with pytest.raises(SignatureInvalid):
        adapter.verify(req((headers, escaped), "line"))


@pytest.mark.parametrize("signature", [None, "", "not base64!", "AAAA", "é", "=" * 44])
def test_bad_signatures(adapter: LineAdapter, signature: str | None) -> None:
    request = with_headers(req(samples.line_inbound(SECRET), "line"),
                           **{"x-line-signature": signature})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_rotation() -> None:
    adapter = LineAdapter("next," + SECRET)
    adapter.verify(req(samples.line_inbound(SECRET), "line"))
    with pytest.raises(SignatureInvalid):
        adapter.verify(req(samples.line_inbound("gone"), "line"))


@pytest.mark.parametrize(("body", "field"), [
    ({"events": []}, "destination"),
    ({"destination": DEST}, "events"),
    ({"destination": DEST, "events": [{"type": "message", "message": {"id": "1"},
                                       "timestamp": 1, "source": {"type": "user",
                                                                  "userId": USER}}]},
     "events[0].webhookEventId"),
    ({"destination": DEST, "events": [{"type": "message", "message": {"id": "1"},
                                       "webhookEventId": "e", "timestamp": 1,
                                       "source": {"type": "planet"}}]},
     "events[0].source.type"),
])
def test_not_line_format(adapter: LineAdapter, body: dict[str, object], field: str) -> None:
    raw = json.dumps(body).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest())
    request = req(({"x-line-signature": signature.decode()}, raw), "line")
    adapter.verify(request)
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(request)
    assert caught.value.field == field


def test_no_get_handshake(adapter: LineAdapter) -> None:
    assert adapter.handshake(get("line", {})).status == 405
