"""Realistic platform-native webhook deliveries, signed the way each platform signs them.

Used by the tests and by the traffic simulator. Field names follow the platforms' documented
payloads (see docs/channels.md for the sources). Every `<platform>_<kind>(secret, ...)` builder
returns `(headers, body)` ready to POST to `/webhooks/<channel>`, except WeChat, whose
signature travels in the query string: its builders return `(query, body)`.

Serialization mimics the sender, because signatures cover the exact bytes:
- Meta escapes every non-ASCII character as `\\uXXXX` and `/` as `\\/`, without spaces.
- Chatwoot (Rails `to_json`) keeps UTF-8 and escapes `<`, `>` and `&` as `\\u003c` etc.
- LINE, Telegram and X send compact UTF-8 JSON.

Builders with a `*_item`/`*_event`/`*_payload` name return plain dicts, to compose batches.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final
from xml.sax.saxutils import escape

from processor.channels._support import hmac_sha256
from processor.channels.base import WebhookRequest
from processor.channels.chatwoot import (
    DELIVERY_HEADER,
    chatwoot_signature,
)
from processor.channels.chatwoot import (
    SIGNATURE_HEADER as CHATWOOT_SIGNATURE,
)
from processor.channels.chatwoot import (
    TIMESTAMP_HEADER as CHATWOOT_TIMESTAMP,
)
from processor.channels.line import SIGNATURE_HEADER as LINE_SIGNATURE
from processor.channels.meta import META_SIGNATURE_HEADER, meta_signature
from processor.channels.telegram import SECRET_HEADER as TELEGRAM_SECRET
from processor.channels.wechat import wechat_signature
from processor.channels.x import SIGNATURE_HEADER as X_SIGNATURE

__all__ = [
    "DEFAULT_TIME_S",
    "Signed",
    "chatwoot_agent_reply",
    "chatwoot_assigned",
    "chatwoot_bot_reply",
    "chatwoot_conversation_payload",
    "chatwoot_csat",
    "chatwoot_inbound",
    "chatwoot_message_payload",
    "chatwoot_private_note",
    "chatwoot_signed",
    "chatwoot_status",
    "instagram_batch",
    "instagram_echo",
    "instagram_inbound",
    "instagram_read",
    "line_batch",
    "line_follow",
    "line_inbound",
    "line_message_event",
    "line_signed",
    "line_verify",
    "messaging_payload",
    "messenger_batch",
    "messenger_echo",
    "messenger_handover",
    "messenger_inbound",
    "messenger_message_item",
    "messenger_read",
    "meta_body",
    "meta_signed",
    "telegram_business_message",
    "telegram_edited",
    "telegram_inbound",
    "telegram_message_update",
    "telegram_reaction",
    "telegram_signed",
    "to_request",
    "wechat_event_xml",
    "wechat_handshake_query",
    "wechat_inbound",
    "wechat_kf_session",
    "wechat_signed",
    "wechat_subscribe",
    "wechat_text_xml",
    "whatsapp_batch",
    "whatsapp_inbound",
    "whatsapp_message_item",
    "whatsapp_payload",
    "whatsapp_reaction",
    "whatsapp_status",
    "whatsapp_status_item",
    "x_batch",
    "x_dm_event",
    "x_inbound",
    "x_outbound",
    "x_payload",
    "x_read",
    "x_signed",
]

Signed = tuple[dict[str, str], bytes]
"""(headers, body) of one delivery; for WeChat (query, body)."""

DEFAULT_TIME_S: Final = 1_767_225_600
"""2026-01-01T00:00:00Z: the default event time of every sample."""

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
WA_PHONE_NUMBER_ID: Final = "106540352242922"
WA_BUSINESS_ACCOUNT_ID: Final = "102290129340398"
PAGE_ID: Final = "104392881913234"
IG_ACCOUNT_ID: Final = "17841405309211844"
LINE_DESTINATION: Final = "U" + "0123456789abcdef" * 2
WECHAT_ACCOUNT: Final = "gh_3a1b2c3d4e5f"
WECHAT_OPENID: Final = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
X_ACCOUNT: Final = "2244994945"


def _now_s(now_s: int | None) -> int:
    return int(time.time()) if now_s is None else now_s


def to_request(
    signed: Signed,
    *,
    channel: str,
    received_at_ms: int | None = None,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """A `WebhookRequest` as the gateway would hand it to the adapter (WeChat: the first item
    is the query)."""
    first, body = signed
    wechat = channel == "wechat"
    return WebhookRequest(
        method=method,
        path=f"/webhooks/{channel}",
        query=dict(first) if wechat else dict(query or {}),
        headers={"Content-Type": "text/xml"} if wechat else dict(first),
        body=body,
        received_at_ms=int(time.time() * 1000) if received_at_ms is None else received_at_ms,
    )


# --- Meta ------------------------------------------------------------------------------------


def meta_body(payload: Mapping[str, Any]) -> bytes:
    """JSON as Meta serializes it: ASCII only (\\uXXXX), `/` escaped, no spaces."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def meta_signed(secret: str, payload: Mapping[str, Any]) -> Signed:
    body = meta_body(payload)
    key = secret.split(",")[0].strip().encode()
    return {**_JSON_HEADERS, META_SIGNATURE_HEADER: meta_signature(key, body)}, body


