"""WhatsApp Cloud API webhooks.

Payload: `{"object": "whatsapp_business_account", "entry": [{"id": <WABA>, "changes":
[{"field": "messages", "value": {"metadata": {"phone_number_id": ...}, "contacts": [...],
"messages": [...], "statuses": [...]}}]}]}`.

- `value.messages[]` -> message, author customer (reactions, system notices, edits, revokes and
  `request_welcome` are ignored: they start no clock).
- Messages the business sends through the API are never echoed. The only trace is
  `value.statuses[]`: one `sent` status per outbound wamid (then `delivered`, `read`). msgkpi
  counts the `sent` status as one outbound message with event_id
  `whatsapp:<phone_number_id>:<wamid>`, so a later `delivered`/`read` (ignored anyway) or a
  redelivery never counts twice. Who sent it comes from `biz_opaque_callback_data`
  (`agent:<id>` or `bot:<id>`, set on the Send API call); without a marker, a template in the
  marketing/utility/authentication pricing category counts as bot `template`, anything else as
  agent `unknown`. `delivered`, `read` and `failed` statuses are ignored.
- `field=smb_message_echoes` (WhatsApp Business app coexistence): messages typed in the app ->
  agent `unknown`.
- other fields (template status, account updates, ...) -> ignored.
"""

from __future__ import annotations

from typing import Final

from processor.channels._support import (
    UNKNOWN_AGENT,
    JsonObject,
    as_object,
    build_event,
    epoch_ms,
    get_id,
    get_list,
    get_object,
    opt_object,
    opt_str,
    parse_marker,
)
from processor.channels.base import Normalized, WebhookRequest
from processor.channels.meta import MetaWebhook
from processor.events import Author, ConversationEvent, EventType

__all__ = ["WhatsAppAdapter"]

_OBJECT: Final = "whatsapp_business_account"
_NOT_MESSAGES: Final = frozenset({"reaction", "system", "request_welcome", "edit", "revoke"})
_TEMPLATE_CATEGORIES: Final = frozenset(
    {"marketing", "marketing_lite", "utility", "authentication", "authentication_international"}
)


class WhatsAppAdapter(MetaWebhook):
    """Thread = (phone_number_id, wa_id); event_id = whatsapp:<phone_number_id>:<wamid>."""

    name: str = "whatsapp"

    def __init__(self, secret: str, verify_token: str) -> None:
        super().__init__(_OBJECT, secret, verify_token)

    def __repr__(self) -> str:
        return "WhatsAppAdapter()"

    def normalize(self, request: WebhookRequest) -> Normalized:
        entries, ours = self._entries(request)
        if not ours:
            return Normalized([], ignored=max(1, len(entries)))
        events: list[ConversationEvent] = []
        ignored = 0
        for index, raw_entry in enumerate(entries):
            entry = as_object(raw_entry, f"entry[{index}]")
            changes = get_list(entry, "changes", f"entry[{index}].changes")
            for position, raw_change in enumerate(changes):
                path = f"entry[{index}].changes[{position}]"
                found, skipped = self._change(as_object(raw_change, path), path)
                events.extend(found)
                ignored += skipped
        return Normalized(events, ignored)

    def _change(self, change: JsonObject, path: str) -> tuple[list[ConversationEvent], int]:
        field = change.get("field")
        if field not in ("messages", "smb_message_echoes"):
            return [], 1
        value = get_object(change, "value", f"{path}.value")
        metadata = get_object(value, "metadata", f"{path}.value.metadata")
        number = get_id(metadata, "phone_number_id", f"{path}.value.metadata.phone_number_id")
        found: list[ConversationEvent] = []
        skipped = len(get_list(value, "errors", f"{path}.value.errors", required=False))
        readers = (
            ("messages", self._inbound),
            ("statuses", self._status),
            ("message_echoes", self._echo),
        )
        seen_any = False
        for key, read in readers:
            for position, raw in enumerate(get_list(value, key, f"{path}.value.{key}",
                                                    required=False)):
                seen_any = True
                item_path = f"{path}.value.{key}[{position}]"
                event = read(number, as_object(raw, item_path), item_path)
                if event is None:
                    skipped += 1
                else:
                    found.append(event)
        if not seen_any and not skipped:
            skipped = 1
        return found, skipped

    def _event(self, number: str, wamid: str, wa_id: str, occurred_ms: int,
               author: Author, agent_id: str | None, **extra: str) -> ConversationEvent:
        return build_event({
            **extra,
            "event_id": f"whatsapp:{number}:{wamid}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": number,
            "conversation_id": f"whatsapp:{number}:{wa_id}",
            "customer_id": wa_id,
            "occurred_at": occurred_ms,
            "author": author.value,
            "agent_id": agent_id,
        })

    def _inbound(self, number: str, message: JsonObject, path: str) -> ConversationEvent | None:
        kind = opt_str(message, "type")
        if kind in _NOT_MESSAGES:
            return None
        wamid = get_id(message, "id", f"{path}.id")
        wa_id = get_id(message, "from", f"{path}.from")
        occurred_ms = epoch_ms(message.get("timestamp"), f"{path}.timestamp", unit="s")
        return self._event(number, wamid, wa_id, occurred_ms, Author.CUSTOMER, None)

    def _status(self, number: str, status: JsonObject, path: str) -> ConversationEvent | None:
        if status.get("status") != "sent":
            return None
        wamid = get_id(status, "id", f"{path}.id")
        wa_id = get_id(status, "recipient_id", f"{path}.recipient_id")
        occurred_ms = epoch_ms(status.get("timestamp"), f"{path}.timestamp", unit="s")
        author, agent_id = _status_sender(status)
        return self._event(number, wamid, wa_id, occurred_ms, author, agent_id, source="status")

    def _echo(self, number: str, echo: JsonObject, path: str) -> ConversationEvent:
        wamid = get_id(echo, "id", f"{path}.id")
        wa_id = get_id(echo, "to", f"{path}.to").lstrip("+") or "unknown"
        occurred_ms = epoch_ms(echo.get("timestamp"), f"{path}.timestamp", unit="s")
        return self._event(number, wamid, wa_id, occurred_ms, Author.AGENT, UNKNOWN_AGENT,
                           source="smb_message_echoes")


def _status_sender(status: JsonObject) -> tuple[Author, str]:
    marked = parse_marker(opt_str(status, "biz_opaque_callback_data"))
    if marked is not None:
        return marked
    pricing = opt_object(status, "pricing") or {}
    origin = opt_object(opt_object(status, "conversation") or {}, "origin") or {}
    category = opt_str(pricing, "category") or opt_str(origin, "type")
    if category in _TEMPLATE_CATEGORIES:
        return Author.BOT, "template"
    return Author.AGENT, UNKNOWN_AGENT
