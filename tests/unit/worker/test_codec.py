"""Stored conversations round-trip through the changelog codec; damaged records are dropped
(logged), never raised, so Faust's table recovery cannot stall on them."""

from __future__ import annotations

import logging

import orjson
import pytest

from processor.events import event_from_dict
from processor.kpi.event_step import StoredConversation
from processor.kpi.facts import Fact, FactKind
from processor.kpi.pane_store import PaneRecord
from processor.kpi.sla import SlaTracker
from processor.kpi.sla_record import SlaRecord
from processor.kpi.timeline import Timeline
from processor.worker.codec import ConversationCodec
from processor.worker.window_stage import WindowRecordCodec


def test_conversation_round_trip() -> None:
    timeline = Timeline(grace_ms=600_000)
    timeline.ingest(event_from_dict({
        "event_id": "e1", "type": "message", "channel": "line", "conversation_id": "c",
        "occurred_at": 1_000, "author": "customer"}))
    stored = StoredConversation(4, timeline, SlaRecord(
        match={"channel": "line", "team": "t"}, policy="p",
        tracker=SlaTracker(1, {("at_risk", "first_response", 0)}),
        live=[Fact(FactKind.FIRST_RESPONSE, "line", 31_000, "e2", "agent", "ana", 30.0, 1)],
        produced=[Fact(FactKind.SLA, "line", 31_000, "e2", "first_response", "p", 1.0, 1)]))
    codec = ConversationCodec()
    again = codec.loads(codec.dumps(stored))
    assert again == stored


def test_an_sla_record_written_before_it_was_typed_still_reads() -> None:
    """The changelog of a running deployment holds records of the previous version."""
    timeline = Timeline(grace_ms=600_000)
    previous = orjson.dumps({"partition": 0, "timeline": timeline.to_dict(), "sla": {
        "match": {"channel": "line"}, "policy": "p",
        "tracker": {"cycle": 2, "emitted": [["breach", "resolution", 0]]},
        "live": [["resolution", "line", 9_000, "e9", "resolved", "", 8.0, 2]],
        "produced": [["sla", "line", 9_000, "e9", "resolution", "p", 0.0, 2]]}})
    stored = ConversationCodec().loads(previous)
    assert stored is not None and stored.sla == SlaRecord(
        match={"channel": "line"}, policy="p",
        tracker=SlaTracker(2, {("breach", "resolution", 0)}),
        live=[Fact(FactKind.RESOLUTION, "line", 9_000, "e9", "resolved", "", 8.0, 2)],
        produced=[Fact(FactKind.SLA, "line", 9_000, "e9", "resolution", "p", 0.0, 2)])
    no_policy = orjson.dumps({"partition": 0, "timeline": timeline.to_dict(),
                              "sla": {"match": {"channel": "line"}, "policy": None}})
    assert ConversationCodec().loads(no_policy) == StoredConversation(
        0, timeline, SlaRecord(match={"channel": "line"}))


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"partition": 1}', b"[1, 2]",
                                 orjson.dumps({"partition": 1, "timeline": {"grace_ms": 5}})])
def test_undecodable_conversation_is_dropped_with_an_error_log(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="msgkpi.worker.state"):
        assert ConversationCodec().loads(raw) is None
    assert "undecodable conversation record" in caplog.text


def test_window_records_round_trip_and_damage_is_dropped() -> None:
    codec = WindowRecordCodec()
    assert codec.loads(codec.dumps(PaneRecord())) == PaneRecord()
    assert codec.loads(codec.dumps(42)) == 42
    assert codec.loads(b'{"something": 1}') is None
