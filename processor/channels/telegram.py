"""Telegram Bot API webhooks.

Telegram signs nothing: `setWebhook(secret_token=...)` makes it send the secret in
`X-Telegram-Bot-Api-Secret-Token`, compared in constant time. The body is not covered, so
integrity rests on TLS. There is no GET handshake.

One Update per POST, `update_id` increasing:
- `message` in a chat with the bot -> customer message (another bot's message -> bot).
- `business_message` (a Telegram Business account connected to the bot): from the customer
  (`from.id == chat.id`) -> customer; typed by the account owner -> agent `<from.id>`; sent by a
  bot on the owner's behalf (`sender_business_bot`) -> bot.
- The bot's own sendMessage calls are never delivered back, so plain-bot replies are not
  visible here: send them through the canonical feed.
- `edited_message` and every other update kind (callback queries, reactions, channel posts,
  chat member changes) -> ignored; service messages (members joined, pins, ...) -> ignored.

Telegram updates do not name the bot, so the account is the adapter's `account_id`
(default `bot`): conversation_id = `telegram:<account>:<chat.id>`.
"""

from __future__ import annotations

from typing import Final

from processor.channels._support import (
    JsonObject,
    SecretSet,
    build_event,
    epoch_ms,
    error_reply,
    get_id,
    get_object,
    header,
    json_object,
    opt_id,
    opt_object,
    secret_matches,
    signature_guard,
)
from processor.channels.base import Normalized, SignatureInvalid, WebhookReply, WebhookRequest
from processor.events import Author, ConversationEvent, EventType

__all__ = ["SECRET_HEADER", "TelegramAdapter"]

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
_SERVICE_KEYS: Final = frozenset({
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo",
    "delete_chat_photo", "group_chat_created", "supergroup_chat_created",
    "channel_chat_created", "message_auto_delete_timer_changed", "migrate_to_chat_id",
    "migrate_from_chat_id", "pinned_message", "forum_topic_created", "forum_topic_edited",
    "forum_topic_closed", "forum_topic_reopened", "video_chat_started", "video_chat_ended",
    "chat_background_set", "boost_added", "write_access_allowed", "users_shared",
    "chat_shared", "proximity_alert_triggered",
})


class TelegramAdapter:
    """Thread = chat id; event_id = telegram:<account>:<update_id>."""

    name: str = "telegram"

    def __init__(self, secret: str, account_id: str = "bot") -> None:
        self._secrets = SecretSet(secret)
        self._account = account_id

    def __repr__(self) -> str:
        return f"TelegramAdapter(account_id={self._account!r})"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        return error_reply(
            405, "Telegram has no webhook handshake: register with setWebhook(secret_token=...)"
        )

    def verify(self, request: WebhookRequest) -> None:
        with signature_guard(SECRET_HEADER):
            given = header(request.headers, SECRET_HEADER)
            if not given:
                raise SignatureInvalid(f"missing {SECRET_HEADER}")
            token = given.encode("ascii")
            if not secret_matches(self._secrets, lambda key: key, token):
                raise SignatureInvalid(f"{SECRET_HEADER} does not match")

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply()

    def normalize(self, request: WebhookRequest) -> Normalized:
        update = json_object(request.body)
        update_id = get_id(update, "update_id", "update_id")
        for key, business in (("message", False), ("business_message", True)):
            if update.get(key) is not None:
                message = get_object(update, key, key)
                event = self._message(update_id, message, key, business)
                return Normalized([] if event is None else [event], 0 if event else 1)
        return Normalized([], ignored=1)

    def _message(
        self, update_id: str, message: JsonObject, path: str, business: bool
    ) -> ConversationEvent | None:
        if _SERVICE_KEYS.intersection(message):
            return None
        chat = get_id(get_object(message, "chat", f"{path}.chat"), "id", f"{path}.chat.id")
        get_id(message, "message_id", f"{path}.message_id")
        occurred_ms = epoch_ms(message.get("date"), f"{path}.date", unit="s")
        sender = opt_object(message, "from") or {}
        sender_id = opt_id(sender, "id")
        author, agent_id = _author(message, sender, sender_id, chat, business)
        customer = sender_id if author is Author.CUSTOMER and sender_id else None
        return build_event({
            "event_id": f"telegram:{self._account}:{update_id}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": self._account,
            "conversation_id": f"telegram:{self._account}:{chat}",
            "customer_id": customer or (chat if business else None),
            "occurred_at": occurred_ms,
            "author": author.value,
            "agent_id": agent_id,
            "business_connection_id": opt_id(message, "business_connection_id"),
        })


def _author(
    message: JsonObject, sender: JsonObject, sender_id: str | None, chat: str, business: bool
) -> tuple[Author, str | None]:
    business_bot = opt_object(message, "sender_business_bot")
    if business_bot is not None:
        return Author.BOT, f"telegram-bot:{opt_id(business_bot, 'id') or 'unknown'}"
    if sender.get("is_bot") is True:
        return Author.BOT, f"telegram-bot:{sender_id or 'unknown'}"
    if business and sender_id is not None and sender_id != chat:
        return Author.AGENT, sender_id
    return Author.CUSTOMER, None