# --- WhatsApp --------------------------------------------------------------------------------


def whatsapp_message_item(
    *, wamid: str, wa_id: str, text: str = "Hello", timestamp_s: int = DEFAULT_TIME_S,
    kind: str = "text",
) -> dict[str, Any]:
    item: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(timestamp_s),
                            "type": kind}
    if kind == "text":
        item["text"] = {"body": text}
    elif kind == "reaction":
        item["reaction"] = {"message_id": "wamid.REACTED", "emoji": "\U0001f44d"}
    return item


def whatsapp_status_item(
    *, wamid: str, recipient_id: str, status: str = "sent", timestamp_s: int = DEFAULT_TIME_S,
    biz_opaque_callback_data: str | None = None, category: str = "service",
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp_s),
        "recipient_id": recipient_id,
        "conversation": {"id": "a75d17ad06104c51166f948319b03c6a",
                         "origin": {"type": category}},
        "pricing": {"billable": True, "pricing_model": "CBP", "category": category},
    }
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    return item


def whatsapp_payload(
    *, phone_number_id: str = WA_PHONE_NUMBER_ID, messages: Sequence[Mapping[str, Any]] = (),
    statuses: Sequence[Mapping[str, Any]] = (), profile_name: str = "Ana",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if messages:
        value["contacts"] = [{"profile": {"name": profile_name}, "wa_id": messages[0]["from"]}]
        value["messages"] = [dict(item) for item in messages]
    if statuses:
        value["statuses"] = [dict(item) for item in statuses]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WA_BUSINESS_ACCOUNT_ID,
                   "changes": [{"value": value, "field": "messages"}]}],
    }


def whatsapp_inbound(
    secret: str, *, wa_id: str = "16505551234", wamid: str = "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQ",
    text: str = "Hello", timestamp_s: int = DEFAULT_TIME_S,
    phone_number_id: str = WA_PHONE_NUMBER_ID,
) -> Signed:
    item = whatsapp_message_item(wamid=wamid, wa_id=wa_id, text=text, timestamp_s=timestamp_s)
    return meta_signed(secret, whatsapp_payload(phone_number_id=phone_number_id,
                                                messages=[item]))


def whatsapp_reaction(secret: str, *, wa_id: str = "16505551234",
                      timestamp_s: int = DEFAULT_TIME_S) -> Signed:
    item = whatsapp_message_item(wamid="wamid.REACTION1", wa_id=wa_id, kind="reaction",
                                 timestamp_s=timestamp_s)
    return meta_signed(secret, whatsapp_payload(messages=[item]))


def whatsapp_status(
    secret: str, *, status: str = "sent", wamid: str = "wamid.OUT1",
    recipient_id: str = "16505551234", timestamp_s: int = DEFAULT_TIME_S,
    biz_opaque_callback_data: str | None = "agent:alice", category: str = "service",
    phone_number_id: str = WA_PHONE_NUMBER_ID,
) -> Signed:
    """A status webhook: the only trace of a message the business sent through the API."""
    item = whatsapp_status_item(wamid=wamid, recipient_id=recipient_id, status=status,
                                timestamp_s=timestamp_s, category=category,
                                biz_opaque_callback_data=biz_opaque_callback_data)
    return meta_signed(secret, whatsapp_payload(phone_number_id=phone_number_id,
                                                statuses=[item]))


