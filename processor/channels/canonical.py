"""The `canonical` channel: any system posts msgkpi's own event format, one event or an array.

With `MSGKPI_CANONICAL_SECRET` set, a request must carry `Authorization: Bearer <secret>`;
without it the channel is open (for local use and trusted networks).
"""

from __future__ import annotations

import hmac

import orjson

from processor.channels.base import (
    Normalized,
    SignatureInvalid,
    WebhookReply,
    WebhookRequest,
)
from processor.events import events_from_json

__all__ = ["CanonicalAdapter"]

_JSON = "application/json"


class CanonicalAdapter:
    """Canonical events over HTTP; optional bearer-token authentication."""

    name: str = "canonical"

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret.encode() if secret else None

    def __repr__(self) -> str:
        return f"CanonicalAdapter(auth={'bearer' if self._secret else 'open'})"

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        body = orjson.dumps({"error": "the canonical channel has no handshake: POST events"})
        return WebhookReply(status=405, body=body, content_type=_JSON)

    def verify(self, request: WebhookRequest) -> None:
        if self._secret is None:
            return
        header = request.headers.get("Authorization")
        if header is None:
            raise SignatureInvalid("missing Authorization: Bearer header")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignatureInvalid("Authorization must be 'Bearer <token>'")
        given = token.strip().encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._secret):
            raise SignatureInvalid("wrong bearer token")

    def normalize(self, request: WebhookRequest) -> Normalized:
        return Normalized(events=events_from_json(request.body))

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        body = orjson.dumps({"accepted": len(normalized.events)})
        return WebhookReply(status=200, body=body, content_type=_JSON)
