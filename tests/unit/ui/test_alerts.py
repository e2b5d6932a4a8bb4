"""Conversation alerts: what ends them (replies, resolutions, a breach), in any read order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from processor.ui.alerts import AlertBook, ConversationActivity, Mark, SlaEvent, clearing_ms

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "sla-event.v1.schema.json"
validate = fastjsonschema.compile(orjson.loads(SCHEMA.read_bytes()))
MIN = 60_000


def sla(kind: str = "at_risk", metric: str = "first_response", conversation: str = "c1",
        period_ms: int = 0, cycle: int = 1, **extra: Any) -> dict[str, Any]:
    due = period_ms + 10 * MIN
    record = {
        "schema": "msgkpi.sla-event.v1",
        "alert_id": f"{conversation}/{cycle}/{metric}/{kind}/{period_ms}",
        "kind": kind, "metric": metric, "policy": "gold", "cycle": cycle,
        "period_ms": period_ms, "start_ms": period_ms, "due_ms": due,
        "at_ms": due - 2 * MIN if kind == "at_risk" else due + 1,
        "detected_at_ms": due, "channel": "whatsapp", "conversation_id": conversation,
        "account_id": "waba-1", **extra,
    }
    validate(record)
    return record


def event(kind: str = "at_risk", **fields: Any) -> SlaEvent:
    return SlaEvent.from_dict(sla(kind, **fields))


def activity(at_ms: int, conversation: str = "c1", **fields: Any) -> ConversationActivity:
    data = {"event_id": f"e{at_ms}", "type": "message", "channel": "whatsapp",
            "conversation_id": conversation, "occurred_at": at_ms, "author": "agent", **fields}
    found = ConversationActivity.from_event(data)
    assert found is not None
    return found


def test_sla_event_from_a_schema_valid_record() -> None:
    parsed = event(team="emea", priority="urgent")
    assert (parsed.kind, parsed.metric, parsed.conversation_id) == (
        "at_risk", "first_response", "c1")
    assert (parsed.account_id, parsed.team, parsed.priority) == ("waba-1", "emea", "urgent")
    assert SlaEvent.from_dict({**sla(), "team": None}).team is None  # v1 without team


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "cleared"}, "kind"), ({"due_ms": "soon"}, "due_ms"), ({"cycle": True}, "cycle"),
    ({"conversation_id": ""}, "conversation_id"), ({"policy": None}, "policy"),
])
def test_sla_event_rejects_bad_records(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SlaEvent.from_dict({**sla(), **change})


@pytest.mark.parametrize(("fields", "answers", "resolves"), [
    ({}, True, False),
    ({"type": "resolved", "author": None}, False, True),
])
def test_activity_that_stops_clocks(fields: dict[str, Any], answers: bool,
                                    resolves: bool) -> None:
    found = activity(5, **fields)
    assert (found.answers, found.resolves, found.occurred_at_ms) == (answers, resolves, 5)


@pytest.mark.parametrize("fields", [
    {"author": "bot"}, {"author": "customer"}, {"private": True}, {"type": "assigned"},
    {"type": "csat"}, {"occurred_at": "2026-01-01T00:00:00Z"}, {"conversation_id": 7},
])
def test_activity_that_stops_no_clock(fields: dict[str, Any]) -> None:
    data = {"event_id": "e", "type": "message", "channel": "whatsapp",
            "conversation_id": "c1", "occurred_at": 5, "author": "agent", **fields}
    assert ConversationActivity.from_event(data) is None


CLEARING = [
    # (metric, mark, event time that ends an alert whose period starts at 100, or None)
    ("first_response", Mark(replied_ms=150), 150),
    ("first_response", Mark(replied_ms=100), 100),
    ("first_response", Mark(replied_ms=99), None),  # an answer from before this period
    ("next_reply", Mark(replied_ms=120, resolved_ms=110), 110),
    ("first_response", Mark(resolved_ms=130), 130),
    ("resolution", Mark(replied_ms=150), None),  # a reply does not resolve
    ("resolution", Mark(replied_ms=150, resolved_ms=160), 160),
    ("resolution", Mark(resolved_ms=50), None),
]


@pytest.mark.parametrize(("metric", "mark", "expected"), CLEARING)
def test_clearing(metric: str, mark: Mark, expected: int | None) -> None:
    assert clearing_ms(event(metric=metric, period_ms=100), mark) == expected


def test_reply_ends_the_active_alert() -> None:
    book = AlertBook()
    assert book.add_sla_event(event(period_ms=0))
    assert [a.event.alert_id for a in book.active("at_risk")] == ["c1/1/first_response/at_risk/0"]
    assert book.add_activity(activity(5 * MIN, conversation="other")) == []
    (ended,) = book.add_activity(activity(9 * MIN))
    assert (ended.ended_ms, ended.ended_by, ended.active) == (9 * MIN, "answered", False)
    assert book.active("at_risk") == [] and book.active_count("at_risk") == 0
    assert book.alerts() == [ended]  # kept, so its end can be sent


def test_reply_read_before_its_alert_ends_it_on_arrival() -> None:
    book = AlertBook()
    book.add_activity(activity(3 * MIN))
    book.add_sla_event(event(period_ms=0))
    assert book.active("at_risk") == []
    (alert,) = book.alerts()
    assert alert.ended_by == "answered"


def test_resolution_ends_every_clock_of_the_conversation() -> None:
    book = AlertBook()
    book.add_sla_event(event(metric="resolution", period_ms=0))
    book.add_sla_event(event("breach", metric="next_reply", period_ms=MIN))
    assert book.add_activity(activity(20 * MIN)) != []  # the reply ends next_reply only
    assert [a.event.metric for a in book.active("at_risk")] == ["resolution"]
    (ended,) = book.add_activity(activity(30 * MIN, type="resolved", author=None))
    assert ended.ended_by == "resolved"
    assert book.active("at_risk") == [] and book.active("breach") == []


def test_breach_takes_over_from_its_at_risk_alert_only() -> None:
    book = AlertBook()
    book.add_sla_event(event(period_ms=0))
    book.add_sla_event(event(metric="next_reply", period_ms=0))
    book.add_sla_event(event("breach", period_ms=0))
    assert [a.event.metric for a in book.active("at_risk")] == ["next_reply"]
    assert [a.event.kind for a in book.active("breach")] == ["breach"]
    superseded = next(a for a in book.alerts() if a.event.kind == "at_risk"
                      and a.event.metric == "first_response")
    assert (superseded.ended_by, superseded.ended_ms) == ("breach", 10 * MIN + 1)


def test_duplicates_are_ignored_and_newest_come_first() -> None:
    book = AlertBook()
    assert book.add_sla_event(event(conversation="a", period_ms=0))
    assert not book.add_sla_event(event(conversation="a", period_ms=0))
    book.add_sla_event(event(conversation="b", period_ms=MIN))
    assert [a.event.conversation_id for a in book.active("at_risk")] == ["b", "a"]
    assert [a.event.conversation_id for a in book.active("at_risk", limit=1)] == ["b"]
    assert book.active_count("at_risk") == 2


def test_expiry_and_caps() -> None:
    book = AlertBook(keep_ended_ms=MIN, max_age_ms=60 * MIN, max_active=2, max_marks=1)
    book.add_sla_event(event(conversation="a", period_ms=0))
    book.add_activity(activity(9 * MIN, conversation="a"))
    book.add_sla_event(event(conversation="b", period_ms=100 * MIN))
    book.expire(9 * MIN + MIN // 2)
    assert len(book.alerts()) == 2  # the ended one is kept a minute
    book.expire(11 * MIN)
    assert [a.event.conversation_id for a in book.alerts()] == ["b"]
    book.expire(200 * MIN)  # b is older than max_age: dropped
    assert book.alerts() == []
    for name in "cde":
        book.add_sla_event(event(conversation=name, period_ms=ord(name) * MIN))
    assert sorted(a.event.conversation_id for a in book.active("at_risk")) == ["d", "e"]
    marks = AlertBook(max_marks=1)
    marks.add_activity(activity(0, conversation="x"))
    marks.add_activity(activity(0, conversation="y"))  # pushes x's mark out
    marks.add_sla_event(event(conversation="x", period_ms=0))
    marks.add_sla_event(event(conversation="y", period_ms=0))
    assert [a.event.conversation_id for a in marks.active("at_risk")] == ["x"]