def whatsapp_batch(
    secret: str, *, messages: Sequence[Mapping[str, Any]] = (),
    statuses: Sequence[Mapping[str, Any]] = (), phone_number_id: str = WA_PHONE_NUMBER_ID,
) -> Signed:
    return meta_signed(secret, whatsapp_payload(phone_number_id=phone_number_id,
                                                messages=messages, statuses=statuses))


# --- Messenger and Instagram -----------------------------------------------------------------


def messenger_message_item(
    *, account_id: str = PAGE_ID, user_id: str = "6789012345678901", mid: str = "m_AbC1",
    text: str = "Hi there", timestamp_ms: int = DEFAULT_TIME_S * 1000, echo: bool = False,
    app_id: int | None = None, metadata: str | None = None,
) -> dict[str, Any]:
    """A `messaging[]` item; an echo goes from the account to the user."""
    message: dict[str, Any] = {"mid": mid, "text": text}
    if echo:
        message = {"is_echo": True, "app_id": app_id if app_id is not None else 1517776481860111,
                   **message}
        if metadata is not None:
            message["metadata"] = metadata
    sender, recipient = (account_id, user_id) if echo else (user_id, account_id)
    return {"sender": {"id": sender}, "recipient": {"id": recipient},
            "timestamp": timestamp_ms, "message": message}


