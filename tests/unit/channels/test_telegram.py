"""Telegram Bot API: secret-token header, updates, business chats."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processor.channels.base import Normalized, SignatureInvalid
from processor.channels.telegram import TelegramAdapter
from processor.errors import InvalidEvent
from processor.events import Author
from processor.traffic import samples
from tests.unit.channels.support import get, req, with_headers

SECRET = "tg_Secret-Token_1"


@pytest.fixture
def adapter() -> TelegramAdapter:
    return TelegramAdapter(SECRET)


def normalize(adapter: TelegramAdapter, signed: samples.Signed) -> Normalized:
    request = req(signed, "telegram")
    adapter.verify(request)
    return adapter.normalize(request)


def test_private_chat_message_is_customer(adapter: TelegramAdapter) -> None:
    signed = samples.telegram_inbound(SECRET, update_id=77, chat_id=123, date_s=1_700_000_000,
                                      text="Привет")
    (event,) = normalize(adapter, signed).events
    assert event.author is Author.CUSTOMER
    assert event.event_id == "telegram:bot:77"
    assert event.conversation_id == "telegram:bot:123"
    assert event.customer_id == "123"
    assert event.occurred_at_ms == 1_700_000_000_000


def test_business_chat_owner_is_agent_bot_is_bot_customer_is_customer(
    adapter: TelegramAdapter,
) -> None:
    (owner,) = normalize(adapter, samples.telegram_business_message(SECRET)).events
    assert (owner.author, owner.agent_id) == (Author.AGENT, "7001002003")
    assert owner.conversation_id == "telegram:bot:5551234567"
    assert owner.customer_id == "5551234567"
    (bot,) = normalize(adapter, samples.telegram_business_message(SECRET, by_bot=True)).events
    assert (bot.author, bot.agent_id) == (Author.BOT, "telegram-bot:4242")
    (customer,) = normalize(adapter, samples.telegram_business_message(
        SECRET, from_owner=False)).events
    assert customer.author is Author.CUSTOMER
    assert owner.conversation_id == customer.conversation_id


@pytest.mark.parametrize("builder", [samples.telegram_edited, samples.telegram_reaction])
def test_edits_and_reactions_are_ignored(
    adapter: TelegramAdapter, builder: Callable[[str], samples.Signed]
) -> None:
    result = normalize(adapter, builder(SECRET))
    assert (result.events, result.ignored) == ([], 1)


def test_service_messages_are_ignored(adapter: TelegramAdapter) -> None:
    update = samples.telegram_message_update()
    update["message"]["new_chat_members"] = [{"id": 1, "is_bot": False, "first_name": "x"}]
    result = normalize(adapter, samples.telegram_signed(SECRET, update))
    assert (result.events, result.ignored) == ([], 1)


def test_account_id_is_configurable() -> None:
    adapter = TelegramAdapter(SECRET, account_id="acme_support_bot")
    event = normalize(adapter, samples.telegram_inbound(SECRET)).events[0]
    assert event.conversation_id.startswith("telegram:acme_support_bot:")


@pytest.mark.parametrize(("update", "field"), [
    ({"message": {}}, "update_id"),
    ({"update_id": 1, "message": {"message_id": 1, "date": 1}}, "message.chat"),
    ({"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5}}}, "message.date"),
    ({"update_id": 1, "message": "hello"}, "message"),
    ({"update_id": True}, "update_id"),
])
def test_not_an_update(adapter: TelegramAdapter, update: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalize(adapter, samples.telegram_signed(SECRET, update))
    assert caught.value.field == field


@pytest.mark.parametrize("token", [None, "", "wrong", SECRET + "x", "tökén", "\udcff"])
def test_wrong_missing_or_malformed_secret_token(
    adapter: TelegramAdapter, token: str | None
) -> None:
    request = with_headers(req(samples.telegram_inbound(SECRET), "telegram"),
                           **{"X-Telegram-Bot-Api-Secret-Token": token})
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


def test_rotation() -> None:
    adapter = TelegramAdapter("new_token," + SECRET)
    adapter.verify(req(samples.telegram_inbound(SECRET), "telegram"))
    adapter.verify(req(samples.telegram_inbound("new_token"), "telegram"))
    with pytest.raises(SignatureInvalid):
        adapter.verify(req(samples.telegram_inbound("old_token"), "telegram"))


def test_token_does_not_cover_the_body(adapter: TelegramAdapter) -> None:
    """Documented limitation: Telegram signs nothing; a changed body still verifies."""
    headers, _ = samples.telegram_inbound(SECRET)
    adapter.verify(req((headers, b"{}"), "telegram"))


def test_no_handshake(adapter: TelegramAdapter) -> None:
    reply = adapter.handshake(get("telegram", {}))
    assert reply.status == 405
    assert b"setWebhook" in reply.body
