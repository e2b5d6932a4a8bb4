"""`msgkpi replay`: line validation, counts, stop vs skip, pacing and the write loop, all
without Kafka (a fake producer stands in for aiokafka's)."""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from processor.cli import _build_parser
from processor.config import Settings
from processor.errors import InvalidEvent
from processor.traffic import replay as replay_module
from processor.traffic.replay import (
    Pacer,
    ReplayFailed,
    ReplayStats,
    parse_line,
    run_replay,
    scan,
    summary,
    valid_events,
    write_events,
)

T0 = 1_767_225_600_000


def event(n: int, conversation: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"event_id": f"e{n}", "type": "message", "channel": "whatsapp",
            "conversation_id": conversation, "occurred_at": T0 + n * 1000,
            "author": "customer", **extra}


def line(data: Any) -> bytes:
    return orjson.dumps(data) + b"\n"


# --- parsing and validation ------------------------------------------------------------------

def test_a_valid_line_gives_the_event_and_a_blank_line_nothing() -> None:
    parsed = parse_line(line(event(1)))
    assert parsed is not None and parsed.event_id == "e1" and parsed.occurred_at_ms == T0 + 1000
    assert parse_line(b"\n") is None
    assert parse_line(b"   \t\r\n") is None


def test_a_line_that_is_not_json_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_line(b'{"event_id": "e1",\n')
    assert caught.value.field == "json" and "not valid JSON" in caught.value.message


def test_a_schema_invalid_line_names_the_field() -> None:
    missing = event(1)
    del missing["conversation_id"]
    with pytest.raises(InvalidEvent) as caught:
        parse_line(line(missing))
    assert caught.value.field == "conversation_id"
    with pytest.raises(InvalidEvent) as caught:
        parse_line(line(event(1, type="teleported")))
    assert caught.value.field == "type"
    with pytest.raises(InvalidEvent) as caught:
        parse_line(line([event(1)]))  # an array is not a log line
    assert caught.value.field == "event"


def test_an_event_larger_than_kafka_takes_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="limit"):
        parse_line(line(event(1, note="x" * 1_100_000)))


def test_scan_counts_lines_blanks_invalid_and_duplicates() -> None:
    lines = [line(event(1)), b"\n", b"{oops\n", line(event(2)), line(event(1)),
             line(event(3, type="nope")), b"", line(event(2)), line(event(4))]
    seen: list[str] = []
    stats = scan(lines, stop_on_error=False, on_invalid=lambda e: seen.append(str(e)))
    assert (stats.lines, stats.blank, stats.invalid, stats.valid, stats.duplicates) == (
        9, 2, 2, 5, 2)
    assert stats.stopped_at is None
    assert [e.line for e in stats.errors] == [3, 6]
    assert stats.errors[0].field == "json" and stats.errors[1].field == "type"
    assert seen[0].startswith("line 3: json:") and seen[1].startswith("line 6: type:")
    assert [e.event_id for e in valid_events(lines)] == ["e1", "e2", "e1", "e2", "e4"]


def test_scan_stops_at_the_first_invalid_line_with_stop() -> None:
    lines = [line(event(1)), line(event(2)), b"not json\n", line(event(3)), b"{\n"]
    stats = scan(lines, stop_on_error=True)
    assert stats.stopped_at is not None and stats.stopped_at.line == 3
    assert (stats.lines, stats.valid, stats.invalid) == (3, 2, 1)


# --- pacing ----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_zero_never_waits() -> None:
    pacer = Pacer(0, clock=FakeClock())
    assert [pacer.delay() for _ in range(5)] == [0.0] * 5


def test_the_pacer_spaces_events_on_an_absolute_schedule() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock)
    assert [round(pacer.delay(), 9) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]
    sent_at = []
    clock.now = 200.0
    pacer = Pacer(4, clock=clock)
    for _ in range(9):
        wait = pacer.delay()
        clock.now += wait + 0.01  # every sleep overshoots a little: the schedule absorbs it
        sent_at.append(clock.now)
    assert sent_at[-1] - sent_at[0] == pytest.approx(2.0, abs=0.011)  # 8 gaps at 4 ev/s


