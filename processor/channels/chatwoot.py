"""Chatwoot webhooks (account webhooks, API-inbox webhooks, agent-bot webhooks).

Signature (Chatwoot `lib/webhooks/trigger.rb`, sent only when the webhook has a secret):
`X-Chatwoot-Timestamp: <epoch seconds>`, `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret,
"<timestamp>.<raw body>")>`, `X-Chatwoot-Delivery: <uuid>`. Timestamps more than 5 minutes from
arrival, in either direction, are refused. There is no GET handshake.

Events (one per POST):
- `message_created`: `incoming` -> customer; `outgoing` by `sender.type=user` -> agent
  `<sender.id>`; by `agent_bot` (or any other non-human sender, e.g. Captain) -> bot
  `<type>:<id>`; with `content_attributes.automation_rule_id` -> bot `automation:<rule>`;
  `template` messages (greetings, CSAT surveys, ...) -> bot `template`; no sender -> agent
  `unknown`. `private: true` -> private note (never counts). `activity` -> ignored.
- `message_updated` with `content_type=input_csat` and
  `content_attributes.submitted_values.csat_survey_response.rating` -> csat, scale 5.
- `conversation_status_changed`: `resolved` -> resolved; `open` after `resolved` -> reopened;
  `open` after `pending` (the bot handed over) -> handoff; others -> ignored.
- `conversation_updated`: `assignee_id` set -> assigned (agent = assignee); `label_list`
  changed -> tagged with the labels.
- everything else -> ignored.
Thread = (account, conversation display id); event time = the message's `created_at` (epoch
seconds or an ISO string, depending on the Chatwoot version); for conversation events
`updated_at`, else the signed timestamp, else `timestamp`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from processor.channels._support import (
    UNKNOWN_AGENT,
    JsonObject,
    SecretSet,
    build_event,
    epoch_ms,
    error_reply,
    get_id,
    get_object,
    header,
    hex_digest,
    hmac_sha256,
    id_text,
    json_object,
    opt_id,
    opt_object,
    opt_str,
    secret_matches,
    signature_guard,
)
from processor.channels.base import Normalized, SignatureInvalid, WebhookReply, WebhookRequest
from processor.errors import InvalidEvent
from processor.events import Author, ConversationEvent, EventType

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ChatwootAdapter",
    "chatwoot_signature",
]

SIGNATURE_HEADER: Final = "X-Chatwoot-Signature"
TIMESTAMP_HEADER: Final = "X-Chatwoot-Timestamp"
DELIVERY_HEADER: Final = "X-Chatwoot-Delivery"
FRESHNESS_S: Final = 300
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_MESSAGE_TYPES: Final = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
_MAX_TAGS: Final = 64

Found = tuple[list[ConversationEvent], int]


def chatwoot_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256(secret, timestamp.encode("ascii") + b"." + body).hex()


class ChatwootAdapter:
    """Thread = chatwoot:<account id>:<conversation display id>."""

    name: str = "chatwoot"

    def __init__(self, secret: str) -> None:
        self._secrets = SecretSet(secret)
        self._handlers: dict[str, Callable[[JsonObject, WebhookRequest], Found]] = {
            "message_created": self._message_created,
            "message_updated": self._message_updated,
            "conversation_status_changed": self._status_changed,
            "conversation_updated": self._conversation_updated,
        }

    def __repr__(self) -> str:
        return "ChatwootAdapter()"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        return error_reply(405, "Chatwoot sends no verification call: POST webhook events")

    def verify(self, request: WebhookRequest) -> None:
        with signature_guard(SIGNATURE_HEADER):
            provided = hex_digest(header(request.headers, SIGNATURE_HEADER), SIGNATURE_HEADER)
            stamp = (header(request.headers, TIMESTAMP_HEADER) or "").strip()
            if not _TIMESTAMP.fullmatch(stamp):
                raise SignatureInvalid(f"{TIMESTAMP_HEADER} must be epoch seconds")
            if abs(request.received_at_ms // 1000 - int(stamp)) > FRESHNESS_S:
                raise SignatureInvalid(f"{TIMESTAMP_HEADER} is more than 5 minutes from now")
            signed = stamp.encode("ascii") + b"." + request.body
            if not secret_matches(self._secrets, lambda key: hmac_sha256(key, signed),
                                  provided):
                raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match")

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply()

    def normalize(self, request: WebhookRequest) -> Normalized:
        payload = json_object(request.body)
        name = payload.get("event")
        if not isinstance(name, str):
            raise InvalidEvent("event", "is required")
        handler = self._handlers.get(name)
        if handler is None:
            return Normalized([], ignored=1)
        events, ignored = handler(payload, request)
        return Normalized(events, ignored)

    # --- messages ----------------------------------------------------------------------------

    def _message_created(self, payload: JsonObject, request: WebhookRequest) -> Found:
        kind = payload.get("message_type")
        kind = _MESSAGE_TYPES.get(kind, kind) if isinstance(kind, int) else kind
        if kind not in ("incoming", "outgoing", "template"):
            return [], 1
        account = _account(payload)
        conversation = get_object(payload, "conversation", "conversation")
        thread = get_id(conversation, "id", "conversation.id")
        message_id = get_id(payload, "id", "id")
        sender = opt_object(payload, "sender")
        if kind == "incoming":
            author, agent_id = Author.CUSTOMER, None
        else:
            author, agent_id = _business_author(kind, payload, sender)
        meta = opt_object(conversation, "meta") or {}
        event = build_event({
            "event_id": f"chatwoot:{account}:{message_id}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"chatwoot:{account}:{thread}",
            "customer_id": _customer(conversation, sender if kind == "incoming" else None),
            "occurred_at": _time_ms(payload.get("created_at"), "created_at"),
            "author": author.value,
            "agent_id": agent_id,
            "private": payload.get("private") is True or None,
            "priority": opt_str(conversation, "priority"),
            "team": opt_str(opt_object(meta, "team") or {}, "name"),
            "inbox_id": opt_id(conversation, "inbox_id"),
        })
        return [event], 0

    def _message_updated(self, payload: JsonObject, request: WebhookRequest) -> Found:
        if payload.get("content_type") != "input_csat":
            return [], 1
        attributes = opt_object(payload, "content_attributes") or {}
        submitted = opt_object(attributes, "submitted_values") or {}
        response = opt_object(submitted, "csat_survey_response") or {}
        rating = response.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int | float):
            return [], 1
        account = _account(payload)
        conversation = get_object(payload, "conversation", "conversation")
        thread = get_id(conversation, "id", "conversation.id")
        message_id = get_id(payload, "id", "id")
        stamp = _signed_time(request)
        event = build_event({
            "event_id": f"chatwoot:{account}:{message_id}:csat",
            "type": EventType.CSAT.value,
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"chatwoot:{account}:{thread}",
            "customer_id": _customer(conversation, None),
            "occurred_at": stamp if stamp is not None else _time_ms(payload.get("created_at"),
                                                                      "created_at"),
            "score": rating,
            "scale": 5,
        })
        return [event], 0

    # --- conversations -----------------------------------------------------------------------

    def _conversation_base(self, payload: JsonObject, request: WebhookRequest) -> JsonObject:
        account = _account(payload)
        thread = get_id(payload, "id", "id")
        return {
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"chatwoot:{account}:{thread}",
            "customer_id": _customer(payload, None),
            "occurred_at": _conversation_time(payload, request),
        }

    def _status_changed(self, payload: JsonObject, request: WebhookRequest) -> Found:
        status = payload.get("status")
        previous = _changes(payload).get("status", (None, None))[0]
        if status == "resolved":
            event_type = EventType.RESOLVED
        elif status == "open" and previous == "resolved":
            event_type = EventType.REOPENED
        elif status == "open" and previous == "pending":
            event_type = EventType.HANDOFF
        else:
            return [], 1
        base = self._conversation_base(payload, request)
        event = build_event({
            **base,
            "event_id": f"{base['conversation_id']}:{event_type.value}:{base['occurred_at']}",
            "type": event_type.value,
            "agent_id": _assignee(payload) if event_type is EventType.HANDOFF else None,
        })
        return [event], 0

    def _conversation_updated(self, payload: JsonObject, request: WebhookRequest) -> Found:
        changes = _changes(payload)
        found: list[ConversationEvent] = []
        assignee = changes.get("assignee_id", (None, None))[1]
        tags = _tags(changes.get("label_list", (None, None))[1])
        if assignee is None and not tags:
            return [], 1
        base = self._conversation_base(payload, request)
        prefix = f"{base['conversation_id']}"
        if assignee is not None:
            agent = _assignee(payload) or id_text(assignee) or UNKNOWN_AGENT
            found.append(build_event({
                **base,
                "event_id": f"{prefix}:assigned:{agent}:{base['occurred_at']}",
                "type": EventType.ASSIGNED.value,
                "agent_id": agent,
            }))
        if tags:
            found.append(build_event({
                **base,
                "event_id": f"{prefix}:tagged:{base['occurred_at']}",
                "type": EventType.TAGGED.value,
                "tags": tags,
            }))
        return found, 0


# --- payload readers -------------------------------------------------------------------------


def _business_author(
    kind: str, payload: JsonObject, sender: JsonObject | None
) -> tuple[Author, str]:
    attributes = opt_object(payload, "content_attributes") or {}
    rule = opt_id(attributes, "automation_rule_id")
    if rule is not None:
        return Author.BOT, f"automation:{rule}"
    if kind == "template":
        return Author.BOT, "template"
    if sender is None:
        return Author.AGENT, UNKNOWN_AGENT
    sender_type = opt_str(sender, "type") or ""
    sender_id = opt_id(sender, "id") or UNKNOWN_AGENT
    if sender_type == "user":
        return Author.AGENT, sender_id
    if sender_type in ("", "contact"):
        return Author.AGENT, UNKNOWN_AGENT
    return Author.BOT, f"{sender_type[:40]}:{sender_id}"


def _account(payload: JsonObject) -> str:
    """The account id, wherever this Chatwoot version put it."""
    account = opt_id(opt_object(payload, "account") or {}, "id") or opt_id(payload, "account_id")
    if account is not None:
        return account
    conversation = opt_object(payload, "conversation") or {}
    account = opt_id(conversation, "account_id")
    if account is not None:
        return account
    for holder in (payload, conversation):
        messages = holder.get("messages")
        for message in messages if isinstance(messages, list) else []:
            found = opt_id(message, "account_id") if isinstance(message, dict) else None
            if found is not None:
                return found
    raise InvalidEvent("account.id", "is required (no account id anywhere in the payload)")


def _customer(conversation: JsonObject, sender: JsonObject | None) -> str | None:
    if sender is not None and opt_str(sender, "type") in (None, "contact"):
        found = opt_id(sender, "id")
        if found is not None:
            return found
    meta_sender = opt_object(opt_object(conversation, "meta") or {}, "sender") or {}
    return opt_id(meta_sender, "id") or opt_id(
        opt_object(conversation, "contact_inbox") or {}, "contact_id"
    )


def _assignee(payload: JsonObject) -> str | None:
    assignee = opt_object(opt_object(payload, "meta") or {}, "assignee") or {}
    if opt_str(assignee, "type") not in (None, "user"):
        return None
    return opt_id(assignee, "id")


def _changes(payload: JsonObject) -> dict[str, tuple[Any, Any]]:
    """`changed_attributes` ([{attr: {previous_value, current_value}}]) as attr -> (old, new)."""
    raw = payload.get("changed_attributes")
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
    changes: dict[str, tuple[Any, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        for name, change in item.items():
            if isinstance(change, dict):
                changes[name] = (change.get("previous_value"), change.get("current_value"))
    return changes


def _tags(value: Any) -> list[str]:
    labels = value.split(",") if isinstance(value, str) else value
    if not isinstance(labels, list):
        return []
    tags = [label.strip()[:128] for label in labels if isinstance(label, str) and label.strip()]
    return tags[:_MAX_TAGS]


def _time_ms(value: Any, path: str) -> int:
    """Chatwoot times: epoch seconds (int, float or digits) or an ISO-8601 string."""
    if not isinstance(value, str) or value.isdigit():
        return epoch_ms(value, path, unit="s")
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("no offset")
        millis = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent(path, "must be epoch seconds or an ISO-8601 time with offset") from None
    return millis


def _signed_time(request: WebhookRequest) -> int | None:
    stamp = (header(request.headers, TIMESTAMP_HEADER) or "").strip()
    return int(stamp) * 1000 if _TIMESTAMP.fullmatch(stamp) else None


def _conversation_time(payload: JsonObject, request: WebhookRequest) -> int:
    if payload.get("updated_at") is not None:
        return _time_ms(payload["updated_at"], "updated_at")
    stamp = _signed_time(request)
    if stamp is not None:
        return stamp
    return _time_ms(payload.get("timestamp"), "timestamp")
