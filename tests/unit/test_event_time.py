"""`occurred_at` in every form the schema accepts becomes epoch milliseconds; nothing the
schema accepts may escape `event_from_json` as anything but an event or `InvalidEvent`."""

from __future__ import annotations

import pytest

from processor.errors import InvalidEvent
from processor.events import event_from_json, parse_occurred_at

EVENT = (b'{"event_id": "e", "type": "assigned", "channel": "x", "conversation_id": "c", '
         b'"occurred_at": %s}')


def test_an_integral_float_is_epoch_milliseconds() -> None:
    """JSON Schema counts 1764064800000.0 as an integer; it used to raise a TypeError out of
    the worker's processing step (crashing the agent) and a 500 from the gateway."""
    assert event_from_json(EVENT % b"1764064800000.0").occurred_at_ms == 1_764_064_800_000
    assert event_from_json(EVENT % b"1.7640648e12").occurred_at_ms == 1_764_064_800_000


@pytest.mark.parametrize("raw", [b"1764064800000.5", b"-1.0", b"true", b"null", b"[]"])
def test_other_numbers_and_types_are_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_from_json(EVENT % raw)
    assert caught.value.field == "occurred_at"


@pytest.mark.parametrize("value", [[], {}, None, 1.5])
def test_parse_occurred_at_raises_invalid_event_for_anything_else(value: object) -> None:
    with pytest.raises(InvalidEvent):
        parse_occurred_at(value)  # type: ignore[arg-type]