def messaging_payload(object_name: str, account_id: str,
                      items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    time_ms = max((int(item.get("timestamp", 0)) for item in items), default=0)
    return {"object": object_name,
            "entry": [{"id": account_id, "time": time_ms or DEFAULT_TIME_S * 1000,
                       "messaging": [dict(item) for item in items]}]}


def messenger_inbound(secret: str, *, text: str = "Hi there", mid: str = "m_AbC1",
                      user_id: str = "6789012345678901",
                      timestamp_ms: int = DEFAULT_TIME_S * 1000) -> Signed:
    item = messenger_message_item(mid=mid, text=text, user_id=user_id, timestamp_ms=timestamp_ms)
    return meta_signed(secret, messaging_payload("page", PAGE_ID, [item]))


def messenger_echo(secret: str, *, metadata: str | None = "agent:alice", app_id: int | None = None,
                   mid: str = "m_Echo1", user_id: str = "6789012345678901",
                   timestamp_ms: int = DEFAULT_TIME_S * 1000 + 60_000) -> Signed:
    item = messenger_message_item(mid=mid, text="Happy to help", user_id=user_id, echo=True,
                                  app_id=app_id, metadata=metadata, timestamp_ms=timestamp_ms)
    return meta_signed(secret, messaging_payload("page", PAGE_ID, [item]))


def messenger_read(secret: str, *, user_id: str = "6789012345678901",
                   timestamp_ms: int = DEFAULT_TIME_S * 1000) -> Signed:
    items = [
        {"sender": {"id": user_id}, "recipient": {"id": PAGE_ID}, "timestamp": timestamp_ms,
         "read": {"watermark": timestamp_ms - 1000}},
        {"sender": {"id": user_id}, "recipient": {"id": PAGE_ID}, "timestamp": timestamp_ms,
         "delivery": {"mids": ["m_Echo1"], "watermark": timestamp_ms - 1000}},
        {"sender": {"id": user_id}, "recipient": {"id": PAGE_ID}, "timestamp": timestamp_ms,
         "reaction": {"mid": "m_Echo1", "action": "react", "reaction": "love",
                      "emoji": "\u2764"}},
    ]
    return meta_signed(secret, messaging_payload("page", PAGE_ID, items))


def messenger_handover(secret: str, *, kind: str = "pass_thread_control",
                       new_owner_app_id: str = "263902037430900", metadata: str | None = None,
                       user_id: str = "6789012345678901",
                       timestamp_ms: int = DEFAULT_TIME_S * 1000 + 30_000) -> Signed:
    control: dict[str, Any] = {"previous_owner_app_id": "1517776481860111",
                               "new_owner_app_id": new_owner_app_id}
    if metadata is not None:
        control["metadata"] = metadata
    item = {"sender": {"id": user_id}, "recipient": {"id": PAGE_ID},
            "timestamp": timestamp_ms, kind: control}
    return meta_signed(secret, messaging_payload("page", PAGE_ID, [item]))


def messenger_batch(secret: str, items: Sequence[Mapping[str, Any]]) -> Signed:
    return meta_signed(secret, messaging_payload("page", PAGE_ID, items))


def instagram_inbound(secret: str, *, text: str = "Hi there", mid: str = "aWdfZAG1faXRlbToxOk",
                      user_id: str = "1234567890123456",
                      timestamp_ms: int = DEFAULT_TIME_S * 1000) -> Signed:
    item = messenger_message_item(account_id=IG_ACCOUNT_ID, mid=mid, text=text, user_id=user_id,
                                  timestamp_ms=timestamp_ms)
    return meta_signed(secret, messaging_payload("instagram", IG_ACCOUNT_ID, [item]))


def instagram_echo(secret: str, *, metadata: str | None = None, mid: str = "aWdfZAG1faXRlbToyOk",
                   user_id: str = "1234567890123456",
                   timestamp_ms: int = DEFAULT_TIME_S * 1000 + 60_000) -> Signed:
    item = messenger_message_item(account_id=IG_ACCOUNT_ID, mid=mid, text="Sure!",
                                  user_id=user_id, echo=True, metadata=metadata,
                                  timestamp_ms=timestamp_ms)
    return meta_signed(secret, messaging_payload("instagram", IG_ACCOUNT_ID, [item]))


def instagram_read(secret: str, *, user_id: str = "1234567890123456",
                   timestamp_ms: int = DEFAULT_TIME_S * 1000) -> Signed:
    items = [
        {"sender": {"id": user_id}, "recipient": {"id": IG_ACCOUNT_ID},
         "timestamp": timestamp_ms, "read": {"mid": "aWdfZAG1faXRlbToyOk"}},
        {"sender": {"id": user_id}, "recipient": {"id": IG_ACCOUNT_ID},
         "timestamp": timestamp_ms,
         "message": {"mid": "aWdfZAG1faXRlbTozOk", "is_deleted": True}},
    ]
    return meta_signed(secret, messaging_payload("instagram", IG_ACCOUNT_ID, items))


def instagram_batch(secret: str, items: Sequence[Mapping[str, Any]]) -> Signed:
    return meta_signed(secret, messaging_payload("instagram", IG_ACCOUNT_ID, items))


# --- Telegram --------------------------------------------------------------------------------


def _compact_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def telegram_message_update(
    *, update_id: int = 918273645, chat_id: int = 5_551_234_567, user_id: int | None = None,
    text: str = "Hello", date_s: int = DEFAULT_TIME_S, key: str = "message",
    business_connection_id: str | None = None, business_bot_id: int | None = None,
) -> dict[str, Any]:
    sender_id = chat_id if user_id is None else user_id
    message: dict[str, Any] = {
        "message_id": 4211,
        "from": {"id": sender_id, "is_bot": False, "first_name": "Ana", "language_code": "en"},
        "chat": {"id": chat_id, "first_name": "Ana", "type": "private"},
        "date": date_s,
        "text": text,
    }
    if key.startswith("edited"):
        message["edit_date"] = date_s + 30
    if business_connection_id is not None:
        message["business_connection_id"] = business_connection_id
    if business_bot_id is not None:
        message["sender_business_bot"] = {"id": business_bot_id, "is_bot": True,
                                          "first_name": "HelpBot", "username": "help_bot"}
    return {"update_id": update_id, key: message}


def telegram_signed(secret: str, update: Mapping[str, Any]) -> Signed:
    token = secret.split(",")[0].strip()
    return {**_JSON_HEADERS, TELEGRAM_SECRET: token}, _compact_json(update)


def telegram_inbound(secret: str, *, text: str = "Hello", update_id: int = 918273645,
                     chat_id: int = 5_551_234_567, date_s: int = DEFAULT_TIME_S) -> Signed:
    return telegram_signed(secret, telegram_message_update(update_id=update_id, chat_id=chat_id,
                                                           text=text, date_s=date_s))


def telegram_business_message(
    secret: str, *, from_owner: bool = True, by_bot: bool = False, owner_id: int = 7_001_002_003,
    chat_id: int = 5_551_234_567, update_id: int = 918273646,
    date_s: int = DEFAULT_TIME_S + 60,
) -> Signed:
    """A message in a connected Telegram Business chat: by the owner, a bot, or the customer."""
    update = telegram_message_update(
        update_id=update_id, chat_id=chat_id, user_id=owner_id if from_owner else None,
        text="We are on it", date_s=date_s, key="business_message",
        business_connection_id="Bc0nn3ct10n", business_bot_id=4_242 if by_bot else None,
    )
    return telegram_signed(secret, update)


def telegram_edited(secret: str, *, update_id: int = 918273647) -> Signed:
    return telegram_signed(secret, telegram_message_update(update_id=update_id,
                                                           key="edited_message"))


def telegram_reaction(secret: str, *, update_id: int = 918273648) -> Signed:
    update = {"update_id": update_id, "message_reaction": {
        "chat": {"id": 5_551_234_567, "type": "private"}, "message_id": 4211,
        "user": {"id": 5_551_234_567, "is_bot": False, "first_name": "Ana"},
        "date": DEFAULT_TIME_S, "old_reaction": [],
        "new_reaction": [{"type": "emoji", "emoji": "\U0001f44d"}]}}
    return telegram_signed(secret, update)


# --- LINE ------------------------------------------------------------------------------------


def line_message_event(
    *, user_id: str = "U" + "4af4980629" * 3 + "ab", text: str = "Hello",
    timestamp_ms: int = DEFAULT_TIME_S * 1000, webhook_event_id: str = "01FZ74A0TDDPYRVKNK77XKC3ZR",
    message_id: str = "444573844083572737", group_id: str | None = None,
    redelivery: bool = False,
) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "user", "userId": user_id}
    if group_id is not None:
        source = {"type": "group", "groupId": group_id, "userId": user_id}
    return {
        "type": "message",
        "message": {"type": "text", "id": message_id, "quoteToken": "q3Plxr4AgKd...",
                    "text": text},
        "webhookEventId": webhook_event_id,
        "deliveryContext": {"isRedelivery": redelivery},
        "timestamp": timestamp_ms,
        "source": source,
        "replyToken": "b60d432864f44d079f6d8efe86cf404b",
        "mode": "active",
    }


