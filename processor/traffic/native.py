"""`msgkpi simulate --transport native`: simulated traffic as each platform's own signed webhooks.

`NativeEncoder` implements the simulator's `Encoder`: every canonical event of a channel whose
secret is configured (`Settings.secrets`, plus `Settings.verify_tokens` for the Meta channels,
the same rule that enables the gateway's adapter) becomes the platform's native delivery, built
with `processor.traffic.samples` and signed with that secret, so the gateway's real adapters
verify and normalize it. What a platform cannot say natively is posted to `/webhooks/canonical`
instead (with `Authorization: Bearer` when `MSGKPI_CANONICAL_SECRET` is set), rewritten onto the
same native thread so it lands in the same conversation.

Mapping, canonical -> native; everything not listed goes to `/webhooks/canonical`:
- whatsapp: customer message -> `messages[]` text; agent/bot message -> a `statuses[]` `sent`
  with `biz_opaque_callback_data` = `agent:<id>` / `bot:<id>` (WhatsApp never echoes API sends;
  the status is their only trace). Private notes, handoff, assigned, resolved, reopened, csat,
  tagged: canonical.
- messenger, instagram: customer message -> `messaging[].message`; agent/bot message -> echo
  (`is_echo`, `metadata` = `agent:<id>` / `bot:<id>`, app id of the Page inbox or the bot);
  handoff -> `pass_thread_control`, assigned -> `take_thread_control` (handover protocol,
  `metadata` = `agent:<id>`). Private notes, resolved, reopened, csat, tagged: canonical.
- telegram (a connected Telegram Business account): customer message -> `business_message`
  from the customer; agent message -> `business_message` typed by a business user; bot message
  -> `business_message` with `sender_business_bot`. Everything else: canonical.
- line: customer message -> `message` event (batched per destination). LINE never sends the
  bot's replies: agent/bot messages and everything else: canonical.
- wechat: customer message -> text XML; assigned -> `kf_create_session` (or
  `kf_switch_session` when a kf session is open); resolved (plain `resolved`, by an agent, no
  tags) -> `kf_close_session`. WeChat never pushes the account's replies: agent/bot messages,
  handoff, spam/no-reply resolutions and the rest: canonical.
- x: customer message -> DM to the account; agent message -> DM sent by the account (the
  adapter reports agent `unknown`: X cannot tell who typed it). Bot messages (the adapter would
  count them as agent), private notes and everything else: canonical.
- chatwoot: everything native except spam/no-reply resolutions: messages -> `message_created`
  (incoming; outgoing with `sender.type` user or agent_bot; `private: true` notes); csat ->
  `message_updated` `input_csat` (whole scores of scale 5); handoff ->
  `conversation_status_changed` pending -> open; resolved / reopened -> status changes;
  assigned -> `conversation_updated` assignee_id; tagged -> `conversation_updated` label_list.

What the native form keeps and loses:
- Ids are the platform's: every simulated conversation gets its own customer (wa_id, PSID,
  IGSID, chat id, LINE user id, OpenID, X user id, Chatwoot contact and conversation), derived
  from a hash of its canonical id, so conversations never merge; the account ids derive from the
  simulator's accounts (Telegram's is the adapter's `bot`). `NativeEncoder.thread(event)` gives
  the conversation the adapter will report.
- Time in the platform's unit: WhatsApp, Telegram and WeChat stamp whole seconds (their
  canonical fallbacks are truncated too, so a conversation keeps its order); the others carry
  milliseconds. A Chatwoot CSAT answer is stamped with the signed delivery time (the encoder's
  clock), as the adapter reads it.
- Agents: WhatsApp, Messenger and Instagram carry the simulator's ids in the markers; Telegram
  and Chatwoot carry numeric user ids (one stable id per simulated agent or bot, see
  `agent_as_seen`), WeChat a kf account `<agent>@<account>`; X cannot say who typed a DM
  (`unknown`). Fallback events name agents the same way, so per-agent series stay consistent.
- Dropped natively: `tags` on messages and resolutions, team and priority (except on Chatwoot
  messages), `from_agent_id` of a handoff. The worker's KPIs use none of these today (an SLA
  policy matching on team or priority would not see them on native events).

Channels without their secret (or verify token) are posted to `/webhooks/canonical` unchanged,
with a one-time warning per channel.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from processor.channels._support import UNKNOWN_AGENT
from processor.channels.registry import META_CHANNELS
from processor.config import CHANNELS, Settings
from processor.events import Author, ConversationEvent, EventType, Resolution, event_from_dict
from processor.traffic import samples
from processor.traffic.transport import HttpRequest

__all__ = [
    "NativeEncoder",
    "Thread",
    "default_transport",
    "missing_secrets",
]

CANONICAL_PATH: Final = "/webhooks/canonical"
SECONDS_CHANNELS: Final = frozenset({"whatsapp", "telegram", "wechat"})
"""Platforms whose event time is whole seconds."""
CHATWOOT_PRIORITIES: Final = frozenset({"low", "medium", "high", "urgent"})
PAGE_INBOX_APP_ID: Final = 263902037430900
"""The Page Inbox app: a human reply typed there is echoed with this app id."""
BOT_APP_ID: Final = 1517776481860111
X_WEB_APP_ID: Final = "268278"
TEXTS: Final = (
    "Hi, where is my order?", "¿Dónde está mi pedido?", "Mein Paket ist nicht angekommen",
    "注文した商品がまだ届きません", "我的订单在哪里", "Can I get a refund? <urgent> & soon",
    "Merci pour votre aide", "تم خصم المبلغ مرتين", "Спасибо!", "ok 👍",
)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def _number(digits: int, *parts: str) -> int:
    """A stable number of exactly `digits` digits derived from `parts`."""
    low: int = 10 ** (digits - 1)
    value: int = int.from_bytes(_digest(*parts)[:16], "big")
    return low + value % (9 * low)


def _hex(length: int, *parts: str) -> str:
    return _digest(*parts).hex()[:length]


def _b64(length: int, *parts: str) -> str:
    return base64.urlsafe_b64encode(_digest(*parts)).decode("ascii").rstrip("=")[:length]


def _b32(length: int, *parts: str) -> str:
    return base64.b32encode(_digest(*parts)).decode("ascii")[:length]


def _text(event: ConversationEvent) -> str:
    return TEXTS[_digest(event.event_id)[0] % len(TEXTS)]


def _x_pair(first: str, second: str) -> str:
    """The X adapter's thread: the two user ids, shorter (numerically smaller) first."""
    low, high = sorted((first, second), key=lambda uid: (len(uid), uid))
    return f"{low}-{high}"


