"""The canonical conversation event: the one format every channel is normalized into.

`schemas/conversation-event.v1.schema.json` is the single source of what is valid; this module
compiles it once and turns a validated dict into a typed, immutable `ConversationEvent`. A
hand-written check (`plainly_valid`) lets the events the pipeline writes itself skip the
generic validator; it never accepts what the schema rejects (tests/unit/test_events_fast_path.py).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Final

import fastjsonschema
import orjson

from processor.errors import InvalidEvent

__all__ = [
    "SCHEMA_PATH",
    "Author",
    "ConversationEvent",
    "EventType",
    "Resolution",
    "event_from_dict",
    "event_from_json",
    "events_from_json",
    "parse_occurred_at",
    "plainly_valid",
]

SCHEMA_PATH: Final[Traversable] = files("processor").joinpath(
    "schemas", "conversation-event.v1.schema.json")
"""Package data: `processor/schemas` links to the top-level `schemas/`, the one source, and the
wheel carries a copy of its files."""


class EventType(StrEnum):
    MESSAGE = "message"
    ASSIGNED = "assigned"
    HANDOFF = "handoff"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CSAT = "csat"
    TAGGED = "tagged"


class Author(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


class Resolution(StrEnum):
    RESOLVED = "resolved"
    NO_REPLY_NEEDED = "no_reply_needed"
    SPAM = "spam"


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One thing that happened in a conversation, at the platform's own time."""

    event_id: str
    """Unique per event; duplicates with the same id are dropped."""
    type: EventType
    channel: str
    conversation_id: str
    """The thread; also the Kafka key, so one conversation lives on one partition."""
    occurred_at_ms: int
    """Event time (epoch milliseconds) as the platform stamped it, not arrival time."""
    account_id: str | None = None
    author: Author | None = None
    """Who wrote it; set exactly when type is message."""
    agent_id: str | None = None
    customer_id: str | None = None
    private: bool = False
    team: str | None = None
    priority: str | None = None
    tags: tuple[str, ...] = ()
    resolution: Resolution = Resolution.RESOLVED
    score: float | None = None
    scale: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Properties outside the schema, kept as received."""

    def to_dict(self) -> dict[str, Any]:
        """The wire form: schema-valid, `occurred_at` as epoch milliseconds, extras merged in."""
        out: dict[str, Any] = {
            **self.extra,
            "event_id": self.event_id,
            "type": self.type.value,
            "channel": self.channel,
            "conversation_id": self.conversation_id,
            "occurred_at": self.occurred_at_ms,
        }
        if self.account_id is not None:
            out["account_id"] = self.account_id
        if self.author is not None:
            out["author"] = self.author.value
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        if self.customer_id is not None:
            out["customer_id"] = self.customer_id
        if self.team is not None:
            out["team"] = self.team
        if self.priority is not None:
            out["priority"] = self.priority
        if self.score is not None:
            out["score"] = self.score
        if self.scale is not None:
            out["scale"] = self.scale
        if self.private:
            out["private"] = True
        if self.tags:
            out["tags"] = list(self.tags)
        if self.type is EventType.RESOLVED:
            out["resolution"] = self.resolution.value
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


_MODEL_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(ConversationEvent))
_WIRE_NAMES: Final = (_MODEL_FIELDS - {"occurred_at_ms", "extra"}) | {"occurred_at"}
_EVENT_TYPES: Final = {member.value: member for member in EventType}
_AUTHORS: Final = {member.value: member for member in Author}
_RESOLUTIONS: Final = {member.value: member for member in Resolution}


def _compile_schema() -> Callable[[Any], Any]:
    schema = orjson.loads(SCHEMA_PATH.read_bytes())
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return validate


_validate: Final = _compile_schema()


def parse_occurred_at(value: str | int | float) -> int:
    """Epoch milliseconds from an RFC 3339 string with offset, or from epoch milliseconds (an
    integer, or a float with an integral value, which JSON Schema counts as an integer)."""
    if isinstance(value, bool):
        raise InvalidEvent("occurred_at", "must be an RFC 3339 string or epoch milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidEvent("occurred_at", f"not a valid RFC 3339 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise InvalidEvent("occurred_at", "RFC 3339 time needs an offset (Z or +hh:mm)")
    return int(moment.timestamp() * 1000)


def _schema_error(exc: fastjsonschema.JsonSchemaValueException) -> InvalidEvent:
    path = [str(part) for part in (exc.path or [])[1:]]
    name = ".".join(path) if path else ""
    if not name and exc.rule == "required":
        missing = [key for key in (exc.rule_definition or []) if key not in (exc.value or {})]
        name = missing[0] if missing else "event"
        return InvalidEvent(name, "is required")
    message = exc.message.replace("data.", "", 1) if exc.message else "is invalid"
    return InvalidEvent(name or "event", message)


def event_from_dict(data: Any) -> ConversationEvent:
    """Validate one decoded JSON value against the schema and build the typed event.

    Events that `plainly_valid` vouches for skip the generic validator (the worker's hot
    path); every other value, valid or not, is judged by the validator compiled from the schema
    file, which also words the errors."""
    if not isinstance(data, dict):
        raise InvalidEvent("event", "must be a JSON object")
    if not plainly_valid(data):
        try:
            _validate(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _schema_error(exc) from None
    return _build(data)


def _build(data: dict[str, Any]) -> ConversationEvent:
    """The typed event of a schema-valid dict."""
    etype = _EVENT_TYPES[data["type"]]
    return ConversationEvent(
        event_id=data["event_id"],
        type=etype,
        channel=data["channel"],
        conversation_id=data["conversation_id"],
        occurred_at_ms=parse_occurred_at(data["occurred_at"]),
        account_id=data.get("account_id"),
        author=_AUTHORS[data["author"]] if etype is EventType.MESSAGE else None,
        agent_id=data.get("agent_id"),
        customer_id=data.get("customer_id"),
        private=data.get("private", False),
        team=data.get("team"),
        priority=data.get("priority"),
        tags=tuple(data.get("tags", ())),
        resolution=_RESOLUTIONS[data.get("resolution", "resolved")],
        score=float(data["score"]) if "score" in data else None,
        scale=data.get("scale"),
        extra={k: v for k, v in data.items() if k not in _WIRE_NAMES},
    )


# -- the fast path ------------------------------------------------------------------------------
# A hand-written check for the events the pipeline itself writes: it may say "not sure" (False)
# about valid events, never "valid" (True) about an event the schema rejects. Unit tests hold it
# to that against the compiled validator, on boundary cases and random and garbage input; the
# limits below are checked against the schema file.

_MAX_EPOCH_MS: Final = 253402300799999
_CHANNEL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_REQUIRED: Final = ("event_id", "type", "channel", "conversation_id", "occurred_at")


def _text(low: int, high: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return type(value) is str and low <= len(value) <= high
    return check


def _one_of(values: Iterable[str]) -> Callable[[Any], bool]:
    allowed = frozenset(values)

    def check(value: Any) -> bool:
        return type(value) is str and value in allowed
    return check


def _channel(value: Any) -> bool:
    return (type(value) is str and len(value) <= 64
            and _CHANNEL_NAME.fullmatch(value) is not None)


def _epoch_ms(value: Any) -> bool:
    """Integers only: RFC 3339 strings and integral floats take the validator's path."""
    return type(value) is int and 0 <= value <= _MAX_EPOCH_MS


