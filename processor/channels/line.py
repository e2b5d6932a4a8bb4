"""LINE Messaging API webhooks.

`x-line-signature: base64(HMAC-SHA256(channel secret, raw body))`. The console's "Verify" button
POSTs a signed `{"destination": <bot user id>, "events": []}`: answered 200 with zero events, so
there is no GET handshake.

Body: `{"destination": ..., "events": [{"type", "timestamp" (ms), "webhookEventId", "source":
{"type": "user"|"group"|"room", "userId", "groupId", "roomId"}, "message": {"id", ...}}]}`.
- `type=message` -> customer message (LINE never echoes the bot's own replies).
- follow/unfollow/join/leave/postback/unsend/read/... -> ignored.
Thread = the group, room or user id; event_id = `line:<destination>:<webhookEventId>`, which a
redelivery (`deliveryContext.isRedelivery`) keeps.
"""

from __future__ import annotations

from typing import Final

from processor.channels._support import (
    JsonObject,
    SecretSet,
    as_object,
    b64_digest,
    build_event,
    epoch_ms,
    error_reply,
    get_id,
    get_list,
    get_object,
    header,
    hmac_sha256,
    json_object,
    opt_id,
    opt_object,
    secret_matches,
    signature_guard,
)
from processor.channels.base import Normalized, SignatureInvalid, WebhookReply, WebhookRequest
from processor.errors import InvalidEvent
from processor.events import Author, ConversationEvent, EventType

__all__ = ["SIGNATURE_HEADER", "LineAdapter"]

SIGNATURE_HEADER: Final = "x-line-signature"
_THREAD_KEYS: Final = {"group": "groupId", "room": "roomId", "user": "userId"}


class LineAdapter:
    """Thread = source group/room/user id under the bot (`destination`)."""

    name: str = "line"

    def __init__(self, secret: str) -> None:
        self._secrets = SecretSet(secret)

    def __repr__(self) -> str:
        return "LineAdapter()"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        return error_reply(405, "LINE verifies the webhook URL with a signed POST, not a GET")

    def verify(self, request: WebhookRequest) -> None:
        with signature_guard(SIGNATURE_HEADER):
            provided = b64_digest(header(request.headers, SIGNATURE_HEADER), SIGNATURE_HEADER)
            if not secret_matches(self._secrets, lambda key: hmac_sha256(key, request.body),
                                  provided):
                raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match the body")

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply()

    def normalize(self, request: WebhookRequest) -> Normalized:
        payload = json_object(request.body)
        destination = get_id(payload, "destination", "destination")
        events: list[ConversationEvent] = []
        ignored = 0
        for index, raw in enumerate(get_list(payload, "events", "events")):
            path = f"events[{index}]"
            event = self._event(destination, as_object(raw, path), path)
            if event is None:
                ignored += 1
            else:
                events.append(event)
        return Normalized(events, ignored)

    def _event(self, destination: str, event: JsonObject, path: str) -> ConversationEvent | None:
        if event.get("type") != "message":
            return None
        event_id = get_id(event, "webhookEventId", f"{path}.webhookEventId")
        get_id(get_object(event, "message", f"{path}.message"), "id", f"{path}.message.id")
        source = get_object(event, "source", f"{path}.source")
        thread_key = _THREAD_KEYS.get(str(source.get("type")))
        if thread_key is None:
            raise InvalidEvent(f"{path}.source.type", "must be user, group or room")
        thread = get_id(source, thread_key, f"{path}.source.{thread_key}")
        redelivery = (opt_object(event, "deliveryContext") or {}).get("isRedelivery") is True
        return build_event({
            "event_id": f"line:{destination}:{event_id}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": destination,
            "conversation_id": f"line:{destination}:{thread}",
            "customer_id": opt_id(source, "userId"),
            "occurred_at": epoch_ms(event.get("timestamp"), f"{path}.timestamp", unit="ms"),
            "author": Author.CUSTOMER.value,
            "redelivery": redelivery or None,
        })
