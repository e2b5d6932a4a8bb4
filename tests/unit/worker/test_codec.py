"""Stored conversations round-trip through the changelog codec; damaged records are dropped
(logged), never raised, so Faust's table recovery cannot stall on them."""

from __future__ import annotations

import logging

import orjson
import pytest

from processor.events import event_from_dict
from processor.kpi.event_step import StoredConversation
from processor.kpi.pane_store import PaneRecord
from processor.kpi.timeline import Timeline
from processor.worker.codec import ConversationCodec
from processor.worker.window_stage import WindowRecordCodec


def test_conversation_round_trip() -> None:
    timeline = Timeline(grace_ms=600_000)
    timeline.ingest(event_from_dict({
        "event_id": "e1", "type": "message", "channel": "line", "conversation_id": "c",
        "occurred_at": 1_000, "author": "customer"}))
    stored = StoredConversation(4, timeline, {"policy": "p"})
    codec = ConversationCodec()
    again = codec.loads(codec.dumps(stored))
    assert again == stored


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
