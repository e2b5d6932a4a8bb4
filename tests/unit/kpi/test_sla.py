"""SLA deadlines, live at-risk/breach alerts (once each), attainment and the WhatsApp window."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.events import ConversationEvent
from processor.kpi.calendar import CALENDAR_24_7, BusinessCalendar, WeeklyInterval
from processor.kpi.conversation import CycleState
from processor.kpi.policy import PolicyMatch, SlaPolicy
from processor.kpi.sla import (
    LAST_CLOCK_START_MS,
    WHATSAPP_WINDOW_MS,
    Deadline,
    SlaAlert,
    SlaTracker,
    clock_supported,
    deadlines,
    due_alerts,
    measure,
    next_due_ms,
    next_reply_applies,
    whatsapp_window_closes_ms,
    window_closing_within,
)
from tests.unit.kpi.builders import agent, bot, customer, fold, handoff, ms, reopened, resolved

H = 3600
AMS = "Europe/Amsterdam"


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * H + int(minutes) * 60


def office(*holidays: date) -> BusinessCalendar:
    """Mon-Fri 08:00-12:00 and 13:00-18:00 in Amsterdam."""
    spans = [(hm("08:00"), hm("12:00")), (hm("13:00"), hm("18:00"))]
    return BusinessCalendar(AMS, [WeeklyInterval(d, s, e) for d in range(5) for s, e in spans],
                            holidays, name="office")


OFFICE = office()
OFFICE_HOLIDAY = office(date(2026, 6, 15))  # Monday 15 June 2026


def at(local: str) -> int:
    """Epoch ms of an Amsterdam wall-clock time, "2026-06-12T17:50" (a Friday)."""
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(AMS)).timestamp() * 1000)


def policy(first: float | None = 60, nxt: float | None = 300, res: float | None = 3600,
           at_risk: float = 0.8, name: str = "wa") -> SlaPolicy:
    return SlaPolicy(name, PolicyMatch.of("whatsapp"), first_response_s=first, next_reply_s=nxt,
                     resolution_s=res, at_risk=at_risk)


POLICY = policy()  # FRT 60 s (at risk 48 s), next reply 300 s (240 s), resolution 1 h (48 min)


def state_of(events: Iterable[ConversationEvent]) -> CycleState:
    state = CycleState()
    fold(events, state)
    return state


def waiting(start_ms: int) -> CycleState:
    """An open cycle that a customer message opened at start_ms, not answered yet."""
    return CycleState(cycles=1, open=True, cycle_start_ms=start_ms, human_clock_ms=start_ms,
                      waiting_since_ms=start_ms, last_customer_ms=start_ms)


def kinds(alerts: Iterable[SlaAlert]) -> list[tuple[str, str]]:
    return [(a.kind, a.metric) for a in alerts]


def alerts_at(state: CycleState, tracker: SlaTracker, t: float,
              pol: SlaPolicy = POLICY) -> list[tuple[str, str]]:
    return kinds(due_alerts(state, tracker, pol, CALENDAR_24_7, ms(t)))


# -- deadlines on the calendar --------------------------------------------------------------

DEADLINE_CASES = [
    # (id, calendar, start, target s, at-risk local, due local, breach local + ms)
    ("24/7", CALENDAR_24_7, "2026-06-12T17:50", 900, "2026-06-12T18:02", "2026-06-12T18:05",
     ("2026-06-12T18:05", 1)),
    ("friday 17:50, 15 m, due monday morning", OFFICE, "2026-06-12T17:50", 900,
     "2026-06-15T08:02", "2026-06-15T08:05", ("2026-06-15T08:05", 1)),
    ("monday holiday: due tuesday", OFFICE_HOLIDAY, "2026-06-12T17:50", 900, "2026-06-16T08:02",
     "2026-06-16T08:05", ("2026-06-16T08:05", 1)),
    ("message while closed: clock starts at opening", OFFICE, "2026-06-13T15:00", 900,
     "2026-06-15T08:12", "2026-06-15T08:15", ("2026-06-15T08:15", 1)),
    ("at risk across lunch", OFFICE, "2026-06-10T11:55", 900, "2026-06-10T13:07",
     "2026-06-10T13:10", ("2026-06-10T13:10", 1)),
    ("due at closing: breach only after reopening", OFFICE, "2026-06-10T11:45", 900,
     "2026-06-10T11:57", "2026-06-10T12:00", ("2026-06-10T13:00", 1)),
    ("due at friday closing: breach monday", OFFICE, "2026-06-12T17:45", 900,
     "2026-06-12T17:57", "2026-06-12T18:00", ("2026-06-15T08:00", 1)),
]


@pytest.mark.parametrize(("calendar", "start", "target", "risk", "due", "breach"),
                         [c[1:] for c in DEADLINE_CASES], ids=[c[0] for c in DEADLINE_CASES])
def test_deadlines_count_business_time(calendar: BusinessCalendar, start: str, target: int,
                                       risk: str, due: str, breach: tuple[str, int]) -> None:
    pol = policy(first=target, nxt=None, res=None)
    [deadline] = deadlines(waiting(at(start)), pol, calendar)
    assert deadline == Deadline("first_response", at(start), at(start), at(risk), at(due),
                                at(breach[0]) + breach[1])


def test_at_risk_share_is_of_business_time() -> None:
    # 10 min Friday before closing, 1 h target at 50%: 20 more minutes on Monday.
    pol = policy(first=H, nxt=None, res=None, at_risk=0.5)
    [deadline] = deadlines(waiting(at("2026-06-12T17:50")), pol, OFFICE)
    assert deadline.at_risk_ms == at("2026-06-15T08:20")
    assert OFFICE.business_seconds(deadline.start_ms, deadline.at_risk_ms) == 0.5 * H


# -- which clocks run -----------------------------------------------------------------------

CLOCK_CASES = [
    # (id, events, policy, expected [(metric, period s, start s)])
    ("first wait is FRT's when the policy has an FRT target", [customer(0)], POLICY,
     [("first_response", 0, 0), ("resolution", 0, 0)]),
    ("first wait is next reply's without an FRT target", [customer(0)], policy(first=None),
     [("next_reply", 0, 0), ("resolution", 0, 0)]),
    ("bot replies stop no clock", [customer(0), bot(5)], POLICY,
     [("first_response", 0, 0), ("resolution", 0, 0)]),
    ("handoff restarts the FRT clock", [customer(0), bot(5), handoff(30)], POLICY,
     [("first_response", 0, 30), ("resolution", 0, 0)]),
    ("handoff restarts the first wait", [customer(0), bot(5), handoff(30)], policy(first=None),
     [("next_reply", 30, 30), ("resolution", 0, 0)]),
    ("answered: only resolution", [customer(0), agent(20)], POLICY, [("resolution", 0, 0)]),
    ("customer writes again: next reply", [customer(0), agent(20), customer(40), customer(50)],
     POLICY, [("next_reply", 40, 40), ("resolution", 0, 0)]),
    ("reopened without a customer message: FRT from the reopen",
     [customer(0), resolved(10), reopened(100)], POLICY,
     [("first_response", 100, 100), ("resolution", 100, 100)]),
    ("resolved: nothing", [customer(0), resolved(10)], POLICY, []),
    ("no cycle: nothing", [agent(0)], POLICY, []),
    ("only the metrics the policy sets", [customer(0), agent(5), customer(9)],
     policy(first=60, nxt=None, res=None), []),
]


@pytest.mark.parametrize(("events", "pol", "expected"), [c[1:] for c in CLOCK_CASES],
                         ids=[c[0] for c in CLOCK_CASES])
def test_running_clocks(events: list[ConversationEvent], pol: SlaPolicy,
                        expected: list[tuple[str, float, float]]) -> None:
    found = deadlines(state_of(events), pol, CALENDAR_24_7)
    assert [(d.metric, d.period_ms, d.start_ms) for d in found] == [
        (metric, ms(period), ms(start)) for metric, period, start in expected
    ]


@pytest.mark.parametrize(("first_target", "first_reply", "expected"), [
    (60, True, False), (60, False, True), (None, True, True), (None, False, True),
])
def test_next_reply_applies(first_target: float | None, first_reply: bool,
                            expected: bool) -> None:
    assert next_reply_applies(policy(first=first_target), first_reply) is expected
    assert next_reply_applies(policy(first=first_target or 60, nxt=None), first_reply) is False


# -- when alerts fire -----------------------------------------------------------------------

FIRE_CASES = [
    # (id, now in s after the customer message, expected alerts) with FRT 60 s at 80%
    ("before at-risk", 47.999, []),
    ("at-risk exactly at 80%", 48, [("at_risk", "first_response")]),
    ("exactly at the deadline: a reply now still attains", 60, [("at_risk", "first_response")]),
    ("1 ms after the deadline: breach", 60.001,
     [("at_risk", "first_response"), ("breach", "first_response")]),
    ("resolution at-risk too", 48 * 60,
     [("at_risk", "first_response"), ("breach", "first_response"), ("at_risk", "resolution")]),
]


@pytest.mark.parametrize(("now", "expected"), [c[1:] for c in FIRE_CASES],
                         ids=[c[0] for c in FIRE_CASES])
def test_alerts_fire_at_their_time(now: float, expected: list[tuple[str, str]]) -> None:
    assert alerts_at(state_of([customer(0)]), SlaTracker(), now) == expected


def test_alerts_are_ordered_by_time_then_at_risk_first() -> None:
    pol = policy(first=60, nxt=None, res=120.002, at_risk=0.5)  # both due at 60.001 s
    assert alerts_at(state_of([customer(0)]), SlaTracker(), 61, pol) == [
        ("at_risk", "first_response"), ("at_risk", "resolution"), ("breach", "first_response")]


def test_business_hours_breach_waits_for_open_time() -> None:
    pol = policy(first=900, nxt=None, res=None)
    state = waiting(at("2026-06-12T17:50"))
    tracker = SlaTracker()
    assert due_alerts(state, tracker, pol, OFFICE, at("2026-06-14T23:59")) == []
    assert kinds(due_alerts(state, tracker, pol, OFFICE, at("2026-06-15T08:02"))) == [
        ("at_risk", "first_response")]
    assert due_alerts(state, tracker, pol, OFFICE, at("2026-06-15T08:05")) == []
    assert kinds(due_alerts(state, tracker, pol, OFFICE, at("2026-06-15T08:05") + 1)) == [
        ("breach", "first_response")]


def test_alert_fields() -> None:
    tracker = SlaTracker()
    [risk, breach] = due_alerts(state_of([customer(0)]), tracker, POLICY, CALENDAR_24_7, ms(70))
    assert risk == SlaAlert("at_risk", "first_response", "wa", 1, ms(0), ms(0), ms(60), ms(70),
                            ms(48))
    assert breach == SlaAlert("breach", "first_response", "wa", 1, ms(0), ms(0), ms(60), ms(70),
                              ms(60) + 1)
    assert json.loads(json.dumps(breach.to_dict()))["at_ms"] == ms(60) + 1


# -- once -----------------------------------------------------------------------------------


def test_emitted_once() -> None:
    state, tracker = state_of([customer(0)]), SlaTracker()
    assert alerts_at(state, tracker, 48) == [("at_risk", "first_response")]
    assert alerts_at(state, tracker, 48) == []
    assert alerts_at(state, tracker, 59) == []
    assert alerts_at(state, tracker, 61) == [("breach", "first_response")]
    assert alerts_at(state, tracker, 3600) == [("at_risk", "resolution")]
    assert alerts_at(state, tracker, 3600.001) == [("breach", "resolution")]
    assert alerts_at(state, tracker, 99_999) == []


def test_emitted_once_across_a_restart() -> None:
    state, tracker = state_of([customer(0)]), SlaTracker()
    assert alerts_at(state, tracker, 61) == [("at_risk", "first_response"),
                                             ("breach", "first_response")]
    restored = SlaTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert restored == tracker
    assert alerts_at(CycleState.from_dict(state.to_dict()), restored, 61) == []
    assert alerts_at(state, restored, 3000) == [("at_risk", "resolution")]


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown SLA alert key"):
        SlaTracker.from_dict({"cycle": 1, "emitted": [["late", "first_response", 0]]})


def test_next_reply_once_per_waiting_period() -> None:
    events = [customer(0), agent(10), customer(100)]
    state, tracker = state_of(events), SlaTracker()
    assert alerts_at(state, tracker, 401) == [("at_risk", "next_reply"), ("breach", "next_reply")]
    fold([customer(450)], state)  # the same wait: no new alerts
    assert alerts_at(state, tracker, 800) == []
    fold([agent(900), customer(1000)], state)  # a new wait
    assert alerts_at(state, tracker, 1000 + 240) == [("at_risk", "next_reply")]
    [breach] = due_alerts(state, tracker, POLICY, CALENDAR_24_7, ms(1301))
    assert (breach.kind, breach.period_ms, breach.due_ms) == ("breach", ms(1000), ms(1300))


def test_no_first_response_alerts_after_the_first_reply() -> None:
    state, tracker = state_of([customer(0)]), SlaTracker()
    assert alerts_at(state, tracker, 50) == [("at_risk", "first_response")]
    fold([agent(55)], state)
    assert alerts_at(state, tracker, 500) == []
    assert next_due_ms(state, tracker, POLICY, CALENDAR_24_7) == ms(48 * 60)


def test_handoff_does_not_repeat_alerts_of_the_same_wait() -> None:
    pol = policy(first=None, nxt=60, res=None)
    state, tracker = state_of([customer(0), bot(1)]), SlaTracker()
    assert alerts_at(state, tracker, 50, pol) == [("at_risk", "next_reply")]
    fold([handoff(55)], state)
    assert alerts_at(state, tracker, 100, pol) == []  # the new at-risk (55 + 48) was emitted
    assert alerts_at(state, tracker, 116, pol) == [("breach", "next_reply")]
    state2, tracker2 = state_of([customer(0), bot(1)]), SlaTracker()
    assert alerts_at(state2, tracker2, 50) == [("at_risk", "first_response")]
    fold([handoff(55)], state2)
    assert alerts_at(state2, tracker2, 116) == [("breach", "first_response")]


def test_no_alerts_for_closed_cycles() -> None:
    state, tracker = state_of([customer(0), resolved(30)]), SlaTracker()
    assert alerts_at(state, tracker, 99_999) == []
    assert next_due_ms(state, tracker, POLICY, CALENDAR_24_7) is None


def test_reopened_cycle_gets_its_own_alerts() -> None:
    state, tracker = state_of([customer(0)]), SlaTracker()
    assert alerts_at(state, tracker, 61) == [("at_risk", "first_response"),
                                             ("breach", "first_response")]
    fold([agent(70), resolved(80), reopened(100)], state)
    alerts = due_alerts(state, tracker, POLICY, CALENDAR_24_7, ms(161))
    assert [(a.kind, a.metric, a.cycle, a.period_ms) for a in alerts] == [
        ("at_risk", "first_response", 2, ms(100)), ("breach", "first_response", 2, ms(100))]
    fold([agent(170), resolved(180), customer(200)], state)  # cycle 3, opened by the customer
    assert [a.cycle for a in due_alerts(state, tracker, POLICY, CALENDAR_24_7, ms(261))] == [3, 3]


def test_tracker_stays_bounded() -> None:
    state, tracker = state_of([customer(0), agent(1)]), SlaTracker()
    for n in range(1, 50):
        fold([customer(1000 * n), agent(1000 * n + 500)], state)
        fold([customer(1000 * n + 600)], state)
        alerts_at(state, tracker, 1000 * n + 999)
    assert len(tracker.emitted) <= 6
    assert ("breach", "resolution", 0) in tracker.emitted
    fold([resolved(99_000), customer(100_000)], state)
    due_alerts(state, tracker, POLICY, CALENDAR_24_7, ms(100_000))
    assert tracker.emitted == set()
    assert tracker.cycle == 2


# -- scheduling -----------------------------------------------------------------------------


def test_next_due_ms_walks_the_alerts_in_order() -> None:
    pol = policy(first=60, nxt=None, res=100, at_risk=0.5)
    state, tracker = state_of([customer(0)]), SlaTracker()
    seen = []
    while (due := next_due_ms(state, tracker, pol, CALENDAR_24_7)) is not None:
        seen.append((due, kinds(due_alerts(state, tracker, pol, CALENDAR_24_7, due))))
    assert seen == [
        (ms(30), [("at_risk", "first_response")]),
        (ms(50), [("at_risk", "resolution")]),
        (ms(60) + 1, [("breach", "first_response")]),
        (ms(100) + 1, [("breach", "resolution")]),
    ]


def test_next_due_ms_is_pure_and_may_be_past() -> None:
    state, tracker = state_of([customer(0)]), SlaTracker()
    assert next_due_ms(state, tracker, POLICY, CALENDAR_24_7) == ms(48)
    assert next_due_ms(state, tracker, POLICY, CALENDAR_24_7) == ms(48)
    assert tracker == SlaTracker()


# -- attainment -----------------------------------------------------------------------------

MEASURE_CASES = [
    # (id, calendar, start, end, target s, business seconds, within)
    ("under target", CALENDAR_24_7, ms(0), ms(59), 60, 59, True),
    ("exactly on target", CALENDAR_24_7, ms(0), ms(60), 60, 60, True),
    ("1 ms over", CALENDAR_24_7, ms(0), ms(60) + 1, 60, 60.001, False),
    ("clock skew counts as 0", CALENDAR_24_7, ms(60), ms(0), 60, 0, True),
    ("weekend does not count", OFFICE, at("2026-06-12T17:50"), at("2026-06-15T08:05"), 900, 900,
     True),
    ("closed time after a closing deadline still attains", OFFICE, at("2026-06-10T11:45"),
     at("2026-06-10T12:30"), 900, 900, True),
    ("after reopening it does not", OFFICE, at("2026-06-10T11:45"), at("2026-06-10T13:01"), 900,
     960, False),
]


@pytest.mark.parametrize(("calendar", "start", "end", "target", "seconds", "within"),
                         [c[1:] for c in MEASURE_CASES], ids=[c[0] for c in MEASURE_CASES])
def test_measure(calendar: BusinessCalendar, start: int, end: int, target: int, seconds: float,
                 within: bool) -> None:
    result = measure("next_reply", start, end, policy(nxt=target), calendar)
    assert (result.metric, result.policy) == ("next_reply", "wa")
    assert result.business_seconds == pytest.approx(seconds)
    assert result.within_target is within


def test_measure_needs_a_target() -> None:
    with pytest.raises(ValueError, match="no resolution target"):
        measure("resolution", ms(0), ms(1), policy(res=None), CALENDAR_24_7)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 14 * 86_400_000), elapsed=st.integers(0, 7 * 86_400_000),
       target=st.integers(1, 36_000_000))
def test_breach_is_emitted_exactly_when_a_reply_would_miss(start: int, elapsed: int,
                                                           target: int) -> None:
    start_ms = at("2026-06-01T00:00") + start
    now = start_ms + elapsed
    pol = policy(first=target / 1000, nxt=None, res=None)
    fired = kinds(due_alerts(waiting(start_ms), SlaTracker(), pol, OFFICE, now))
    missed = not measure("first_response", start_ms, now, pol, OFFICE).within_target
    assert (("breach", "first_response") in fired) is missed
    at_risk = OFFICE.business_seconds(start_ms, now) >= round(target * 0.8) / 1000
    assert (("at_risk", "first_response") in fired) is at_risk


# -- WhatsApp customer-service window -------------------------------------------------------

WINDOW_CASES = [
    # (id, events, now s, closes at s or None, closing within the hour)
    ("waiting, 23 h in", [customer(0)], 23 * H, 24 * H, True),
    ("waiting, 22 h 59 in", [customer(0)], 23 * H - 1, 24 * H, False),
    ("last customer message counts", [customer(0), customer(5 * H)], 23 * H, 29 * H, False),
    ("closes exactly now: already closed", [customer(0)], 24 * H, 24 * H, False),
    ("bot reply: still waiting for a human", [customer(0), bot(10)], 23.5 * H, 24 * H, True),
    ("answered: not waiting", [customer(0), agent(10)], 23.5 * H, None, False),
    ("resolved", [customer(0), resolved(10)], 23.5 * H, None, False),
    ("reopened without a customer message", [customer(0), resolved(10), reopened(20)], 23.5 * H,
     None, False),
]


@pytest.mark.parametrize(("events", "now", "closes", "closing"), [c[1:] for c in WINDOW_CASES],
                         ids=[c[0] for c in WINDOW_CASES])
def test_whatsapp_window(events: list[ConversationEvent], now: float, closes: float | None,
                         closing: bool) -> None:
    state = state_of(events)
    assert whatsapp_window_closes_ms(state) == (None if closes is None else ms(closes))
    assert window_closing_within(state, ms(now)) is closing


def test_window_horizon() -> None:
    state = state_of([customer(0)])
    assert WHATSAPP_WINDOW_MS == 24 * H * 1000
    assert window_closing_within(state, ms(20 * H), horizon_ms=4 * H * 1000)
    assert not window_closing_within(state, ms(20 * H), horizon_ms=4 * H * 1000 - 1)


def test_clocks_outside_the_supported_span_are_not_measured() -> None:
    day = 86_400_000
    assert clock_supported(0, 400 * day)
    assert not clock_supported(0, 400 * day + 1)  # a bogus 1970 stamp answered today
    assert clock_supported(LAST_CLOCK_START_MS)
    assert not clock_supported(LAST_CLOCK_START_MS + 1)  # deadlines could pass the year 9998
    assert not clock_supported(-1)
    assert clock_supported(ms(100), ms(50))  # clock skew: measured as 0 s


def test_no_deadline_for_a_clock_the_calendar_cannot_hold() -> None:
    pol = policy(first=60)
    state = CycleState(cycles=1, open=True, cycle_start_ms=LAST_CLOCK_START_MS + 1,
                       human_clock_ms=LAST_CLOCK_START_MS + 1)
    assert deadlines(state, pol, OFFICE) == []