def line_signed(secret: str, events: Sequence[Mapping[str, Any]],
                destination: str = LINE_DESTINATION) -> Signed:
    body = _compact_json({"destination": destination, "events": [dict(e) for e in events]})
    key = secret.split(",")[0].strip().encode()
    signature = base64.b64encode(hmac_sha256(key, body)).decode("ascii")
    return {**_JSON_HEADERS, LINE_SIGNATURE: signature}, body


def line_inbound(secret: str, *, text: str = "Hello", **fields: Any) -> Signed:
    return line_signed(secret, [line_message_event(text=text, **fields)])


def line_verify(secret: str) -> Signed:
    """The console's "Verify" call: a signed body with no events."""
    return line_signed(secret, [])


def line_follow(secret: str) -> Signed:
    event = {"type": "follow", "timestamp": DEFAULT_TIME_S * 1000, "mode": "active",
             "webhookEventId": "01FZ74ASS536FW97EX38NKCZQK",
             "deliveryContext": {"isRedelivery": False},
             "source": {"type": "user", "userId": "U" + "4af4980629" * 3 + "ab"},
             "replyToken": "85cbe770fa8b4f45bbe077b1d4be4a36", "follow": {"isUnblocked": False}}
    return line_signed(secret, [event])


def line_batch(secret: str, events: Sequence[Mapping[str, Any]]) -> Signed:
    return line_signed(secret, events)


# --- WeChat ----------------------------------------------------------------------------------


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def wechat_text_xml(*, to_user: str = WECHAT_ACCOUNT, from_user: str = WECHAT_OPENID,
                    create_time_s: int = DEFAULT_TIME_S, content: str = "你好",
                    msg_id: str = "1234567890123456") -> bytes:
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time_s}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
        f"<Content>{_cdata(content)}</Content><MsgId>{escape(msg_id)}</MsgId></xml>"
    ).encode()