def missing_secrets(settings: Settings, channel: str) -> list[str]:
    """The variables a channel still needs before its native webhook can be used."""
    if channel not in CHANNELS:
        return ["(no native adapter)"]
    prefix = f"MSGKPI_{channel.upper()}"
    missing = [] if settings.secrets.get(channel, "").replace(",", "").strip() else [
        f"{prefix}_SECRET"]
    if channel in META_CHANNELS and not settings.verify_tokens.get(channel):
        missing.append(f"{prefix}_VERIFY_TOKEN")
    return missing


def default_transport(settings: Settings, channels: Iterable[str]) -> str:
    """`native` when every chosen channel has its secret, else `canonical`."""
    chosen = list(channels)
    ready = bool(chosen) and not any(missing_secrets(settings, c) for c in chosen)
    return "native" if ready else "canonical"


@dataclass(frozen=True, slots=True)
class Thread:
    """A simulated conversation as the platform sees it."""

    channel: str
    account: str
    """The account id the adapter reports."""
    customer: str
    conversation_id: str
    """The conversation id the adapter builds."""
    thread: str = ""
    """The platform's thread handle where it differs from the customer (Chatwoot)."""


@dataclass(slots=True)
class _Piece:
    """One native item, to be packed with others of the same group into one delivery."""

    group: tuple[str, str]
    item: Any
    event: ConversationEvent


@dataclass(slots=True)
class _Plan:
    pieces: list[_Piece] = field(default_factory=list)
    fallback: list[tuple[ConversationEvent, dict[str, Any]]] = field(default_factory=list)