def test_after_a_stall_the_pacer_catches_up_at_most_max_lag() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, max_lag_s=1.0)
    pacer.delay()
    clock.now += 30.0  # e.g. the input or Kafka stalled for 30 s
    burst = 0
    while pacer.delay() == 0.0:
        burst += 1
    assert burst == 11  # one second's worth (10) plus the one due now, not 300


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        Pacer(-1)


# --- the write loop --------------------------------------------------------------------------

class FakeProducer:
    """Acknowledges (or fails, or never answers) each send on the next loop turn."""

    def __init__(self, mode: str = "ack", fail_after: int | None = None) -> None:
        self.mode = mode
        self.fail_after = fail_after
        self.records: list[tuple[str, bytes, bytes]] = []
        self.started = self.stopped = False
        self.max_unacked = 0
        self._unacked = 0

    async def start(self) -> None:
        if self.mode == "down":
            raise KafkaConnectionError("Unable to bootstrap")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.records.append((topic, key, value))
        self._unacked += 1
        self.max_unacked = max(self.max_unacked, self._unacked)
        hang = self.mode == "hang" or (
            self.fail_after is not None and len(self.records) > self.fail_after)
        if self.mode == "refuse":
            loop.call_soon(future.set_exception, KafkaConnectionError("broker gone"))
        elif not hang:
            loop.call_soon(self._ack, future)
        return future

    def _ack(self, future: asyncio.Future[Any]) -> None:
        self._unacked -= 1
        future.set_result(None)


def events(count: int) -> list[Any]:
    return [e for e in valid_events(line(event(n, conversation=f"c{n % 3}"))
                                    for n in range(count))]


async def test_every_event_is_written_keyed_by_conversation_and_acknowledged() -> None:
    producer, stats = FakeProducer(), ReplayStats()
    evs = events(50)
    await write_events(producer, "t.events", evs, stats, timeout_s=5, max_in_flight=7)
    assert stats.sent == stats.written == 50
    assert producer.max_unacked <= 7
    assert [(k, orjson.loads(v)["event_id"]) for _, k, v in producer.records] == [
        (e.conversation_id.encode(), e.event_id) for e in evs]
    assert {t for t, _, _ in producer.records} == {"t.events"}
    assert producer.records[0][2] == evs[0].to_json()


async def test_no_acknowledgement_within_the_timeout_fails_clearly() -> None:
    producer, stats = FakeProducer(fail_after=10), ReplayStats()
    began = time.monotonic()
    with pytest.raises(ReplayFailed, match=r"did not acknowledge event 'e10' within 0\.2 s"):
        await write_events(producer, "t", events(30), stats, timeout_s=0.2)
    assert time.monotonic() - began < 2
    assert stats.written == 10 and stats.unacknowledged == stats.sent - 10 > 0


async def test_a_slow_rate_still_notices_a_dead_broker() -> None:
    producer, stats = FakeProducer("hang"), ReplayStats()
    with pytest.raises(ReplayFailed, match="did not acknowledge"):
        await write_events(producer, "t", events(100), stats, timeout_s=0.2,
                           pacer=Pacer(50))
    assert stats.sent < 30  # failed after ~0.2 s, not after sending all 100 at 50/s


async def test_a_refused_event_fails_the_replay() -> None:
    with pytest.raises(ReplayFailed, match="refused event 'e0'"):
        await write_events(FakeProducer("refuse"), "t", events(3), ReplayStats(), timeout_s=1)


# --- the command line ------------------------------------------------------------------------

def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        content: bytes, *options: str, producer: FakeProducer | None = None,
        ) -> tuple[int, str, FakeProducer]:
    producer = producer or FakeProducer()
    monkeypatch.setattr(replay_module, "_aiokafka_producer", lambda *_: producer)
    log = tmp_path / "log.jsonl"
    log.write_bytes(content)
    args = _build_parser().parse_args(["replay", str(log), "--topic", "t.events", *options])
    code = run_replay(Settings(), args)
    return code, capsys.readouterr().err, producer


