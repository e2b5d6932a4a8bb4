"""WeChat Official Account message push (plaintext mode).

Authentication: the query carries `signature = sha1(sorted([token, timestamp, nonce])
joined)`; the token is `MSGKPI_WECHAT_SECRET`. It does not cover the body (plaintext mode has no
body signature), so msgkpi also rejects timestamps more than 5 minutes from arrival to limit
replays. Safe mode (AES, `encrypt_type=aes`, `<Encrypt>`) is not implemented: such a body gets a
400 saying to switch the account to plaintext mode.

Handshake: GET `signature`, `timestamp`, `nonce`, `echostr` -> `echostr` when the signature
holds, else 401.

Body: XML `<xml><ToUserName/><FromUserName/><CreateTime/><MsgType/>...</xml>`, parsed with
defusedxml (DTDs, entities and external references forbidden) after a size cap.
- MsgType text/image/voice/video/shortvideo/location/link/file -> customer message.
- MsgType event: `kf_create_session` -> assigned (KfAccount), `kf_switch_session` -> assigned
  (ToKfAccount), `kf_close_session` -> resolved; other events (subscribe, menu clicks,
  template-send reports, ...) -> ignored.
Thread = (ToUserName, FromUserName OpenID). WeChat never pushes the account's own replies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Final

from defusedxml import ElementTree as SafeElementTree  # type: ignore[import-untyped, unused-ignore]

from processor.channels._support import (
    SecretSet,
    build_event,
    epoch_ms,
    error_reply,
    signature_guard,
)
from processor.channels.base import Normalized, SignatureInvalid, WebhookReply, WebhookRequest
from processor.errors import InvalidEvent
from processor.events import Author, ConversationEvent, EventType

__all__ = ["MAX_XML_BYTES", "WeChatAdapter", "wechat_signature"]

MAX_XML_BYTES: Final = 64 * 1024
"""WeChat pushes small messages; anything bigger is refused before parsing."""
FRESHNESS_S: Final = 300
_MESSAGE_TYPES: Final = frozenset(
    {"text", "image", "voice", "video", "shortvideo", "location", "link", "file"}
)
_SESSION_EVENTS: Final = {
    "kf_create_session": (EventType.ASSIGNED, "KfAccount"),
    "kf_switch_session": (EventType.ASSIGNED, "ToKfAccount"),
    "kf_close_session": (EventType.RESOLVED, "KfAccount"),
}
_HEX_SHA1: Final = re.compile(r"[0-9a-fA-F]{40}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_SAFE_MODE: Final = (
    "safe mode (AES-encrypted messages) is not supported: set the Official Account's message "
    "encryption to plaintext mode"
)


def wechat_signature(token: bytes, timestamp: str, nonce: str) -> str:
    parts = sorted([token, timestamp.encode("utf-8"), nonce.encode("utf-8")])
    return hashlib.sha1(b"".join(parts)).hexdigest()


class WeChatAdapter:
    """Thread = (official account, OpenID); replies to every accepted push with `success`."""

    name: str = "wechat"

    def __init__(self, secret: str) -> None:
        self._tokens = SecretSet(secret)

    def __repr__(self) -> str:
        return "WeChatAdapter()"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        echostr = request.query.get("echostr")
        if not echostr:
            return error_reply(400, "echostr is missing")
        try:
            self.verify(request)
        except SignatureInvalid as exc:
            return error_reply(401, str(exc))
        return WebhookReply(status=200, body=echostr.encode("utf-8", "surrogatepass"))

    def verify(self, request: WebhookRequest) -> None:
        with signature_guard("signature query"):
            signature = request.query.get("signature") or ""
            timestamp = request.query.get("timestamp") or ""
            nonce = request.query.get("nonce") or ""
            if not (signature and timestamp and nonce):
                raise SignatureInvalid("signature, timestamp and nonce are required")
            if not _HEX_SHA1.fullmatch(signature) or not _TIMESTAMP.fullmatch(timestamp):
                raise SignatureInvalid("signature query is malformed")
            if abs(request.received_at_ms // 1000 - int(timestamp)) > FRESHNESS_S:
                raise SignatureInvalid("timestamp is more than 5 minutes from now")
            given = signature.lower().encode("ascii")
            matched = False
            for token in self._tokens.keys:
                expected = wechat_signature(token, timestamp, nonce).encode("ascii")
                matched |= hmac.compare_digest(expected, given)
            if not matched:
                raise SignatureInvalid("signature does not match")

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        return WebhookReply(status=200, body=b"success")

    def normalize(self, request: WebhookRequest) -> Normalized:
        fields = _parse(request.body)
        if "Encrypt" in fields and "MsgType" not in fields:
            raise InvalidEvent("Encrypt", _SAFE_MODE)
        account = _required(fields, "ToUserName")
        open_id = _required(fields, "FromUserName")
        created = _required(fields, "CreateTime")
        occurred_ms = epoch_ms(created, "CreateTime", unit="s")
        kind = _required(fields, "MsgType").lower()
        base = {
            "channel": self.name,
            "account_id": account,
            "conversation_id": f"wechat:{account}:{open_id}",
            "customer_id": open_id,
            "occurred_at": occurred_ms,
        }
        if kind in _MESSAGE_TYPES:
            msg_id = fields.get("MsgId") or f"{open_id}:{created}"
            event = build_event({**base, "event_id": f"wechat:{account}:{msg_id}",
                                 "type": EventType.MESSAGE.value,
                                 "author": Author.CUSTOMER.value})
            return Normalized([event])
        if kind == "event":
            session = _session_event(fields, base, f"{open_id}:{created}")
            if session is not None:
                return Normalized([session])
        return Normalized([], ignored=1)


def _session_event(
    fields: dict[str, str], base: dict[str, Any], dedupe: str
) -> ConversationEvent | None:
    name = fields.get("Event", "").lower()
    if name not in _SESSION_EVENTS:
        return None
    event_type, agent_field = _SESSION_EVENTS[name]
    return build_event({
        **base,
        "event_id": f"wechat:{base['account_id']}:{dedupe}:{name}",
        "type": event_type.value,
        "agent_id": fields.get(agent_field) or None,
    })


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidEvent(name, "is required")
    if len(value) > 200:
        raise InvalidEvent(name, "is too long")
    return value


def _parse(body: bytes) -> dict[str, str]:
    """Top-level `<xml>` children as text. DTDs, entities and external references are refused
    before any expansion (billion laughs, XXE)."""
    if len(body) > MAX_XML_BYTES:
        raise InvalidEvent("body", f"larger than {MAX_XML_BYTES} bytes")
    try:
        root = SafeElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except Exception as exc:  # defusedxml's *Forbidden, ParseError, bad encodings
        raise InvalidEvent("body", f"not acceptable XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise InvalidEvent("xml", "the root element must be <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str):
            fields[child.tag] = (child.text or "").strip()
    return fields