class NativeEncoder:
    """Canonical events -> the platforms' signed webhook deliveries (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        as_array: bool = False,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.as_array = as_array
        self._settings = settings
        self._secrets = {c: settings.secrets[c] for c in CHANNELS
                         if not missing_secrets(settings, c)}
        self._canonical_secret = settings.secrets.get("canonical")
        self._clock = clock
        self._warn = warn or _stderr
        self._warned: set[str] = set()
        self._bots: set[tuple[str, str]] = set()
        self._kf_agent: dict[str, str] = {}
        self._kf_last: dict[tuple[str, str], int] = {}
        self._assignee: dict[str, int] = {}

    @property
    def native_channels(self) -> frozenset[str]:
        return frozenset(self._secrets)

    # --- identities --------------------------------------------------------------------------

    def thread(self, event: ConversationEvent) -> Thread:
        """The platform ids of the event's conversation (stable for a conversation)."""
        channel, conv = event.channel, event.conversation_id
        account_key = event.account_id or "default"
        if channel == "whatsapp":
            account = str(_number(15, channel, "account", account_key))
            customer = str(_number(11, channel, "customer", conv))
        elif channel in ("messenger", "instagram"):
            account = str(_number(15 if channel == "messenger" else 17, channel, "account",
                                  account_key))
            customer = str(_number(16, channel, "customer", conv))
        elif channel == "telegram":
            account = "bot"
            customer = str(_number(10, channel, "chat", conv))
        elif channel == "line":
            account = "U" + _hex(32, channel, "account", account_key)
            customer = "U" + _hex(32, channel, "customer", conv)
        elif channel == "wechat":
            account = "gh_" + _hex(12, channel, "account", account_key)
            customer = "o" + _b64(27, channel, "customer", conv)
        elif channel == "x":
            account = str(_number(10, channel, "account", account_key))
            customer = str(_number(18, channel, "customer", conv))
            return Thread(channel, account, customer, f"x:{account}:{_x_pair(account, customer)}")
        elif channel == "chatwoot":
            account = str(_number(4, channel, "account", account_key))
            customer = str(_number(7, channel, "contact", conv))
            display = str(_number(8, channel, "conversation", conv))
            return Thread(channel, account, customer, f"chatwoot:{account}:{display}", display)
        else:
            return Thread(channel, account_key, event.customer_id or "", conv)
        return Thread(channel, account, customer, f"{channel}:{account}:{customer}")

    def agent_as_seen(self, channel: str, agent_id: str, *, bot: bool,
                      thread: Thread | None = None) -> str:
        """How the platform names a simulated agent or bot (what the adapter reports)."""
        if channel == "telegram":
            number = _number(10, channel, "bot" if bot else "agent", agent_id)
            return f"telegram-bot:{number}" if bot else str(number)
        if channel == "chatwoot":
            return f"agent_bot:{_number(3, channel, 'bot', agent_id)}" if bot else str(
                _number(5, channel, "agent", agent_id))
        if channel == "wechat" and not bot and thread is not None:
            return f"{agent_id}@{thread.account}"
        return agent_id

    def _agent(self, event: ConversationEvent, thread: Thread, agent_id: str | None = None,
               ) -> str | None:
        agent = agent_id if agent_id is not None else event.agent_id
        if agent is None:
            return None
        bot = event.author is Author.BOT or (event.channel, agent) in self._bots
        return self.agent_as_seen(event.channel, agent, bot=bot, thread=thread)

    # --- encoding ----------------------------------------------------------------------------

    def encode(self, events: Sequence[ConversationEvent]) -> list[HttpRequest]:
        plan = _Plan()
        passthrough: list[ConversationEvent] = []
        for event in events:
            if event.type is EventType.MESSAGE and event.author is Author.BOT and event.agent_id:
                self._bots.add((event.channel, event.agent_id))
            if event.channel not in self._secrets:
                self._warn_once(event.channel)
                passthrough.append(event)
                continue
            piece = self._piece(event)
            if piece is None:
                plan.fallback.append((event, self._fallback(event)))
            else:
                plan.pieces.append(piece)
        requests = self._pack(plan.pieces)
        wire = [e.to_dict() for e in passthrough] + [d for _, d in plan.fallback]
        carried = tuple(passthrough) + tuple(e for e, _ in plan.fallback)
        if wire:
            payload: Any = wire if self.as_array or len(wire) > 1 else wire[0]
            headers = {"Content-Type": "application/json"}
            if self._canonical_secret:
                headers["Authorization"] = f"Bearer {self._canonical_secret}"
            requests.append(HttpRequest(CANONICAL_PATH, orjson.dumps(payload), headers, carried))
        return requests

    def _warn_once(self, channel: str) -> None:
        if channel in self._warned:
            return
        self._warned.add(channel)
        if channel not in CHANNELS:
            self._warn(f"channel {channel} has no native webhook; its events go to "
                       f"{CANONICAL_PATH}")
            return
        needs = " and ".join(missing_secrets(self._settings, channel))
        self._warn(f"channel {channel}: {needs} not set; its events go to {CANONICAL_PATH}")

    def _fallback(self, event: ConversationEvent) -> dict[str, Any]:
        """The event as the canonical feed would report it next to the native channel."""
        thread = self.thread(event)
        wire = event.to_dict()
        wire.update(conversation_id=thread.conversation_id, account_id=thread.account,
                    customer_id=thread.customer)
        if event.agent_id is not None:
            wire["agent_id"] = self._agent(event, thread)
        from_agent = wire.get("from_agent_id")
        if isinstance(from_agent, str):
            wire["from_agent_id"] = self._agent(event, thread, from_agent)
        if event.channel in SECONDS_CHANNELS:
            wire["occurred_at"] = event.occurred_at_ms // 1000 * 1000
        event_from_dict(wire)  # stays schema-valid
        return wire

    def _piece(self, event: ConversationEvent) -> _Piece | None:
        build = _BUILDERS[event.channel]
        return build(self, event, self.thread(event))

    def _pack(self, pieces: list[_Piece]) -> list[HttpRequest]:
        groups: dict[tuple[str, str], list[_Piece]] = {}
        for piece in pieces:
            groups.setdefault(piece.group, []).append(piece)
        requests: list[HttpRequest] = []
        for (channel, _), group in groups.items():
            requests.extend(_PACKERS[channel](self, group))
        return requests

    def _secret(self, channel: str) -> str:
        return self._secrets[channel]

    # --- WhatsApp ----------------------------------------------------------------------------

    def _whatsapp(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        if event.type is not EventType.MESSAGE or event.private:
            return None
        wamid = "wamid." + _b64(48, "wamid", event.event_id)
        seconds = event.occurred_at_ms // 1000
        group = ("whatsapp", thread.account)
        if event.author is Author.CUSTOMER:
            item = samples.whatsapp_message_item(wamid=wamid, wa_id=thread.customer,
                                                 text=_text(event), timestamp_s=seconds)
            return _Piece(group, ("messages", item), event)
        if event.author in (Author.AGENT, Author.BOT):
            marker = f"{event.author.value}:{event.agent_id or UNKNOWN_AGENT}"
            item = samples.whatsapp_status_item(wamid=wamid, recipient_id=thread.customer,
                                                status="sent", timestamp_s=seconds,
                                                biz_opaque_callback_data=marker)
            return _Piece(group, ("statuses", item), event)
        return None

    def _pack_whatsapp(self, group: list[_Piece]) -> list[HttpRequest]:
        messages = [p.item[1] for p in group if p.item[0] == "messages"]
        statuses = [p.item[1] for p in group if p.item[0] == "statuses"]
        signed = samples.whatsapp_batch(self._secret("whatsapp"), messages=messages,
                                        statuses=statuses, phone_number_id=group[0].group[1])
        return [_json_request("whatsapp", signed, group)]

    # --- Messenger and Instagram -------------------------------------------------------------

    def _messaging(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        group = (event.channel, "all")
        ms = event.occurred_at_ms
        if event.type is EventType.MESSAGE and not event.private:
            mid = ("m_" if event.channel == "messenger" else "aWdf") + _b64(40, "mid",
                                                                          event.event_id)
            if event.author is Author.CUSTOMER:
                item = samples.messenger_message_item(
                    account_id=thread.account, user_id=thread.customer, mid=mid,
                    text=_text(event), timestamp_ms=ms)
                return _Piece(group, (thread.account, item), event)
            if event.author in (Author.AGENT, Author.BOT):
                bot = event.author is Author.BOT
                item = samples.messenger_message_item(
                    account_id=thread.account, user_id=thread.customer, mid=mid,
                    text=_text(event), timestamp_ms=ms, echo=True,
                    app_id=BOT_APP_ID if bot else PAGE_INBOX_APP_ID,
                    metadata=f"{event.author.value}:{event.agent_id or UNKNOWN_AGENT}")
                return _Piece(group, (thread.account, item), event)
            return None
        kinds = {EventType.HANDOFF: "pass_thread_control",
                 EventType.ASSIGNED: "take_thread_control"}
        kind = kinds.get(event.type)
        if kind is None or not event.agent_id:
            return None
        control = {"previous_owner_app_id": str(BOT_APP_ID),
                   "new_owner_app_id": str(PAGE_INBOX_APP_ID),
                   "metadata": f"agent:{event.agent_id}"}
        item = {"sender": {"id": thread.customer}, "recipient": {"id": thread.account},
                "timestamp": ms, kind: control}
        return _Piece(group, (thread.account, item), event)

    def _pack_messaging(self, group: list[_Piece]) -> list[HttpRequest]:
        channel = group[0].group[0]
        object_name = "page" if channel == "messenger" else "instagram"
        by_account: dict[str, list[Any]] = {}
        for piece in group:
            by_account.setdefault(piece.item[0], []).append(piece.item[1])
        payload: dict[str, Any] = {"object": object_name, "entry": []}
        for account, items in by_account.items():
            payload["entry"].extend(samples.messaging_payload(object_name, account,
                                                              items)["entry"])
        signed = samples.meta_signed(self._secret(channel), payload)
        return [_json_request(channel, signed, group)]

    # --- Telegram ----------------------------------------------------------------------------

    def _telegram(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        if event.type is not EventType.MESSAGE or event.private:
            return None
        if event.author not in (Author.CUSTOMER, Author.AGENT, Author.BOT):
            return None
        chat = int(thread.customer)
        owner = _number(10, "telegram", "owner", event.account_id or "default")
        user_id: int | None = None
        bot_id: int | None = None
        if event.author is Author.AGENT:
            user_id = int(self.agent_as_seen("telegram", event.agent_id or UNKNOWN_AGENT,
                                             bot=False))
        elif event.author is Author.BOT:
            user_id = owner
            bot_id = _number(10, "telegram", "bot", event.agent_id or UNKNOWN_AGENT)
        update = samples.telegram_message_update(
            update_id=_number(9, "telegram", "update", event.event_id), chat_id=chat,
            user_id=user_id, text=_text(event), date_s=event.occurred_at_ms // 1000,
            key="business_message",
            business_connection_id=_b64(16, "telegram", "connection",
                                        event.account_id or "default"),
            business_bot_id=bot_id)
        update["business_message"]["message_id"] = _number(6, "telegram", "message",
                                                           event.event_id)
        return _Piece(("telegram", event.event_id), update, event)

    def _pack_telegram(self, group: list[_Piece]) -> list[HttpRequest]:
        return [_json_request("telegram", samples.telegram_signed(self._secret("telegram"),
                                                                  p.item), [p])
                for p in group]

    # --- LINE --------------------------------------------------------------------------------

    def _line(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        if event.type is not EventType.MESSAGE or event.author is not Author.CUSTOMER:
            return None
        item = samples.line_message_event(
            user_id=thread.customer, text=_text(event), timestamp_ms=event.occurred_at_ms,
            webhook_event_id=_b32(26, "line", "event", event.event_id),
            message_id=str(_number(18, "line", "message", event.event_id)))
        return _Piece(("line", thread.account), item, event)

    def _pack_line(self, group: list[_Piece]) -> list[HttpRequest]:
        signed = samples.line_signed(self._secret("line"), [p.item for p in group],
                                     destination=group[0].group[1])
        return [_json_request("line", signed, group)]

    # --- WeChat ------------------------------------------------------------------------------

    def _wechat(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        seconds = event.occurred_at_ms // 1000
        group = ("wechat", event.event_id)
        conv = event.conversation_id
        if event.type is EventType.MESSAGE:
            if event.author is not Author.CUSTOMER:
                return None
            body = samples.wechat_text_xml(
                to_user=thread.account, from_user=thread.customer, create_time_s=seconds,
                content=_text(event), msg_id=str(_number(16, "wechat", "msg", event.event_id)))
            return _Piece(group, body, event)
        if not event.agent_id:
            return None
        kf_account = self.agent_as_seen("wechat", event.agent_id, bot=False, thread=thread)
        extra: dict[str, str]
        if event.type is EventType.ASSIGNED:
            previous = self._kf_agent.get(conv)
            if previous is None:
                name, extra = "kf_create_session", {"KfAccount": kf_account}
            else:
                name = "kf_switch_session"
                extra = {"FromKfAccount": previous, "ToKfAccount": kf_account}
        elif (event.type is EventType.RESOLVED and event.resolution is Resolution.RESOLVED
              and not event.tags and (event.channel, event.agent_id) not in self._bots):
            name, extra = "kf_close_session", {"KfAccount": kf_account}
        else:
            return None
        # WeChat's event id is (OpenID, CreateTime, event): one per second and kind.
        if self._kf_last.get((conv, name)) == seconds:
            return None
        self._kf_last[(conv, name)] = seconds
        if name == "kf_close_session":
            self._kf_agent.pop(conv, None)
        else:
            self._kf_agent[conv] = kf_account
        body = samples.wechat_event_xml(name, to_user=thread.account, from_user=thread.customer,
                                 create_time_s=seconds, extra=extra)
        return _Piece(group, body, event)

    def _pack_wechat(self, group: list[_Piece]) -> list[HttpRequest]:
        requests = []
        for piece in group:
            query, body = samples.wechat_signed(
                self._secret("wechat"), piece.item, timestamp_s=int(self._clock()),
                nonce=str(_number(9, "wechat", "nonce", piece.event.event_id)))
            requests.append(HttpRequest(f"/webhooks/wechat?{urlencode(query)}", body,
                                        {"Content-Type": "text/xml"}, (piece.event,)))
        return requests

    # --- X -----------------------------------------------------------------------------------

    def _x(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        if event.type is not EventType.MESSAGE or event.private:
            return None
        if event.author is Author.CUSTOMER:
            sender, recipient, app = thread.customer, thread.account, None
        elif event.author is Author.AGENT:
            sender, recipient, app = thread.account, thread.customer, X_WEB_APP_ID
        else:
            return None
        item = samples.x_dm_event(
            event_id=str(_number(19, "x", "event", event.event_id)), sender_id=sender,
            recipient_id=recipient, text=_text(event), created_ms=event.occurred_at_ms,
            source_app_id=app)
        return _Piece(("x", thread.account), item, event)

    def _pack_x(self, group: list[_Piece]) -> list[HttpRequest]:
        payload = samples.x_payload([p.item for p in group], for_user_id=group[0].group[1])
        return [_json_request("x", samples.x_signed(self._secret("x"), payload), group)]

    # --- Chatwoot ----------------------------------------------------------------------------

    def _chatwoot(self, event: ConversationEvent, thread: Thread) -> _Piece | None:
        payload = self._chatwoot_payload(event, thread)
        if payload is None:
            return None
        return _Piece(("chatwoot", event.event_id), payload, event)

    def _chatwoot_payload(self, event: ConversationEvent, thread: Thread,
                          ) -> dict[str, Any] | None:
        conv, account, display = event.conversation_id, int(thread.account), int(thread.thread)
        message_id = _number(9, "chatwoot", "message", event.event_id)
        if event.type is EventType.MESSAGE:
            if event.author is Author.CUSTOMER:
                kind = "incoming"
                sender: dict[str, Any] | None = {"id": int(thread.customer), "name": "customer",
                                                 "avatar": "", "type": "contact"}
            elif event.author in (Author.AGENT, Author.BOT):
                kind, sender = "outgoing", None  # no sender: agent `unknown`
                agent = self._agent(event, thread)
                if agent is not None:
                    bot = event.author is Author.BOT
                    sender = {"id": int(agent.rpartition(":")[2]), "name": event.agent_id,
                              "type": "agent_bot" if bot else "user"}
            else:
                return None
            payload = samples.chatwoot_message_payload(
                message_id=message_id, conversation_id=display, account_id=account,
                message_type=kind, content=_text(event), created_at=_iso(event.occurred_at_ms),
                sender=sender, private=event.private, assignee_id=self._assignee.get(conv))
            if sender is None and kind == "outgoing":
                payload["sender"] = None
            self._chatwoot_people(payload["conversation"], thread, event)
            return payload
        if event.type is EventType.CSAT:
            score = event.score
            if score is None or score != int(score) or not 1 <= score <= 5 or event.scale != 5:
                return None
            attributes = {"submitted_values": {"csat_survey_response": {
                "rating": int(score), "feedback_message": ""}}}
            payload = samples.chatwoot_message_payload(
                event="message_updated", message_id=message_id, conversation_id=display,
                account_id=account, message_type="template", content_type="input_csat",
                content="Please rate the conversation", content_attributes=attributes,
                created_at=_iso(event.occurred_at_ms), assignee_id=self._assignee.get(conv))
            payload["sender"] = None
            self._chatwoot_people(payload["conversation"], thread, event)
            return payload
        return self._chatwoot_conversation(event, thread)

    def _chatwoot_conversation(self, event: ConversationEvent, thread: Thread,
                               ) -> dict[str, Any] | None:
        conv = event.conversation_id
        changed: dict[str, tuple[Any, Any]]
        labels: list[str] = []
        if event.type is EventType.RESOLVED:
            if event.resolution is not Resolution.RESOLVED:
                return None
            name, status, changed = "conversation_status_changed", "resolved", {
                "status": ("open", "resolved")}
        elif event.type is EventType.REOPENED:
            name, status, changed = "conversation_status_changed", "open", {
                "status": ("resolved", "open")}
        elif event.type in (EventType.HANDOFF, EventType.ASSIGNED) and event.agent_id:
            agent = int(self._agent(event, thread) or "0")
            previous = self._assignee.get(conv)
            self._assignee[conv] = agent
            if event.type is EventType.HANDOFF:
                name, status, changed = "conversation_status_changed", "open", {
                    "status": ("pending", "open")}
            else:
                name, status, changed = "conversation_updated", "open", {
                    "assignee_id": (previous, agent)}
        elif event.type is EventType.TAGGED and event.tags:
            labels = list(event.tags)
            name, status, changed = "conversation_updated", "open", {"label_list": ([], labels)}
        else:
            return None
        payload = samples.chatwoot_conversation_payload(
            event=name, conversation_id=int(thread.thread), account_id=int(thread.account),
            status=status, changed=changed, updated_at=(event.occurred_at_ms + 0.5) / 1000,
            assignee_id=self._assignee.get(conv), labels=labels)
        self._chatwoot_people(payload, thread, event)
        return payload

    @staticmethod
    def _chatwoot_people(conversation: dict[str, Any], thread: Thread,
                         event: ConversationEvent) -> None:
        """The conversation's contact (the samples default to one) and team/priority."""
        contact = int(thread.customer)
        conversation["contact_inbox"]["contact_id"] = contact
        conversation["meta"]["sender"]["id"] = contact
        if event.team:
            conversation["meta"]["team"] = {"id": _number(3, "chatwoot", "team", event.team),
                                            "name": event.team}
        conversation["priority"] = event.priority if event.priority in CHATWOOT_PRIORITIES \
            else None

    def _pack_chatwoot(self, group: list[_Piece]) -> list[HttpRequest]:
        return [_json_request("chatwoot", samples.chatwoot_signed(
            self._secret("chatwoot"), p.item, timestamp_s=int(self._clock())), [p])
            for p in group]


_Builder = Callable[[NativeEncoder, ConversationEvent, Thread], _Piece | None]
_Packer = Callable[[NativeEncoder, list[_Piece]], list[HttpRequest]]
_BUILDERS: Final[Mapping[str, _Builder]] = {
    "whatsapp": NativeEncoder._whatsapp,
    "messenger": NativeEncoder._messaging,
    "instagram": NativeEncoder._messaging,
    "telegram": NativeEncoder._telegram,
    "line": NativeEncoder._line,
    "wechat": NativeEncoder._wechat,
    "x": NativeEncoder._x,
    "chatwoot": NativeEncoder._chatwoot,
}
_PACKERS: Final[Mapping[str, _Packer]] = {
    "whatsapp": NativeEncoder._pack_whatsapp,
    "messenger": NativeEncoder._pack_messaging,
    "instagram": NativeEncoder._pack_messaging,
    "telegram": NativeEncoder._pack_telegram,
    "line": NativeEncoder._pack_line,
    "wechat": NativeEncoder._pack_wechat,
    "x": NativeEncoder._pack_x,
    "chatwoot": NativeEncoder._pack_chatwoot,
}


def _json_request(channel: str, signed: samples.Signed, pieces: Sequence[_Piece]) -> HttpRequest:
    headers, body = signed
    return HttpRequest(f"/webhooks/{channel}", body, headers, tuple(p.event for p in pieces))


def _iso(ms: int) -> str:
    """Chatwoot's `created_at` as newer versions send it: ISO-8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"




def _stderr(line: str) -> None:
    print(f"msgkpi simulate: {line}", file=sys.stderr, flush=True)

