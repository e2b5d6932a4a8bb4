"""X (Twitter) Account Activity API webhooks: direct messages.

- Signature: `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer secret, raw
  body)>`.
- CRC: GET `?crc_token=...` -> `{"response_token": "sha256=<base64 HMAC-SHA256(consumer secret,
  crc_token)>"}`, signed with the current (first) secret.

Body: `{"for_user_id": <subscribed account>, "direct_message_events": [{"type":
"message_create", "id", "created_timestamp" (ms, string), "message_create": {"sender_id",
"target": {"recipient_id"}, "source_app_id", "message_data": {...}}}], "users": {...},
"apps": {...}}`.
- A DM from someone else -> customer message.
- A DM sent by the subscribed account (`sender_id == for_user_id`) -> business-side message:
  bot `app:<source_app_id>` when that app is in `bot_app_ids`, else agent `unknown` (X does not
  say which person typed it).
- tweets, likes, follows, typing and read events -> ignored.
Thread = the sorted pair of user ids; event_id = `x:<for_user_id>:<event id>`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Final

import orjson

from processor.channels._support import (
    UNKNOWN_AGENT,
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
    secret_matches,
    signature_guard,
)
from processor.channels.base import Normalized, SignatureInvalid, WebhookReply, WebhookRequest
from processor.events import Author, ConversationEvent, EventType

__all__ = ["SIGNATURE_HEADER", "XAdapter", "crc_response_token"]

SIGNATURE_HEADER: Final = "x-twitter-webhooks-signature"
_DM_KEY: Final = "direct_message_events"
_CONTEXT_KEYS: Final = frozenset({"for_user_id", "users", "apps", "user_has_blocked",
                                   "is_blocked_by", "source", "target"})


def crc_response_token(secret: bytes, crc_token: str) -> str:
    digest = hmac_sha256(secret, crc_token.encode("utf-8", "surrogatepass"))
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def _pair(first: str, second: str) -> str:
    low, high = sorted((first, second), key=lambda uid: (len(uid), uid))
    return f"{low}-{high}"


class XAdapter:
    """Direct messages of one subscribed account."""

    name: str = "x"

    def __init__(self, secret: str, bot_app_ids: Iterable[str] = ()) -> None:
        self._secrets = SecretSet(secret)
        self._bot_app_ids = frozenset(str(app) for app in bot_app_ids)

    def __repr__(self) -> str:
        return "XAdapter()"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        crc_token = request.query.get("crc_token")
        if not crc_token:
            return error_reply(400, "crc_token is missing")
        body = orjson.dumps({"response_token": crc_response_token(self._secrets.current,
                                                                   crc_token)})
        return WebhookReply(status=200, body=body, content_type="application/json")

    def verify(self, request: WebhookRequest) -> None:
        with signature_guard(SIGNATURE_HEADER):
            provided = b64_digest(header(request.headers, SIGNATURE_HEADER), SIGNATURE_HEADER,
                                  prefix="sha256=")
            if not secret_matches(self._secrets, lambda key: hmac_sha256(key, request.body),
                                  provided):
                raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match the body")

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply()

    def normalize(self, request: WebhookRequest) -> Normalized:
        payload = json_object(request.body)
        account = get_id(payload, "for_user_id", "for_user_id")
        events: list[ConversationEvent] = []
        ignored = 0
        for index, raw in enumerate(get_list(payload, _DM_KEY, _DM_KEY, required=False)):
            path = f"{_DM_KEY}[{index}]"
            event = self._dm(account, as_object(raw, path), path)
            if event is None:
                ignored += 1
            else:
                events.append(event)
        for key, value in payload.items():
            if key != _DM_KEY and key not in _CONTEXT_KEYS:
                ignored += len(value) if isinstance(value, list) else 1
        return Normalized(events, ignored)

    def _dm(self, account: str, event: JsonObject, path: str) -> ConversationEvent | None:
        if event.get("type") != "message_create":
            return None
        event_id = get_id(event, "id", f"{path}.id")
        create = get_object(event, "message_create", f"{path}.message_create")
        sender = get_id(create, "sender_id", f"{path}.message_create.sender_id")
        target = get_object(create, "target", f"{path}.message_create.target")
        recipient = get_id(target, "recipient_id", f"{path}.message_create.target.recipient_id")
        outbound = sender == account
        customer = recipient if outbound else sender
        if outbound:
            app = opt_id(create, "source_app_id")
            bot = app is not None and app in self._bot_app_ids
            author, agent_id = (Author.BOT, f"app:{app}") if bot else (Author.AGENT,
                                                                        UNKNOWN_AGENT)
        else:
            author, agent_id = Author.CUSTOMER, None
        return build_event({
            "event_id": f"x:{account}:{event_id}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"x:{account}:{_pair(sender, recipient)}",
            "customer_id": customer,
            "occurred_at": epoch_ms(event.get("created_timestamp"),
                                    f"{path}.created_timestamp", unit="ms"),
            "author": author.value,
            "agent_id": agent_id,
        })