def wechat_event_xml(event: str, *, to_user: str, from_user: str, create_time_s: int,
                      extra: Mapping[str, str]) -> bytes:
    """A WeChat event push (MsgType event) from `from_user` to the account `to_user`."""
    fields = "".join(f"<{name}>{_cdata(value)}</{name}>" for name, value in extra.items())
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time_s}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
        f"<Event>{_cdata(event)}</Event>{fields}</xml>"
    ).encode()


def wechat_handshake_query(token: str, *, timestamp_s: int | None = None, nonce: str = "1514996143",
                           echostr: str | None = None) -> dict[str, str]:
    """The signed query WeChat adds to every call (and `echostr` on the GET handshake)."""
    stamp = str(_now_s(timestamp_s))
    key = token.split(",")[0].strip().encode()
    query = {"signature": wechat_signature(key, stamp, nonce), "timestamp": stamp,
             "nonce": nonce}
    if echostr is not None:
        query["echostr"] = echostr
    return query


def wechat_signed(token: str, body: bytes, *, timestamp_s: int | None = None,
                  nonce: str = "1514996143") -> Signed:
    """(query, body): WeChat signs the query only, not the body (plaintext mode)."""
    return wechat_handshake_query(token, timestamp_s=timestamp_s, nonce=nonce), body


def wechat_inbound(token: str, *, content: str = "你好", msg_id: str = "1234567890123456",
                   from_user: str = WECHAT_OPENID,
                   create_time_s: int = DEFAULT_TIME_S, timestamp_s: int | None = None) -> Signed:
    body = wechat_text_xml(content=content, msg_id=msg_id, from_user=from_user,
                           create_time_s=create_time_s)
    return wechat_signed(token, body, timestamp_s=timestamp_s)


def wechat_kf_session(token: str, *, event: str = "kf_create_session",
                      kf_account: str = "alice@gh_3a1b2c3d4e5f",
                      from_user: str = WECHAT_OPENID,
                      create_time_s: int = DEFAULT_TIME_S + 60,
                      timestamp_s: int | None = None) -> Signed:
    """A built-in customer-service session event (the only WeChat push naming an agent)."""
    extra = ({"FromKfAccount": "bob@gh_3a1b2c3d4e5f", "ToKfAccount": kf_account}
             if event == "kf_switch_session" else {"KfAccount": kf_account})
    body = wechat_event_xml(event, to_user=WECHAT_ACCOUNT, from_user=from_user,
                             create_time_s=create_time_s, extra=extra)
    return wechat_signed(token, body, timestamp_s=timestamp_s)


def wechat_subscribe(token: str, *, timestamp_s: int | None = None) -> Signed:
    body = wechat_event_xml("subscribe", to_user=WECHAT_ACCOUNT,
                             from_user=WECHAT_OPENID,
                             create_time_s=DEFAULT_TIME_S, extra={"EventKey": ""})
    return wechat_signed(token, body, timestamp_s=timestamp_s)


# --- X ---------------------------------------------------------------------------------------


def x_dm_event(*, event_id: str = "1582838499983564806", sender_id: str = "944480690",
               recipient_id: str = X_ACCOUNT, text: str = "Hi!",
               created_ms: int = DEFAULT_TIME_S * 1000,
               source_app_id: str | None = None) -> dict[str, Any]:
    create: dict[str, Any] = {"target": {"recipient_id": recipient_id}, "sender_id": sender_id,
                              "message_data": {"text": text, "entities": {
                                  "hashtags": [], "symbols": [], "user_mentions": [],
                                  "urls": []}}}
    if source_app_id is not None:
        create["source_app_id"] = source_app_id
    return {"type": "message_create", "id": event_id, "created_timestamp": str(created_ms),
            "message_create": create}


def x_payload(events: Sequence[Mapping[str, Any]], *, for_user_id: str = X_ACCOUNT,
              key: str = "direct_message_events") -> dict[str, Any]:
    users = {uid: {"id": uid, "name": f"user {uid}", "screen_name": f"u{uid}"}
             for uid in (for_user_id, "944480690")}
    return {"for_user_id": for_user_id, key: [dict(e) for e in events], "users": users}


