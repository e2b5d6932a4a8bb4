"""The window stage on plain dicts: panes, dedupe by (source, offset, seq), watermark, closing
once, late facts, and snapshots valid against schemas/kpi-snapshot.v1.schema.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.kpi.event_step import FactDelta
from processor.kpi.facts import FCR_ONE_AGENT, FCR_OTHER, Fact, FactKind
from processor.kpi.pane_store import (
    SourceReport,
    WindowProcessor,
    decode_deltas,
    encode_deltas,
)
from processor.kpi.windows import (
    WindowSpec,
    closed_window_ends,
    panes_of_window,
    window_ends_with,
)

SCHEMA = orjson.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "kpi-snapshot.v1.schema.json").read_bytes()
)
validate = fastjsonschema.compile(SCHEMA)
FIVE = WindowSpec("5m", 300_000)  # panes of 25 s
GRACE = 60_000


def frt(at_s: float, seconds: float, channel: str = "whatsapp") -> Fact:
    return Fact(FactKind.FIRST_RESPONSE, channel, int(at_s * 1000), f"e{at_s}", "agent", "ana",
                seconds, 1)


def msg(at_s: float, author: str = "customer", channel: str = "whatsapp") -> Fact:
    sender = "ana" if author == "agent" else ""
    return Fact(FactKind.MESSAGE, channel, int(at_s * 1000), f"m{at_s}", author, sender, 1.0, 1)


def delta(offset: int, fact: Fact, weight: int = 1, source: int = 0, seq: int = 0) -> FactDelta:
    return FactDelta(source, offset, seq, weight, fact)


@pytest.fixture
def store() -> dict[str, Any]:
    return {}


def everything(_: str) -> bool:
    return True


def closed(snapshots: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {s["window_end"]: s for s in snapshots if s["state"] == "closed"}


def test_a_replayed_delta_is_applied_once(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    deltas = [delta(1, msg(10)), delta(2, msg(20))]
    windows.apply(deltas)
    windows.apply(deltas)  # the source partition reprocessed after a crash
    windows.report(0, 0, 400_000, caught_up=True)
    snapshots, _, _ = windows.tick(400_000, everything)
    assert closed(snapshots)[300_000]["counts"] == {"messages.customer": 2,
                                                    "reply_rate.received": 2}


def test_withdrawn_fact_leaves_the_window(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, frt(10, 30.0)), delta(2, frt(10, 30.0), weight=-1, seq=0),
                   delta(2, frt(10, 12.0), seq=1)])
    snapshots, _, _ = windows.tick(400_000, everything)
    times = closed(snapshots)[300_000]["times"]["first_response.agent"]
    assert (times["count"], times["sum"], times["avg"]) == (1, 12.0, 12.0)


def test_windows_close_once_after_grace(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10))])
    first, written, _ = windows.tick(300_000 + GRACE - 1, everything)
    assert 300_000 not in closed(first)
    second, written, _ = windows.tick(300_000 + GRACE, everything)
    assert 300_000 in closed(second) and written == {"closed|whatsapp|5m"}
    third, _, _ = windows.tick(300_000 + GRACE, everything)
    assert closed(third) == {}


def test_late_fact_does_not_change_a_closed_window(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10))])
    windows.tick(400_000, everything)  # closes windows ending up to 325 s
    windows.apply([delta(2, msg(12))])
    assert windows.late_deltas == 1
    later, _, _ = windows.tick(900_000, everything)
    # Windows that closed before the late fact stay as emitted; a later window that still holds
    # its pane counts it (pane [0, 25 s) is in windows ending up to 300 s only).
    assert all(s["counts"].get("messages.customer", 0) <= 1 for s in closed(later).values())


def test_watermark_waits_for_every_partition_and_for_those_behind() -> None:
    windows = WindowProcessor({}, (FIVE,), GRACE)
    windows.report(0, 0, 1_000, caught_up=True)
    assert windows.watermark(2, 0) is None
    windows.report(0, 1, 500, caught_up=False)
    assert windows.watermark(2, 0) == 500
    windows.report(0, 1, 800, caught_up=True)
    assert windows.watermark(2, 0) == 1_000
    windows.report(0, 2, None, caught_up=False)
    assert windows.watermark(3, 0) is None


def test_each_facts_partition_has_its_own_watermark() -> None:
    """A report is ordered after the deltas sent before it on its own facts partition only:
    after a restart another partition may still hold a backlog of older deltas."""
    windows = WindowProcessor({}, (FIVE,), GRACE)
    windows.report(0, 0, 900_000, caught_up=True)
    windows.report(0, 1, 900_000, caught_up=True)
    windows.report(1, 0, 300_000, caught_up=False)
    assert windows.watermark(2, 0) == 900_000
    assert windows.watermark(2, 1) is None  # source 1 not heard on partition 1 yet
    windows.report(1, 1, 900_000, caught_up=True)
    assert windows.watermark(2, 1) == 300_000
    assert windows.sources == {0: SourceReport(300_000, False), 1: SourceReport(900_000, True)}


def test_a_source_newest_time_survives_a_restart_through_the_store() -> None:
    store: dict[str, Any] = {}
    before = WindowProcessor(store, (FIVE,), GRACE)
    assert before.report(3, 0, 9_000, caught_up=False) == "source|3|0"
    assert before.report(3, 0, 8_000, caught_up=False) is None  # never goes back
    after = WindowProcessor(store, (FIVE,), GRACE)  # a new process, same recovered table
    after.report(3, 0, None, caught_up=True)  # nothing processed since the restart
    assert after.watermark(1, 3) == 9_000


def test_only_owned_channels_get_snapshots(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10, channel="line")), delta(2, msg(10, channel="x"))])
    snapshots, _, _ = windows.tick(400_000, lambda channel: channel == "line")
    assert {s["channel"] for s in snapshots} == {"line"}


def test_old_panes_are_dropped_once_no_open_window_needs_them(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10)), delta(2, msg(1_000))])
    _, _, deleted = windows.tick(2_000_000, everything)
    assert deleted == {"pane|whatsapp|5m|0", "pane|whatsapp|5m|1000000"}


def test_snapshots_validate_against_the_schema(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10)), delta(2, frt(20, 0.0)), delta(3, msg(30, "agent")),
                   delta(4, Fact(FactKind.CYCLE_RESOLVED, "whatsapp", 40_000, "r", "spam",
                                 "ana", 1.0, 1))])
    snapshots, _, _ = windows.tick(400_000, everything)
    assert snapshots
    for snapshot in snapshots:
        validate(snapshot)
    assert closed(snapshots)[50_000]["agents"] == {"ana": {
        "messages": 1, "replies": 0, "first_responses": 1, "first_response_ms": 0,
        "resolutions": 1}}


def test_deltas_round_trip_through_the_wire_format() -> None:
    deltas = [delta(7, frt(10, 3.5), seq=2, source=4), delta(8, msg(11), weight=-1, source=4)]
    message = orjson.loads(encode_deltas(4, deltas))
    assert decode_deltas(message["src"], message["deltas"]) == deltas


def test_snapshots_with_rates_tags_and_customers_validate(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    facts = [
        Fact(FactKind.MESSAGE, "whatsapp", 10_000, "m", "customer", "u1", 1.0, 1),
        Fact(FactKind.ANSWERED, "whatsapp", 10_000, "a", "agent", "", 5.0, 1),
        Fact(FactKind.EXCLUDED, "whatsapp", 10_000, "r", "answered", "", 9.0, 1),
        Fact(FactKind.MESSAGE, "whatsapp", 11_000, "m2", "customer", "u2", 1.0, 1),
        Fact(FactKind.CSAT, "whatsapp", 12_000, "c", "5", "", 4.0, 0),
        Fact(FactKind.CSAT, "whatsapp", 12_000, "n", "10", "", 9.0, 0),
        *(Fact(FactKind.TAG, "whatsapp", 13_000, "t", f"tag{n}", "", 1.0, 0) for n in range(12)),
    ]
    windows.apply([delta(n, f) for n, f in enumerate(facts)])
    snapshots, _, _ = windows.tick(400_000, everything)
    for snapshot in snapshots:
        validate(snapshot)
    first = closed(snapshots)[25_000]
    assert first["unique_customers"] == 2
    assert len(first["tags"]) == 10
    assert first["counts"]["reply_rate.received"] == 1
    assert "reply_rate.answered" not in first["counts"]


def test_answer_for_an_old_message_is_late_only_if_a_closed_window_needed_it(
        store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10))])
    windows.tick(400_000, everything)  # closes windows ending up to 325 s
    answered_late = Fact(FactKind.ANSWERED, "whatsapp", 10_000, "a", "agent", "", 390.0, 1)
    windows.apply([delta(2, answered_late)])  # reply at 400 s: no closed window counts it
    assert windows.late_deltas == 0
    answered_early = Fact(FactKind.ANSWERED, "whatsapp", 10_000, "b", "agent", "", 5.0, 1)
    windows.apply([delta(3, answered_early)])
    assert windows.late_deltas == 1


def fcr(decided_s: float, one_agent: bool = True, event_id: str = "r") -> Fact:
    role = FCR_ONE_AGENT if one_agent else FCR_OTHER
    return Fact(FactKind.FCR, "whatsapp", int(decided_s * 1000), event_id, role,
                "ana" if one_agent else "", 1.0, 1)


def reopened(decided_s: float, one_agent: bool = True) -> Fact:
    role = FCR_ONE_AGENT if one_agent else FCR_OTHER
    return Fact(FactKind.REOPENED, "whatsapp", int(decided_s * 1000), "c2", role, "", 1.0, 1)


def test_fcr_counts_only_once_its_decision_time_is_in_the_window(
        store: dict[str, Any]) -> None:
    """Decided at resolution + reopen window: the pane waits in the future until then."""
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10)), delta(2, fcr(1_000)), delta(3, fcr(1_100, False)),
                   delta(4, reopened(1_000))])
    early, _, deleted = windows.tick(400_000, everything)
    assert all("fcr.resolved" not in s["counts"] for s in early)
    assert deleted == {"pane|whatsapp|5m|0"}
    assert {"pane|whatsapp|5m|1000000", "pane|whatsapp|5m|1100000"} <= set(store)
    later, _, _ = windows.tick(1_400_000, everything)
    assert closed(later)[1_025_000]["counts"] == {"fcr.resolved": 1, "fcr.reopened": 1}
    both = closed(later)[1_125_000]
    assert both["counts"] == {"fcr.resolved": 2, "fcr.reopened": 1}
    validate(both)
    assert closed(later)[1_325_000]["counts"] == {"fcr.resolved": 1}


def test_pane_index_follows_a_store_changed_behind_its_back(store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(10, channel="line"))])
    assert windows.channels(everything) == {"line"}
    restored = dict(store)  # what a changelog recovery writes into the store directly
    store.clear()
    windows.reindex()
    assert windows.channels(everything) == set()
    store.update(restored)
    windows.reindex()
    assert windows.channels(everything) == {"line"}
    snapshots, _, _ = windows.tick(400_000, everything)
    assert closed(snapshots)[25_000]["counts"]["messages.customer"] == 1


def sla(at_s: float, metric: str, attained: bool, policy: str = "gold | 24/7") -> Fact:
    return Fact(FactKind.SLA, "whatsapp", int(at_s * 1000), f"s{at_s}", metric, policy,
                1.0 if attained else 0.0, 1)


def test_sla_attainment_per_policy_and_metric_in_snapshots(store: dict[str, Any]) -> None:
    """Policy names are free text (here with '|' and spaces); counts stay free of them."""
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, sla(10, "first_response", True)),
                   delta(2, sla(11, "first_response", False)),
                   delta(3, sla(12, "next_reply", True), seq=0),
                   delta(3, sla(12, "next_reply", True), weight=-1, seq=1),
                   delta(4, sla(13, "resolution", True, policy="other"))])
    snapshots, _, _ = windows.tick(400_000, everything)
    window = closed(snapshots)[25_000]
    validate(window)
    assert window["sla"] == {
        "gold | 24/7": {"first_response": {"measured": 2, "attained": 1}},
        "other": {"resolution": {"measured": 1, "attained": 1}},
    }
    assert not any(name.startswith("sla") for name in window["counts"])


@given(starts=st.sets(st.integers(0, 400).map(lambda n: n * FIVE.pane_ms), max_size=20),
       after=st.integers(-1, 300).map(lambda n: n * FIVE.pane_ms),
       watermark=st.integers(0, 500).map(lambda n: n * 7_000))
def test_window_ends_with_data_equal_a_walk_over_every_end(
        starts: set[int], after: int, watermark: int) -> None:
    ends = closed_window_ends(after, watermark, GRACE, FIVE)
    walked = [end for end in ends
              if any(start in starts for start in panes_of_window(end, FIVE))]
    assert window_ends_with(starts, ends, FIVE) == walked


def test_one_event_stamped_in_1970_does_not_walk_every_window_since(
        store: dict[str, Any]) -> None:
    windows = WindowProcessor(store, (FIVE,), GRACE)
    windows.apply([delta(1, msg(0)), delta(2, msg(1_764_000_000))])  # 1970 and 2025
    snapshots, _, _ = windows.tick(1_764_000_000_000, everything)
    assert sorted(closed(snapshots)) == [25_000 * k for k in range(1, 13)]


def test_after_a_crash_a_source_behind_does_not_lend_its_stored_time() -> None:
    """Reports go out before commits, so the stored newest time can be ahead of records the
    restarted source will process again: while it is behind, only its new reports count."""
    store: dict[str, Any] = {}
    before = WindowProcessor(store, (FIVE,), GRACE)
    before.report(0, 0, 9_000_000, caught_up=False)
    after = WindowProcessor(store, (FIVE,), GRACE)
    after.report(0, 0, None, caught_up=False)  # restarted, reprocessing from the commit
    assert after.watermark(1, 0) is None
    after.report(0, 0, 2_000_000, caught_up=False)
    assert after.watermark(1, 0) == 2_000_000
    after.report(0, 0, 2_500_000, caught_up=True)
    assert after.watermark(1, 0) == 9_000_000  # caught up: every record seen again