def test_the_parser_has_the_documented_defaults() -> None:
    args = _build_parser().parse_args(["replay", "-"])
    assert (args.file, args.on_error, args.rate, args.topic, args.progress, args.timeout) == (
        "-", "stop", 0.0, None, True, None)
    args = _build_parser().parse_args(["replay", "x", "--on-error", "skip", "--rate", "25",
                                       "--no-progress", "--timeout", "3"])
    assert (args.on_error, args.rate, args.progress, args.timeout) == ("skip", 25.0, False, 3.0)
    with pytest.raises(SystemExit):
        _build_parser().parse_args(["replay", "x", "--rate", "-1"])


MIXED = (line(event(1)) + b"\n" + line(event(2)) + line({**event(9), "event_id": 5})
         + line(event(1)) + line(event(3)))


def test_stop_writes_nothing_and_exits_2_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, producer = run(tmp_path, monkeypatch, capsys, MIXED)
    assert code == 2
    assert producer.records == [] and not producer.started
    assert "log.jsonl:4: invalid event: event_id:" in err
    assert "stopped at invalid line 4, nothing written" in err
    assert "--on-error skip" in err


def test_skip_writes_the_valid_lines_and_counts_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, producer = run(tmp_path, monkeypatch, capsys, MIXED, "--on-error", "skip",
                              "--no-progress")
    assert code == 0
    assert [orjson.loads(v)["event_id"] for _, _, v in producer.records] == [
        "e1", "e2", "e1", "e3"]
    assert producer.stopped
    assert "log.jsonl:4: invalid event: event_id:" in err
    done = [x for x in err.splitlines() if x.startswith("msgkpi replay: done:")]
    assert len(done) == 1, err
    assert ("6 lines read, 4 of 4 events written to t.events, 1 invalid lines skipped, "
            "1 duplicate event ids (written; the worker drops them), 1 blank lines") in done[0]
    assert done[0].endswith("ev/s")


def test_kafka_down_exits_1_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = run(tmp_path, monkeypatch, capsys, line(event(1)),
                       producer=FakeProducer("down"))
    assert code == 1
    assert "error: Kafka at 127.0.0.1:9092 is not reachable" in err
    assert "FAILED: 1 lines read, 0 of 1 events written" in err


def test_kafka_stalling_mid_replay_reports_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    content = b"".join(line(event(n)) for n in range(20))
    code, err, _ = run(tmp_path, monkeypatch, capsys, content, "--timeout", "0.3",
                       producer=FakeProducer(fail_after=12))
    assert code == 1
    assert "did not acknowledge event 'e12' within 0.3 s" in err
    assert "12 of 20 events written" in err
    assert "sent but not acknowledged (outcome unknown" in err


def test_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _build_parser().parse_args(["replay", str(tmp_path / "nope.jsonl")])
    assert run_replay(Settings(), args) == 1
    assert "cannot read" in capsys.readouterr().err


def test_stdin_is_read_with_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = FakeProducer()
    monkeypatch.setattr(replay_module, "_aiokafka_producer", lambda *_: producer)
    stdin = argparse.Namespace(buffer=io.BytesIO(line(event(1)) + line(event(2))))
    monkeypatch.setattr("sys.stdin", stdin)
    args = _build_parser().parse_args(["replay", "-", "--topic", "t", "--no-progress"])
    assert run_replay(Settings(), args) == 0
    assert len(producer.records) == 2
    assert "2 of 2 events written to t" in capsys.readouterr().err


def test_the_line_progress_reports_written_of_total() -> None:
    err = io.StringIO()
    stats = ReplayStats(valid=10, written=4)
    stats.write_started = time.monotonic() - 2
    replay_module._LineProgress(10, err)(stats)
    assert err.getvalue().startswith("msgkpi replay: 4/10 events written (40%), 2 ev/s")


def test_the_summary_of_an_interrupted_replay_says_so() -> None:
    stats = ReplayStats(lines=3, valid=3, sent=3, written=1, interrupted=True)
    stats.finished = stats.started + 1
    text = summary(stats, "t")
    assert text.startswith("msgkpi replay: interrupted: 3 lines read, 1 of 3 events written")
    assert "2 sent but not acknowledged" in text
