"""The Meta (Graph API) webhook scheme shared by WhatsApp Cloud API, Messenger and Instagram:
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, the GET
`hub.mode=subscribe` / `hub.verify_token` / `hub.challenge` handshake, and the
`{object, entry: [...]}` envelope.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

from processor.channels._support import (
    SecretSet,
    error_reply,
    get_list,
    header,
    hex_digest,
    hmac_sha256,
    json_object,
    secret_matches,
    signature_guard,
)
from processor.channels.base import SignatureInvalid, WebhookReply, WebhookRequest
from processor.errors import InvalidEvent

__all__ = [
    "META_SIGNATURE_HEADER",
    "MetaWebhook",
    "meta_handshake",
    "meta_signature",
    "verify_meta_signature",
]

META_SIGNATURE_HEADER: Final = "X-Hub-Signature-256"


# --- Meta: signature and handshake -----------------------------------------------------------


def meta_signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body` (also GitHub's scheme)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_meta_signature(request: WebhookRequest, secrets: SecretSet) -> None:
    with signature_guard(META_SIGNATURE_HEADER):
        provided = hex_digest(header(request.headers, META_SIGNATURE_HEADER),
                              META_SIGNATURE_HEADER)
        if not secret_matches(secrets, lambda key: hmac_sha256(key, request.body), provided):
            raise SignatureInvalid(f"{META_SIGNATURE_HEADER} does not match the body")


def meta_handshake(request: WebhookRequest, verify_tokens: SecretSet) -> WebhookReply:
    """GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=... -> 200 challenge."""
    mode = request.query.get("hub.mode")
    token = request.query.get("hub.verify_token")
    challenge = request.query.get("hub.challenge")
    if mode != "subscribe":
        return error_reply(400, "hub.mode must be 'subscribe'")
    if not challenge:
        return error_reply(400, "hub.challenge is missing")
    given = (token or "").encode("utf-8", "surrogatepass")
    if not token or not secret_matches(verify_tokens, lambda key: key, given):
        return error_reply(403, "hub.verify_token does not match MSGKPI_<CHANNEL>_VERIFY_TOKEN")
    return WebhookReply(status=200, body=challenge.encode("utf-8", "surrogatepass"))


class MetaWebhook:
    """What every Meta webhook (WhatsApp, Messenger, Instagram) shares: the hub.challenge
    handshake, `X-Hub-Signature-256` over the raw body, and the `{object, entry: [...]}`
    envelope. Subclasses normalize the entries."""

    def __init__(self, object_name: str, secret: str, verify_token: str) -> None:
        self._object = object_name
        self._secrets = SecretSet(secret)
        self._verify_tokens = SecretSet(verify_token)

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        return meta_handshake(request, self._verify_tokens)

    def verify(self, request: WebhookRequest) -> None:
        verify_meta_signature(request, self._secrets)

    def acknowledge(self, normalized: object) -> WebhookReply:
        return WebhookReply()

    def _entries(self, request: WebhookRequest) -> tuple[list[Any], bool]:
        """The delivery's entries, and whether its `object` is this adapter's (a signed
        delivery for another object is ignored, not refused: Meta would retry a 4xx)."""
        payload = json_object(request.body)
        kind = payload.get("object")
        if not isinstance(kind, str):
            raise InvalidEvent("object", f"is required (expected {self._object!r})")
        return get_list(payload, "entry", "entry"), kind == self._object