def x_signed(secret: str, payload: Mapping[str, Any]) -> Signed:
    body = _compact_json(payload)
    key = secret.split(",")[0].strip().encode()
    signature = "sha256=" + base64.b64encode(hmac_sha256(key, body)).decode("ascii")
    return {**_JSON_HEADERS, X_SIGNATURE: signature}, body


def x_inbound(secret: str, *, text: str = "Hi!", **fields: Any) -> Signed:
    return x_signed(secret, x_payload([x_dm_event(text=text, **fields)]))


def x_outbound(secret: str, *, source_app_id: str | None = "268278",
               event_id: str = "1582838499983564900",
               created_ms: int = DEFAULT_TIME_S * 1000 + 60_000) -> Signed:
    """A DM sent by the subscribed account itself (X delivers those too)."""
    event = x_dm_event(event_id=event_id, sender_id=X_ACCOUNT, recipient_id="944480690",
                       text="How can we help?", created_ms=created_ms,
                       source_app_id=source_app_id)
    return x_signed(secret, x_payload([event]))


def x_read(secret: str) -> Signed:
    read = {"created_timestamp": str(DEFAULT_TIME_S * 1000), "sender_id": "944480690",
            "target": {"recipient_id": X_ACCOUNT},
            "last_read_event_id": "1582838499983564900"}
    typing = {"created_timestamp": str(DEFAULT_TIME_S * 1000), "sender_id": "944480690",
              "target": {"recipient_id": X_ACCOUNT}}
    payload = {"for_user_id": X_ACCOUNT, "direct_message_mark_read_events": [read],
               "direct_message_indicate_typing_events": [typing]}
    return x_signed(secret, payload)


def x_batch(secret: str, events: Sequence[Mapping[str, Any]]) -> Signed:
    return x_signed(secret, x_payload(events))


# --- Chatwoot --------------------------------------------------------------------------------


def _rails_json(payload: Mapping[str, Any]) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def chatwoot_signed(secret: str, payload: Mapping[str, Any], *,
                    timestamp_s: int | None = None) -> Signed:
    body = _rails_json(payload)
    stamp = str(_now_s(timestamp_s))
    key = secret.split(",")[0].strip().encode()
    return {**_JSON_HEADERS, CHATWOOT_TIMESTAMP: stamp,
            CHATWOOT_SIGNATURE: chatwoot_signature(key, stamp, body),
            DELIVERY_HEADER: str(uuid.uuid4())}, body


def _chatwoot_conversation(conversation_id: int, account_id: int, contact_id: int,
                           assignee_id: int | None) -> dict[str, Any]:
    assignee = None if assignee_id is None else {
        "id": assignee_id, "name": "Alice", "available_name": "Alice", "avatar_url": "",
        "type": "user", "availability_status": "online"}
    return {
        "additional_attributes": {}, "can_reply": True, "channel": "Channel::WebWidget",
        "id": conversation_id, "inbox_id": 1,
        "contact_inbox": {"id": 12, "contact_id": contact_id, "inbox_id": 1,
                          "source_id": "405f1d30-1af3-4fa0-8ffd-11ea3f86101e",
                          "hmac_verified": False},
        "messages": [{"id": 120, "account_id": account_id, "conversation_id": conversation_id,
                      "message_type": 0, "created_at": DEFAULT_TIME_S, "private": False}],
        "meta": {"sender": {"id": contact_id, "name": "jane", "type": "contact"},
                 "assignee": assignee, "team": None},
        "status": "open", "priority": None, "unread_count": 1, "agent_last_seen_at": 0,
        "contact_last_seen_at": 0, "timestamp": DEFAULT_TIME_S, "created_at": DEFAULT_TIME_S,
    }


def chatwoot_message_payload(
    *, event: str = "message_created", message_id: int = 118, conversation_id: int = 10,
    account_id: int = 1, message_type: str = "incoming", content: str = "hi",
    created_at: int | str = "2026-01-01T00:00:00.000Z", sender: Mapping[str, Any] | None = None,
    private: bool = False, content_type: str = "text",
    content_attributes: Mapping[str, Any] | None = None, assignee_id: int | None = 1,
) -> dict[str, Any]:
    default_sender = {"id": 14, "name": "jane", "avatar": "", "type": "contact"}
    return {
        "id": message_id, "content": content, "created_at": created_at,
        "message_type": message_type, "content_type": content_type, "private": private,
        "content_attributes": dict(content_attributes or {}), "source_id": None,
        "sender": dict(sender) if sender is not None else default_sender,
        "inbox": {"id": 1, "name": "Acme Support"},
        "conversation": _chatwoot_conversation(conversation_id, account_id, 14, assignee_id),
        "account": {"id": account_id, "name": "Acme Inc"},
        "event": event,
    }


