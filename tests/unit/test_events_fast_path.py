"""The fast path of `event_from_dict` (`plainly_valid`) against the validator compiled from the
schema file: it never vouches for an event the schema rejects, and with or without it every
input gives the same event or the same error."""

from __future__ import annotations

import math
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.events import (
    SCHEMA_PATH,
    Author,
    EventType,
    Resolution,
    _build,
    _schema_error,
    _validate,
    event_from_dict,
    plainly_valid,
)
from processor.traffic.scenario import Scenario, generate_events

SCHEMA = orjson.loads(SCHEMA_PATH.read_bytes())
PROPERTIES: dict[str, dict[str, Any]] = SCHEMA["allOf"][0]["properties"]


def schema_accepts(data: Any) -> bool:
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def through_validator(data: Any) -> Any:
    """What event_from_dict answered before the fast path: validate, then build."""
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        error = _schema_error(exc)
        return ("InvalidEvent", error.field, error.message)
    return outcome(_build, data)


def outcome(decode: Any, data: Any) -> Any:
    """The event (repr, so a NaN score compares equal) or the error."""
    try:
        return repr(decode(data))
    except Exception as exc:
        return (type(exc).__name__, getattr(exc, "field", None), getattr(exc, "message", str(exc)))


def assert_agrees(data: dict[str, Any]) -> None:
    if plainly_valid(data):
        assert schema_accepts(data), data
    assert outcome(event_from_dict, data) == through_validator(data), data


def base_event(etype: str = "message") -> dict[str, Any]:
    data: dict[str, Any] = {"event_id": "e-1", "type": etype, "channel": "whatsapp",
                            "conversation_id": "c-1", "occurred_at": 1_764_064_800_000}
    if etype == "message":
        data["author"] = "customer"
    if etype == "csat":
        data.update(score=4, scale=5)
    return data


# -- the fast path is taken for what the pipeline writes ---------------------------------------

def test_simulated_events_take_the_fast_path() -> None:
    scenario = Scenario(seed=3, start_ms=1_764_064_800_000, run_id="t", conversations_per_s=5.0)
    seen_types = set()
    for index, scheduled in enumerate(generate_events(scenario)):
        wire = orjson.loads(scheduled.event.to_json())
        assert plainly_valid(wire), wire
        assert event_from_dict(wire) == scheduled.event
        seen_types.add(wire["type"])
        if index == 3000:
            break
    assert {"message", "resolved", "csat"} <= seen_types


def test_rfc3339_strings_and_integral_floats_take_the_validator() -> None:
    assert not plainly_valid({**base_event(), "occurred_at": "2026-03-01T10:00:00Z"})
    assert not plainly_valid({**base_event(), "occurred_at": 1_764_064_800_000.0})
    assert event_from_dict({**base_event(), "occurred_at": 1_764_064_800_000.0}) == (
        event_from_dict(base_event()))


# -- the hand-written limits are the schema's --------------------------------------------------

def test_every_schema_property_is_checked_and_vice_versa() -> None:
    from processor.events import _FIELD_CHECKS

    assert set(_FIELD_CHECKS) == set(PROPERTIES)
    assert list(SCHEMA["allOf"][0]["required"]) == [
        "event_id", "type", "channel", "conversation_id", "occurred_at"]
    assert PROPERTIES["type"]["enum"] == [member.value for member in EventType]
    assert PROPERTIES["author"]["enum"] == [member.value for member in Author]
    assert PROPERTIES["resolution"]["enum"] == [member.value for member in Resolution]


STRING_FIELDS = sorted(name for name, rule in PROPERTIES.items() if rule.get("type") == "string")


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_string_length_limits(name: str) -> None:
    rule = PROPERTIES[name]
    low, high = rule.get("minLength", 0), rule.get("maxLength", 300)
    for etype in ("message", "assigned"):
        for length in {0, max(low - 1, 0), low, high, high + 1, 1000}:
            for text in ("a" * length, "é" * length, "\U0001f600" * length):
                assert_agrees({**base_event(etype), name: text})


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 200])
def test_tags_limits(length: int) -> None:
    assert_agrees({**base_event(), "tags": ["t"] * length})
    assert_agrees({**base_event(), "tags": ["t" * 128, "u" * 129][: min(length, 2)]})
    assert_agrees({**base_event(), "tags": [""] * min(length, 1)})


