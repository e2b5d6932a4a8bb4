"""What the platform adapters share.

- `SecretSet`: `MSGKPI_<CHANNEL>_SECRET` holds one secret, or `current,previous` during a
  rotation; a signature made with any of them is accepted.
- `signature_guard`: anything unexpected while reading a signature header (bad hex or base64,
  non-ASCII, wrong length) becomes `SignatureInvalid`, never another exception.
- JSON field readers that raise `InvalidEvent` naming the dotted path of the offending field.
- `build_event`: every canonical event goes through `event_from_dict`, so it is schema-valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import orjson

from processor.channels.base import SignatureInvalid, WebhookReply
from processor.errors import InvalidEvent
from processor.events import Author, ConversationEvent, event_from_dict

__all__ = [
    "UNKNOWN_AGENT",
    "JsonObject",
    "SecretSet",
    "as_object",
    "b64_digest",
    "build_event",
    "epoch_ms",
    "error_reply",
    "get_id",
    "get_list",
    "get_object",
    "header",
    "hex_digest",
    "hmac_sha256",
    "id_text",
    "json_object",
    "opt_id",
    "opt_object",
    "opt_str",
    "parse_marker",
    "secret_matches",
    "signature_guard",
]

JsonObject = dict[str, Any]

UNKNOWN_AGENT: Final = "unknown"
"""agent_id when the platform says a business-side message was sent but not by whom."""

_MAX_ID_CHARS: Final = 200
_DIGITS: Final = re.compile(r"-?[0-9]{1,16}")
_MAX_EPOCH_S: Final = 253402300799  # 9999-12-31T23:59:59Z, the schema's upper bound


# --- secrets and signatures ------------------------------------------------------------------


class SecretSet:
    """One or more secrets for a channel; the first is the current one (used to sign replies
    such as the X CRC answer), any of them verifies an incoming signature."""

    __slots__ = ("_keys",)

    def __init__(self, raw: str | Sequence[str]) -> None:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        keys = tuple(item.strip().encode("utf-8") for item in items if item.strip())
        if not keys:
            raise ValueError("holds no secret: give one secret, or 'current,previous'")
        self._keys = keys

    @property
    def keys(self) -> tuple[bytes, ...]:
        return self._keys

    @property
    def current(self) -> bytes:
        return self._keys[0]

    def __repr__(self) -> str:
        return f"SecretSet(<{len(self._keys)} hidden>)"


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def secret_matches(
    secrets: SecretSet, expected_for: Callable[[bytes], bytes], provided: bytes
) -> bool:
    """Constant-time: every secret is compared, whichever matches."""
    matched = False
    for key in secrets.keys:
        matched |= hmac.compare_digest(expected_for(key), provided)
    return matched


@contextmanager
def signature_guard(what: str) -> Iterator[None]:
    """Turn any failure while reading or checking `what` into `SignatureInvalid` (401)."""
    try:
        yield
    except SignatureInvalid:
        raise
    except Exception:
        raise SignatureInvalid(f"{what} is malformed") from None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even on a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _required_ascii(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise SignatureInvalid(f"missing {what}")
    value.encode("ascii")  # UnicodeEncodeError -> malformed, via signature_guard
    return value.strip()


def hex_digest(value: str | None, what: str, prefix: str = "sha256=") -> bytes:
    """The raw digest from `sha256=<hex>`; raise inside `signature_guard`."""
    text = _required_ascii(value, what)
    if not text.startswith(prefix):
        raise SignatureInvalid(f"{what} must start with {prefix!r}")
    return binascii.unhexlify(text[len(prefix):])


def b64_digest(value: str | None, what: str, prefix: str = "") -> bytes:
    """The raw digest from `[prefix]<base64>`; raise inside `signature_guard`."""
    text = _required_ascii(value, what)
    if not text.startswith(prefix):
        raise SignatureInvalid(f"{what} must start with {prefix!r}")
    return base64.b64decode(text[len(prefix):], validate=True)


# --- replies ---------------------------------------------------------------------------------


def error_reply(status: int, message: str) -> WebhookReply:
    """A non-2xx answer with the gateway's error shape `{"error": "..."}`."""
    return WebhookReply(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )


# --- reading platform JSON -------------------------------------------------------------------


def json_object(body: bytes) -> JsonObject:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("body", f"not valid JSON: {exc}") from None
    return as_object(data, "body")


def as_object(value: Any, path: str) -> JsonObject:
    if not isinstance(value, dict):
        raise InvalidEvent(path, "must be a JSON object")
    return value


def get_object(parent: JsonObject, key: str, path: str) -> JsonObject:
    if key not in parent or parent[key] is None:
        raise InvalidEvent(path, "is required")
    return as_object(parent[key], path)


def opt_object(parent: JsonObject, key: str) -> JsonObject | None:
    """A nested object if present and an object; anything else reads as absent."""
    value = parent.get(key)
    return value if isinstance(value, dict) else None


def get_list(parent: JsonObject, key: str, path: str, *, required: bool = True) -> list[Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise InvalidEvent(path, "is required")
        return []
    if not isinstance(value, list):
        raise InvalidEvent(path, "must be a JSON array")
    return value


def id_text(value: Any) -> str | None:
    """A platform id (string, or integer) as text; `None` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= _MAX_ID_CHARS:
        return value
    return None


def get_id(parent: JsonObject, key: str, path: str) -> str:
    """A platform id (string, or integer as many platforms send), as text."""
    if parent.get(key) is None:
        raise InvalidEvent(path, "is required")
    text = id_text(parent[key])
    if text is None:
        raise InvalidEvent(path, f"must be a non-empty id of at most {_MAX_ID_CHARS} chars")
    return text


def opt_id(parent: JsonObject, key: str) -> str | None:
    return id_text(parent.get(key))


def opt_str(parent: JsonObject, key: str) -> str | None:
    value = parent.get(key)
    return value if isinstance(value, str) else None


def epoch_ms(value: Any, path: str, *, unit: str) -> int:
    """Epoch milliseconds from a platform time in `unit` ('s' or 'ms'), int or digit string."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and unit == "s" and 0 <= value <= _MAX_EPOCH_S:
        return int(value * 1000)
    else:
        raise InvalidEvent(path, f"must be an epoch time in {unit}")
    millis = number * 1000 if unit == "s" else number
    if not 0 <= millis <= _MAX_EPOCH_S * 1000 + 999:
        raise InvalidEvent(path, "is out of range")
    return millis


# --- building canonical events ---------------------------------------------------------------


def build_event(fields: Mapping[str, Any]) -> ConversationEvent:
    """Schema-validate and build one event; `None` values are left out."""
    return event_from_dict({key: value for key, value in fields.items() if value is not None})


def parse_marker(marker: str | None) -> tuple[Author, str] | None:
    """The identity msgkpi asks senders to plant: `agent:<id>` or `bot:<id>` (an empty id reads
    as `unknown`). Anything else is not a marker."""
    if not marker:
        return None
    kind, sep, ident = marker.strip().partition(":")
    if not sep or kind.lower() not in ("agent", "bot"):
        return None
    ident = ident.strip()[:_MAX_ID_CHARS] or UNKNOWN_AGENT
    return (Author.AGENT if kind.lower() == "agent" else Author.BOT), ident
