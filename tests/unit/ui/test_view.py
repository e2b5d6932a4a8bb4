"""The live page's view of msgkpi.kpi: newest snapshot wins, FRT chart, agents, derived KPIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from processor.ui.alerts import AlertBook, SlaEvent
from processor.ui.view import CHART_SPAN_MS, KpiBoard, channel_summary, page_json, window_ms

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "kpi-snapshot.v1.schema.json"
validate = fastjsonschema.compile(orjson.loads(SCHEMA.read_bytes()))
MIN = 60_000


def times(count: int, p50: float, p90: float) -> dict[str, Any]:
    return {"count": count, "sum": p50 * count, "avg": p50, "p50": p50, "p90": p90}


def snapshot(channel: str = "whatsapp", window: str = "5m", end: int = 60 * MIN,
             state: str = "open", watermark: int | None = None,
             frt: tuple[float, float] | None = (30.0, 90.0), **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": "msgkpi.kpi-snapshot.v1", "channel": channel, "window": window,
        "window_start": end - window_ms(window), "window_end": end, "state": state,
        "counts": {"messages.customer": 10, "messages.agent": 7, "messages.bot": 1,
                   "reply_rate.received": 10, "reply_rate.answered": 8,
                   "cycles.opened": 4, "cycles.resolved": 2,
                   "csat.responses": 4, "csat.satisfied": 3, "csat.score_sum_x100": 1700,
                   "nps.responses": 4, "nps.promoters": 2, "nps.detractors": 1,
                   "fcr.resolved": 2, "fcr.first_contact": 1},
        "times": {} if frt is None else {"first_response.agent": times(3, *frt)},
        "unique_customers": 5,
        "agents": {"ana": {"messages": 4, "replies": 3, "first_responses": 2,
                           "first_response_ms": 50_000, "resolutions": 1}},
        "sla": {"gold": {"first_response": {"measured": 4, "attained": 3}}},
        **extra,
    }
    if state == "open":
        body["watermark"] = end - 1000 if watermark is None else watermark
    validate(body)
    return body


@pytest.mark.parametrize(("name", "ms"), [("5m", 300_000), ("1h", 3_600_000), ("90s", 90_000),
                                          ("2d", 172_800_000)])
def test_window_ms(name: str, ms: int) -> None:
    assert window_ms(name) == ms


@pytest.mark.parametrize("name", ["", "5", "m", "0m", "5w", "-1h"])
def test_window_ms_rejects(name: str) -> None:
    with pytest.raises(ValueError):
        window_ms(name)


def test_summary_derives_ratios_and_keeps_counts() -> None:
    summary = channel_summary(snapshot())
    assert summary["first_response"] == {"count": 3, "avg": 30.0, "p50": 30.0, "p90": 90.0}
    assert summary["reply_rate"] == {"received": 10, "answered": 8, "ratio": 0.8}
    assert summary["messages"] == {"customer": 10, "agent": 7, "bot": 1}
    assert summary["csat"] == {"responses": 4, "average": 4.25, "satisfied_ratio": 0.75}
    assert summary["nps"] == {"responses": 4, "score": 25.0}
    assert summary["fcr"] == {"resolved": 2, "ratio": 0.5}
    assert summary["sla"] == {"gold": {"first_response": {"measured": 4, "attained": 3,
                                                          "ratio": 0.75}}}
    assert summary["agents"]["ana"]["first_response_avg_s"] == 25.0


def test_summary_of_an_empty_window_has_no_ratios() -> None:
    empty = {"schema": "msgkpi.kpi-snapshot.v1", "channel": "x", "window": "1h",
             "window_start": 0, "window_end": 3_600_000, "state": "closed", "counts": {},
             "times": {}}
    validate(empty)
    summary = channel_summary(empty)
    assert summary["first_response"] is None
    assert summary["reply_rate"]["ratio"] is None
    assert summary["csat"]["average"] is None and summary["nps"]["score"] is None
    assert summary["fcr"]["ratio"] is None and summary["agents"] == {}


def test_newest_snapshot_wins_in_any_order() -> None:
    old_closed = snapshot(end=55 * MIN, state="closed", frt=(10.0, 20.0))
    new_open_early = snapshot(end=60 * MIN, watermark=58 * MIN, frt=(11.0, 21.0))
    new_open_late = snapshot(end=60 * MIN, watermark=59 * MIN, frt=(12.0, 22.0))
    new_closed = snapshot(end=60 * MIN, state="closed", frt=(13.0, 23.0))
    for order in ([old_closed, new_open_early, new_open_late, new_closed],
                  [new_closed, new_open_late, old_closed, new_open_early]):
        board = KpiBoard(("5m",))
        for item in order:
            board.add(item)
        assert board.snapshot("whatsapp", "5m") == new_closed


def test_add_reports_whether_the_view_changed() -> None:
    board = KpiBoard(("5m", "1h"))
    first = snapshot()
    assert board.add(first)
    assert not board.add(first)  # the same record again (a rebuild, a duplicate)
    assert not board.add(snapshot(window="24h"))  # a window the board does not show
    assert board.snapshot("whatsapp", "24h") is None


def test_frt_chart_keeps_the_last_hour_of_the_smallest_window() -> None:
    board = KpiBoard(("1h", "5m"))
    assert board.windows == ("5m", "1h")
    for minute in range(0, 100, 5):
        board.add(snapshot(end=minute * MIN, state="closed", frt=(minute, 2.0 * minute)))
    board.add(snapshot(window="1h", end=95 * MIN, frt=(1.0, 1.0)))  # not charted
    chart = board.frt_chart("whatsapp")
    assert [p["window_end"] for p in chart] == [m * MIN for m in range(40, 100, 5)]
    assert chart[-1] == {"window_end": 95 * MIN, "p50": 95.0, "p90": 190.0}
    assert chart[-1]["window_end"] - chart[0]["window_end"] < CHART_SPAN_MS
    board.add(snapshot(end=100 * MIN, frt=None))  # an open window without FRT yet
    assert board.frt_chart("whatsapp")[-1] == {"window_end": 100 * MIN, "p50": None,
                                               "p90": None}


def test_agents_sum_over_channels_of_one_window() -> None:
    board = KpiBoard(("5m", "1h"))
    bob = {"messages": 9, "replies": 9, "first_responses": 0, "first_response_ms": 0,
           "resolutions": 4}
    board.add(snapshot("whatsapp", "1h"))
    board.add(snapshot("telegram", "1h", agents={
        "ana": {"messages": 1, "replies": 1, "first_responses": 2, "first_response_ms": 30_000,
                "resolutions": 0}, "bob": bob}))
    board.add(snapshot("telegram", "5m", agents={"zed": bob}))
    rows = board.agents("1h")
    assert [row["agent"] for row in rows] == ["bob", "ana"]
    assert rows[1] == {"agent": "ana", "messages": 5, "replies": 4, "first_responses": 4,
                       "first_response_ms": 80_000, "resolutions": 1,
                       "first_response_avg_s": 20.0}
    assert rows[0]["first_response_avg_s"] is None


def test_page_json_lists_active_alerts_with_time_left() -> None:
    board, book = KpiBoard(("5m",)), AlertBook()
    board.add(snapshot())
    base: dict[str, Any] = {"metric": "first_response", "policy": "gold", "cycle": 1,
            "period_ms": 0,
            "start_ms": 0, "detected_at_ms": 0, "channel": "whatsapp"}
    book.add_sla_event(SlaEvent(alert_id="a/r", kind="at_risk", due_ms=600_000,
                                at_ms=480_000, conversation_id="a", **base))
    book.add_sla_event(SlaEvent(alert_id="b/b", kind="breach", due_ms=600_000,
                                at_ms=600_001, conversation_id="b", **base))
    page = page_json(board, book, 500_000, ready=True,
                     link=lambda event: f"https://desk/{event.conversation_id}")
    assert page["ready"] and page["now_ms"] == 500_000
    assert list(page["channels"]) == ["whatsapp"]
    assert set(page["channels"]["whatsapp"]["windows"]) == {"5m"}
    assert [(a["conversation_id"], a["time_left_ms"], a["conversation_url"])
            for a in page["at_risk"]] == [("a", 100_000, "https://desk/a")]
    assert [(a["conversation_id"], a["time_left_ms"]) for a in page["breached"]] == [
        ("b", 100_000)]
    assert page["totals"] == {"at_risk": 1, "breached": 1}
    orjson.dumps(page)  # JSON-ready