def _tags(value: Any) -> bool:
    return (type(value) is list and len(value) <= 64
            and all(type(tag) is str and 1 <= len(tag) <= 128 for tag in value))


def _score(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def _scale(value: Any) -> bool:
    return type(value) is int and value in (5, 10)


def _flag(value: Any) -> bool:
    return type(value) is bool


_FIELD_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "event_id": _text(1, 256),
    "type": _one_of(_EVENT_TYPES),
    "channel": _channel,
    "account_id": _text(0, 256),
    "conversation_id": _text(1, 512),
    "occurred_at": _epoch_ms,
    "author": _one_of(_AUTHORS),
    "agent_id": _text(1, 256),
    "customer_id": _text(0, 256),
    "private": _flag,
    "team": _text(0, 128),
    "priority": _text(0, 64),
    "tags": _tags,
    "resolution": _one_of(_RESOLUTIONS),
    "score": _score,
    "scale": _scale,
}


def plainly_valid(data: dict[str, Any]) -> bool:
    """True only if the schema certainly accepts `data`; False when unsure."""
    for name in _REQUIRED:
        if name not in data:
            return False
    checks = _FIELD_CHECKS
    for name, value in data.items():
        check = checks.get(name)
        if check is not None and not check(value):
            return False
    etype = data["type"]
    if etype == "message":
        return "author" in data
    if etype == "csat":
        return _csat_score_in_range(data)
    return True


def _csat_score_in_range(data: dict[str, Any]) -> bool:
    if "score" not in data or "scale" not in data:
        return False
    low = 1 if data["scale"] == 5 else 0
    return bool(low <= data["score"] <= data["scale"])


def event_from_json(raw: bytes) -> ConversationEvent:
    """Decode and validate one event from JSON bytes (e.g. a Kafka record value)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("body", f"not valid JSON: {exc}") from None
    return event_from_dict(data)


def events_from_json(raw: bytes) -> list[ConversationEvent]:
    """One event or a JSON array of events; every one is validated before any is returned."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("body", f"not valid JSON: {exc}") from None
    if isinstance(data, list):
        if not data:
            raise InvalidEvent("body", "empty array: send at least one event")
        events = []
        for index, item in enumerate(data):
            try:
                events.append(event_from_dict(item))
            except InvalidEvent as exc:
                raise InvalidEvent(f"[{index}].{exc.field}", exc.message) from None
        return events
    return [event_from_dict(data)]