@pytest.mark.parametrize("channel", [
    "whatsapp", "a", "0", "x.y_z-1", "a" * 64, "a" * 65, "", "Whatsapp", "_x", "-x", ".x",
    "wa\n", "wa\r", "wa ", " wa", "wä", "wa\x00", "wa\nwa", "a\u0131"])
def test_channel_pattern(channel: str) -> None:
    assert_agrees({**base_event(), "channel": channel})


@pytest.mark.parametrize("value", [
    -1, 0, 1, 253402300799999, 253402300799999 + 1, 10**30, True, False, 1.0, 1.5, -1.0,
    float("nan"), float("inf"), "2026-03-01T10:00:00Z", "2026-03-01T10:00:00",
    "2026-02-30T10:00:00Z",
    "2026-03-01t10:00:00z", "2026-03-01 10:00:00+01:00", "2026-03-01T10:00:00.123456789+01:00",
    "2026-03-01T10:00:00Z\n", "", None, [], {}])
def test_occurred_at(value: Any) -> None:
    assert_agrees({**base_event(), "occurred_at": value})


@pytest.mark.parametrize("scale", [5, 10, 7, 5.0, 10.0, True, "5", None])
@pytest.mark.parametrize("score", [
    -1, 0, 0.5, 1, 4.5, 5, 5.5, 9, 10, 10.5, 11, True, False, float("nan"), float("inf"),
    -float("inf"), "4", None, 10**40])
def test_csat_score_and_scale(scale: Any, score: Any) -> None:
    assert_agrees({**base_event("csat"), "scale": scale, "score": score})
    assert_agrees({**base_event("assigned"), "scale": scale, "score": score})


@pytest.mark.parametrize("etype", [member.value for member in EventType])
@pytest.mark.parametrize("missing", [
    "event_id", "type", "channel", "conversation_id", "occurred_at", "author", "score", "scale"])
def test_missing_fields(etype: str, missing: str) -> None:
    data = {**base_event(etype), "author": "agent", "score": 3, "scale": 5}
    del data[missing]
    assert_agrees(data)


# -- property tests: random near-valid events and garbage --------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
FIELD_NAMES = [*PROPERTIES, "extra_field", "occurred_at_ms", "extra"]


def interesting(name: str) -> st.SearchStrategy[Any]:
    """Values near the field's own rules, and plain wrong ones."""
    rule = PROPERTIES.get(name, {})
    options: list[st.SearchStrategy[Any]] = [JSON_VALUES]
    if "enum" in rule:
        options.append(st.sampled_from([*rule["enum"], "Message", "", "spam "]))
    if rule.get("type") == "string":
        high = rule.get("maxLength", 64)
        options.append(st.text(alphabet="ab0.-_Z\n é", min_size=0, max_size=high + 2))
    if name == "occurred_at":
        options.append(st.integers(min_value=-5, max_value=253402300799999 + 5))
    if name in ("score", "scale"):
        options.append(st.sampled_from([0, 1, 5, 10, 11, 4.5, -0.0, 5.0, 10.0]))
    if name == "tags":
        options.append(st.lists(st.text(max_size=130), max_size=66))
    return st.one_of(options)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    data = base_event(draw(st.sampled_from([member.value for member in EventType])))
    if draw(st.booleans()):
        data.update(agent_id="a-1", customer_id="u-1", team="t", priority="high",
                    account_id="acc", tags=["x"], private=False, resolution="spam")
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=4, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            data.pop(name, None)
        else:
            data[name] = draw(interesting(name))
    return data


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_near_valid_events_agree(data: dict[str, Any]) -> None:
    assert_agrees(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), JSON_VALUES,
                       max_size=10))
def test_garbage_objects_agree(data: dict[str, Any]) -> None:
    assert_agrees(data)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_garbage_values_agree(data: Any) -> None:
    assert outcome(event_from_dict, data) == (
        through_validator(data) if isinstance(data, dict)
        else ("InvalidEvent", "event", "must be a JSON object"))


def test_a_valid_nan_score_still_builds_the_same_event() -> None:
    data = {**base_event("assigned"), "score": float("nan")}
    assert not plainly_valid(data)
    event = event_from_dict(data)
    assert event.score is not None and math.isnan(event.score)
