"""What every platform adapter provides: handshake, signature check, normalization.

The gateway owns HTTP and Kafka; an adapter is pure: bytes and headers in, canonical events out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

from processor.errors import MsgkpiError

__all__ = [
    "ChannelAdapter",
    "Normalized",
    "SignatureInvalid",
    "WebhookReply",
    "WebhookRequest",
]

from processor.events import ConversationEvent


class SignatureInvalid(MsgkpiError):
    """Missing, malformed or wrong signature (HTTP 401). Never carries the secret."""


class WebhookRequest(NamedTuple):
    """An incoming webhook call as the adapter sees it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Case-insensitive mapping (aiohttp's CIMultiDictProxy in the gateway)."""
    body: bytes
    """The raw bytes, exactly as received: signatures are checked on these."""
    received_at_ms: int


class WebhookReply(NamedTuple):
    """What to answer the platform."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


class Normalized(NamedTuple):
    """The canonical events found in one delivery, and how many items msgkpi does not use."""

    events: list[ConversationEvent]
    ignored: int = 0


class ChannelAdapter(Protocol):
    """One messaging platform. Methods raise `SignatureInvalid` (401) or
    `processor.errors.InvalidEvent` (400); anything else escaping is a bug."""

    name: str

    def handshake(self, request: WebhookRequest) -> WebhookReply:
        """Answer a GET verification call (Meta hub.challenge, WeChat echostr, X CRC)."""
        ...

    def verify(self, request: WebhookRequest) -> None:
        """Check the signature over the raw body; raise `SignatureInvalid` if it fails."""
        ...

    def normalize(self, request: WebhookRequest) -> Normalized:
        """Turn a verified delivery into canonical events; raise `InvalidEvent` if the body is
        not the platform's format."""
        ...

    def acknowledge(self, normalized: Normalized) -> WebhookReply:
        """The success answer once the events are durable (WeChat wants `success`)."""
        ...
