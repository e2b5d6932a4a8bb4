"""Facebook Messenger (Page messaging) webhooks; Instagram messaging reuses this adapter.

Payload: `{"object": "page", "entry": [{"id": <page>, "time": ms, "messaging": [...],
"standby": [...]}]}`; each messaging item has `sender.id`, `recipient.id`, `timestamp` (ms) and
one of `message`, `read`, `delivery`, `reaction`, `postback`, `pass_thread_control`, ...

- `message` from the customer -> message, author customer.
- `message.is_echo` (sent by the Page) -> business-side message. Author and agent_id, in order:
  `message.metadata` = `agent:<id>` or `bot:<id>` (the string passed to the Send API);
  `message.app_id` in `bot_app_ids` -> bot `app:<app_id>`; otherwise agent `unknown`.
- `pass_thread_control` -> handoff, `take_thread_control` -> assigned (handover protocol);
  agent_id from a metadata marker, else `app:<new_owner_app_id>`.
- reads, deliveries, reactions, postbacks, edits, deletions, `changes` -> ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    opt_id,
    opt_object,
    opt_str,
    parse_marker,
)
from processor.channels.base import Normalized, WebhookRequest
from processor.channels.meta import MetaWebhook
from processor.events import Author, ConversationEvent, EventType

__all__ = ["MessagingAdapter", "MessengerAdapter"]

_HANDOVERS: Final = {
    "pass_thread_control": EventType.HANDOFF,
    "take_thread_control": EventType.ASSIGNED,
}
_ITEM_LISTS: Final = ("messaging", "standby")


class MessagingAdapter(MetaWebhook):
    """The Messenger Platform shape, shared by Messenger (`object=page`) and Instagram."""

    def __init__(
        self,
        *,
        name: str,
        object_name: str,
        secret: str,
        verify_token: str,
        bot_app_ids: Iterable[str] = (),
    ) -> None:
        super().__init__(object_name, secret, verify_token)
        self.name = name
        self._bot_app_ids = frozenset(str(app) for app in bot_app_ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def normalize(self, request: WebhookRequest) -> Normalized:
        entries, ours = self._entries(request)
        if not ours:
            return Normalized([], ignored=max(1, len(entries)))
        events: list[ConversationEvent] = []
        ignored = 0
        for index, raw_entry in enumerate(entries):
            path = f"entry[{index}]"
            entry = as_object(raw_entry, path)
            account = get_id(entry, "id", f"{path}.id")
            for key in _ITEM_LISTS:
                items = get_list(entry, key, f"{path}.{key}", required=False)
                for position, raw in enumerate(items):
                    item_path = f"{path}.{key}[{position}]"
                    event = self._item(account, as_object(raw, item_path), item_path)
                    if event is None:
                        ignored += 1
                    else:
                        events.append(event)
            ignored += len(get_list(entry, "changes", f"{path}.changes", required=False))
        return Normalized(events, ignored)

    # --- one messaging item ------------------------------------------------------------------

    def _item(self, account: str, item: JsonObject, path: str) -> ConversationEvent | None:
        if item.get("message") is not None:
            return self._message(account, item, path)
        for key, event_type in _HANDOVERS.items():
            if item.get(key) is not None:
                return self._handover(account, item, path, key, event_type)
        return None

    def _parties(self, account: str, item: JsonObject, path: str, echo: bool) -> str:
        """The customer's scoped id: whichever of sender/recipient is not the account."""
        sender = get_id(get_object(item, "sender", f"{path}.sender"), "id", f"{path}.sender.id")
        recipient = get_id(
            get_object(item, "recipient", f"{path}.recipient"), "id", f"{path}.recipient.id"
        )
        if sender == account:
            return recipient
        if recipient == account:
            return sender
        return recipient if echo else sender

    def _message(self, account: str, item: JsonObject, path: str) -> ConversationEvent | None:
        message = get_object(item, "message", f"{path}.message")
        if message.get("is_deleted") is True:
            return None
        echo = message.get("is_echo") is True
        customer = self._parties(account, item, path, echo)
        mid = get_id(message, "mid", f"{path}.message.mid")
        author, agent_id = self._business_author(message) if echo else (Author.CUSTOMER, None)
        return build_event({
            "event_id": f"{self.name}:{account}:{mid}",
            "type": EventType.MESSAGE.value,
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"{self.name}:{account}:{customer}",
            "customer_id": customer,
            "occurred_at": epoch_ms(item.get("timestamp"), f"{path}.timestamp", unit="ms"),
            "author": author.value,
            "agent_id": agent_id,
        })

    def _business_author(self, message: JsonObject) -> tuple[Author, str]:
        marked = parse_marker(opt_str(message, "metadata"))
        if marked is not None:
            return marked
        app_id = opt_id(message, "app_id")
        if app_id is not None and app_id in self._bot_app_ids:
            return Author.BOT, f"app:{app_id}"
        return Author.AGENT, UNKNOWN_AGENT

    def _handover(
        self, account: str, item: JsonObject, path: str, key: str, event_type: EventType
    ) -> ConversationEvent:
        control = opt_object(item, key) or {}
        customer = self._parties(account, item, path, echo=False)
        occurred_ms = epoch_ms(item.get("timestamp"), f"{path}.timestamp", unit="ms")
        marked = parse_marker(opt_str(control, "metadata"))
        new_owner = opt_id(control, "new_owner_app_id")
        if marked is not None:
            agent_id = marked[1]
        else:
            agent_id = f"app:{new_owner}" if new_owner else UNKNOWN_AGENT
        return build_event({
            "event_id": f"{self.name}:{account}:{customer}:{key}:{occurred_ms}",
            "type": event_type.value,
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"{self.name}:{account}:{customer}",
            "customer_id": customer,
            "occurred_at": occurred_ms,
            "agent_id": agent_id,
            "new_owner_app_id": new_owner,
        })


class MessengerAdapter(MessagingAdapter):
    """Facebook Page messaging: `object=page`, thread = (Page id, PSID)."""

    def __init__(self, secret: str, verify_token: str, bot_app_ids: Iterable[str] = ()) -> None:
        super().__init__(
            name="messenger",
            object_name="page",
            secret=secret,
            verify_token=verify_token,
            bot_app_ids=bot_app_ids,
        )