def chatwoot_conversation_payload(
    *, event: str = "conversation_status_changed", conversation_id: int = 10,
    account_id: int = 1, status: str = "resolved",
    changed: Mapping[str, tuple[Any, Any]] | None = None,
    updated_at: float | None = DEFAULT_TIME_S + 600.25, assignee_id: int | None = 1,
    labels: Sequence[str] = (),
) -> dict[str, Any]:
    payload = _chatwoot_conversation(conversation_id, account_id, 14, assignee_id)
    payload["status"] = status
    payload["labels"] = list(labels)
    if updated_at is not None:
        payload["updated_at"] = updated_at
    payload["changed_attributes"] = [
        {name: {"previous_value": old, "current_value": new}}
        for name, (old, new) in (changed or {}).items()
    ]
    payload["event"] = event
    return payload


_USER = {"id": 1, "name": "Alice", "email": "alice@acme.inc", "type": "user"}
_AGENT_BOT = {"id": 7, "name": "Helper", "type": "agent_bot"}


def chatwoot_inbound(secret: str, *, content: str = "hi", message_id: int = 118,
                     created_at: int | str = "2026-01-01T00:00:00.000Z",
                     timestamp_s: int | None = None) -> Signed:
    payload = chatwoot_message_payload(message_id=message_id, content=content,
                                       created_at=created_at)
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_agent_reply(secret: str, *, message_id: int = 119, agent_id: int = 1,
                         created_at: int | str = DEFAULT_TIME_S + 90,
                         timestamp_s: int | None = None) -> Signed:
    payload = chatwoot_message_payload(message_id=message_id, message_type="outgoing",
                                       content="On it <3", created_at=created_at,
                                       sender={**_USER, "id": agent_id})
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_bot_reply(secret: str, *, message_id: int = 121,
                       created_at: int | str = DEFAULT_TIME_S + 5,
                       timestamp_s: int | None = None) -> Signed:
    payload = chatwoot_message_payload(message_id=message_id, message_type="outgoing",
                                       content="Hi! A human will be with you shortly",
                                       created_at=created_at, sender=_AGENT_BOT)
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_private_note(secret: str, *, message_id: int = 122,
                          timestamp_s: int | None = None) -> Signed:
    payload = chatwoot_message_payload(message_id=message_id, message_type="outgoing",
                                       content="VIP customer", private=True,
                                       created_at=DEFAULT_TIME_S + 30, sender=_USER)
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_status(secret: str, *, status: str = "resolved", previous: str = "open",
                    updated_at: float | None = DEFAULT_TIME_S + 600.25,
                    timestamp_s: int | None = None) -> Signed:
    payload = chatwoot_conversation_payload(status=status, updated_at=updated_at,
                                            changed={"status": (previous, status)})
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_assigned(secret: str, *, agent_id: int = 3, previous: int | None = None,
                      labels: Sequence[str] = (), timestamp_s: int | None = None) -> Signed:
    changed: dict[str, tuple[Any, Any]] = {"assignee_id": (previous, agent_id)}
    if labels:
        changed["label_list"] = ([], list(labels))
    payload = chatwoot_conversation_payload(event="conversation_updated", status="open",
                                            assignee_id=agent_id, changed=changed,
                                            labels=labels)
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)


def chatwoot_csat(secret: str, *, rating: int = 5, message_id: int = 130,
                  timestamp_s: int | None = None) -> Signed:
    attributes = {"submitted_values": {"csat_survey_response": {
        "rating": rating, "feedback_message": "très bien"}}}
    payload = chatwoot_message_payload(
        event="message_updated", message_id=message_id, message_type="template",
        content_type="input_csat", content="Please rate the conversation",
        content_attributes=attributes, created_at=DEFAULT_TIME_S + 700, sender=None,
    )
    payload["sender"] = None
    return chatwoot_signed(secret, payload, timestamp_s=timestamp_s)
