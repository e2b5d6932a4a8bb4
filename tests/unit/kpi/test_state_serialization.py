"""The hand-written serializers equal the generic ones they replaced: `CycleState.to_dict` is
`dataclasses.asdict` and `copy` an independent deep copy; `ConversationEvent.to_dict` keeps its
keys and their order."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from itertools import islice
from typing import Any

from processor.events import ConversationEvent, EventType
from processor.kpi.timeline import Timeline
from processor.traffic.scenario import Scenario, generate_events

OPTIONAL_WIRE_FIELDS = (
    "account_id", "author", "agent_id", "customer_id", "team", "priority", "score", "scale",
)


def generic_event_dict(event: ConversationEvent) -> dict[str, Any]:
    """`ConversationEvent.to_dict` as it was written before (field by field with getattr)."""
    out: dict[str, Any] = dict(event.extra)
    out.update(event_id=event.event_id, type=event.type.value, channel=event.channel,
               conversation_id=event.conversation_id, occurred_at=event.occurred_at_ms)
    for name in OPTIONAL_WIRE_FIELDS:
        value = getattr(event, name)
        if value is not None:
            out[name] = value.value if isinstance(value, StrEnum) else value
    if event.private:
        out["private"] = True
    if event.tags:
        out["tags"] = list(event.tags)
    if event.type is EventType.RESOLVED:
        out["resolution"] = event.resolution.value
    return out


def simulated(count: int) -> list[ConversationEvent]:
    scenario = Scenario(seed=11, start_ms=1_764_064_800_000, run_id="s", conversations_per_s=3.0)
    return [scheduled.event for scheduled in islice(generate_events(scenario), count)]


def test_event_to_dict_is_unchanged_key_for_key() -> None:
    events = simulated(3000)
    events.append(ConversationEvent(
        "e", EventType.RESOLVED, "x", "c", 5, extra={"z": 1, "a": [1]}, private=True,
        tags=("t",), account_id="acc", team="", priority="p", score=2.0, scale=5))
    for event in events:
        assert list(event.to_dict().items()) == list(generic_event_dict(event).items())


def test_cycle_state_to_dict_is_asdict_and_copy_is_deep() -> None:
    timelines: dict[str, Timeline] = {}
    for event in simulated(3000):
        timeline = timelines.setdefault(event.conversation_id, Timeline(grace_ms=600_000))
        timeline.ingest(event)
        for state in (timeline.head, timeline.checkpoint):
            as_dict = state.to_dict()
            assert as_dict == asdict(state)
            copy = state.copy()
            assert copy == state
            for name, value in as_dict.items():
                if isinstance(value, list):
                    assert getattr(copy, name) is not getattr(state, name)
            assert all(a is not b for a, b in zip(copy.unanswered, state.unanswered, strict=True))
    assert any(t.head.unanswered for t in timelines.values())
