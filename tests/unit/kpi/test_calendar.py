"""Business calendars: table-driven edge cases plus a property test against minute stepping."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from processor.kpi.calendar import CALENDAR_24_7, DAY_S, BusinessCalendar, WeeklyInterval

H = 3600
MIN_MS = 60_000
AMS = "Europe/Amsterdam"
NY = "America/New_York"


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * H + int(minutes) * 60


def weekly(days: range | tuple[int, ...], *spans: str) -> list[WeeklyInterval]:
    out = []
    for day in days:
        for span in spans:
            start, end = span.split("-")
            out.append(WeeklyInterval(day, hm(start), hm(end)))
    return out


MON_FRI = range(5)
OFFICE = BusinessCalendar(
    AMS,
    weekly(MON_FRI, "08:00-12:00", "13:00-18:00") + weekly((5,), "10:00-14:00")
    + weekly((6,), "22:00-02:00"),
    holidays=[date(2026, 12, 25), date(2026, 12, 26)],
    name="office",
)
OFFICE_NO_HOLIDAYS = BusinessCalendar(AMS, OFFICE.intervals, name="office-plain")
NIGHT_AMS = BusinessCalendar(AMS, weekly((6,), "01:00-03:00"), name="night-ams")
NIGHT_NY = BusinessCalendar(NY, weekly((6,), "01:00-03:00"), name="night-ny")
OPEN_AMS = BusinessCalendar.always_open(AMS)
OVERNIGHT_HOLIDAY = BusinessCalendar(
    AMS, weekly((6,), "22:00-02:00"), holidays=[date(2026, 6, 15)], name="overnight-holiday"
)  # 2026-06-15 is a Monday: the part of the Sunday shift after midnight is closed
CHRISTMAS_RANGE = BusinessCalendar(
    NY, weekly(range(7), "00:00-24:00"),
    holidays=[date(2026, 12, 24) + timedelta(days=n) for n in range(3)], name="xmas",
)


def at(local: str, tz: str = AMS, fold: int = 0) -> int:
    """Epoch ms of a local wall-clock time ("2026-03-29T01:00")."""
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz), fold=fold)
    return int(moment.timestamp() * 1000)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


BUSINESS_CASES = [
    # (id, calendar, start, end, expected hours); times local to the calendar's zone
    ("within one interval", OFFICE, "2026-06-10T09:00", "2026-06-10T11:30", 2.5),
    ("across the lunch break", OFFICE, "2026-06-10T11:00", "2026-06-10T14:00", 2),
    ("closed evening", OFFICE, "2026-06-10T18:00", "2026-06-11T08:00", 0),
    ("friday to monday", OFFICE, "2026-06-12T17:00", "2026-06-15T09:00", 1 + 4 + 4 + 1),
    ("overnight shift whole", OFFICE, "2026-06-14T20:00", "2026-06-15T03:00", 4),
    ("overnight shift across midnight", OFFICE, "2026-06-14T23:00", "2026-06-15T01:00", 2),
    ("one week", OFFICE, "2026-06-08T00:00", "2026-06-15T00:00", 53),
    ("holidays friday and saturday", OFFICE, "2026-12-24T00:00", "2026-12-28T00:00", 9 + 2),
    ("start inside a holiday", OFFICE, "2026-12-25T10:00", "2026-12-28T09:00", 2 + 2 + 1),
    ("holiday closes the spilled part", OVERNIGHT_HOLIDAY, "2026-06-14T00:00",
     "2026-06-16T00:00", 2),
    ("holiday range", CHRISTMAS_RANGE, "2026-12-23T12:00", "2026-12-28T12:00", 12 + 36),
    ("ams spring forward 01-03 is 1h", NIGHT_AMS, "2026-03-29T00:00", "2026-03-30T00:00", 1),
    ("ams fall back 01-03 is 3h", NIGHT_AMS, "2026-10-25T00:00", "2026-10-26T00:00", 3),
    ("ams ordinary sunday 01-03 is 2h", NIGHT_AMS, "2026-10-18T00:00", "2026-10-19T00:00", 2),
    ("ny spring forward 01-03 is 1h", NIGHT_NY, "2026-03-08T00:00", "2026-03-09T00:00", 1),
    ("ny fall back 01-03 is 3h", NIGHT_NY, "2026-11-01T00:00", "2026-11-02T00:00", 3),
    ("24/7 in ams on spring day is 23h", OPEN_AMS, "2026-03-29T00:00", "2026-03-30T00:00", 23),
    ("24/7 in ams on fall-back day is 25h", OPEN_AMS, "2026-10-25T00:00", "2026-10-26T00:00",
     25),
    ("52 weeks across both dst changes", OFFICE_NO_HOLIDAYS, "2026-01-05T00:00",
     "2027-01-04T00:00", 52 * 53),
    ("empty span", OFFICE, "2026-06-10T09:00", "2026-06-10T09:00", 0),
    ("end before start", OFFICE, "2026-06-10T10:00", "2026-06-10T09:00", 0),
]


@pytest.mark.parametrize(("calendar", "start", "end", "hours"),
                         [case[1:] for case in BUSINESS_CASES],
                         ids=[case[0] for case in BUSINESS_CASES])
def test_business_seconds(calendar: BusinessCalendar, start: str, end: str, hours: float) -> None:
    tz = calendar.timezone
    assert calendar.business_seconds(at(start, tz), at(end, tz)) == hours * H


def test_ams_fall_back_repeated_hour_counts_twice_on_the_real_clock() -> None:
    # 02:00-03:00 local happens twice on 2026-10-25; both passes are open.
    first_pass = (utc("2026-10-25T00:00"), utc("2026-10-25T01:00"))
    second_pass = (utc("2026-10-25T01:00"), utc("2026-10-25T02:00"))
    assert NIGHT_AMS.business_seconds(*first_pass) == H
    assert NIGHT_AMS.business_seconds(*second_pass) == H
    assert NIGHT_AMS.business_seconds(utc("2026-10-25T02:00"), utc("2026-10-25T03:00")) == 0


def test_24_7_is_elapsed_time() -> None:
    start = utc("2026-03-29T00:00")
    assert CALENDAR_24_7.is_24_7
    assert CALENDAR_24_7.name == "24/7"
    assert CALENDAR_24_7.business_seconds(start, start + 90_061_001) == 90_061.001
    assert CALENDAR_24_7.add_business_seconds(start, 1.5) == start + 1500
    assert OPEN_AMS.is_24_7
    assert not OFFICE.is_24_7


DEADLINE_CASES = [
    # (id, calendar, start, seconds, expected deadline as epoch ms)
    ("inside one interval", OFFICE, at("2026-06-10T09:00"), 15 * 60, at("2026-06-10T09:15")),
    ("lands exactly on the end of an interval", OFFICE, at("2026-06-08T08:00"), 4 * H,
     at("2026-06-08T12:00")),
    ("skips the lunch break", OFFICE, at("2026-06-10T11:30"), H, at("2026-06-10T13:30")),
    ("starts while closed", OFFICE, at("2026-06-13T15:00"), 15 * 60, at("2026-06-14T22:15")),
    ("friday evening to saturday", OFFICE, at("2026-06-12T17:30"), H, at("2026-06-13T10:30")),
    ("into the overnight shift", OFFICE, at("2026-06-14T23:30"), H, at("2026-06-15T00:30")),
    ("over holidays, ends at midnight", OFFICE, at("2026-12-24T17:00"), 3 * H,
     at("2026-12-28T00:00")),
    ("ny spring forward skips the lost hour", NIGHT_NY, at("2026-03-08T00:00", NY), 90 * 60,
     at("2026-03-15T01:30", NY)),
    ("ams fall back counts the repeated hour", NIGHT_AMS, at("2026-10-25T00:00"), 150 * 60,
     utc("2026-10-25T01:30")),
    ("zero seconds is the start, even when closed", OFFICE, at("2026-06-13T20:00"), 0,
     at("2026-06-13T20:00")),
    ("one year of open time", OFFICE_NO_HOLIDAYS, at("2026-01-05T00:00"), 52 * 53 * H,
     at("2027-01-04T00:00")),
]


@pytest.mark.parametrize(("calendar", "start_ms", "seconds", "expected_ms"),
                         [case[1:] for case in DEADLINE_CASES],
                         ids=[case[0] for case in DEADLINE_CASES])
def test_add_business_seconds(
    calendar: BusinessCalendar, start_ms: int, seconds: float, expected_ms: int
) -> None:
    assert calendar.add_business_seconds(start_ms, seconds) == expected_ms


def test_is_open() -> None:
    assert OFFICE.is_open(at("2026-06-10T08:00"))
    assert not OFFICE.is_open(at("2026-06-10T12:00"))
    assert OFFICE.is_open(at("2026-06-15T01:59"))
    assert not OFFICE.is_open(at("2026-12-25T09:00"))
    assert not NIGHT_AMS.is_open(utc("2026-10-25T02:00"))
    assert NIGHT_AMS.is_open(utc("2026-10-25T01:59"))


def test_long_spans_are_fast() -> None:
    start, end = at("2026-01-01T00:00"), at("2046-01-01T00:00")
    began = time.perf_counter()
    seconds = OFFICE.business_seconds(start, end)
    deadline = OFFICE.add_business_seconds(start, seconds)
    assert time.perf_counter() - began < 1.0
    assert OFFICE.business_seconds(start, deadline) == seconds
    assert seconds > 19 * 52 * 53 * H


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BusinessCalendar("Mars/Olympus", weekly(MON_FRI, "08:00-12:00")), "time zone"),
        (lambda: BusinessCalendar(AMS, []), "open interval"),
        (lambda: WeeklyInterval(7, 0, H), "weekday"),
        (lambda: WeeklyInterval(0, DAY_S, H), "start_s"),
        (lambda: WeeklyInterval(0, 0, DAY_S + 1), "end_s"),
        (lambda: WeeklyInterval(0, H, H), "same time"),
        (lambda: OFFICE.add_business_seconds(0, -1), "seconds"),
    ],
)
def test_bad_arguments(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make()


# -- property test against a deliberately simple reference --------------------------------------

def reference_business_seconds(
    tz: str, raw: list[tuple[int, int, int]], holidays: set[date], start_ms: int, end_ms: int
) -> float:
    """Step minute by minute; a minute is open when its local wall-clock time is open."""
    spans: dict[int, list[tuple[int, int]]] = {day: [] for day in range(7)}
    for day, start_min, end_min in raw:
        if end_min > start_min:
            spans[day].append((start_min, end_min))
        else:
            spans[day].append((start_min, 1440))
            spans[(day + 1) % 7].append((0, end_min))
    zone = ZoneInfo(tz)
    total = 0
    for minute_ms in range(start_ms, end_ms, MIN_MS):
        local = datetime.fromtimestamp(minute_ms / 1000, zone)
        if local.date() in holidays:
            continue
        of_day = local.hour * 60 + local.minute
        if any(a <= of_day < b for a, b in spans[local.weekday()]):
            total += 60
    return float(total)


ZONES = [AMS, NY, "UTC", "Australia/Lord_Howe", "Asia/Kolkata", "America/St_Johns"]
ANCHORS = [date(2026, 3, 8), date(2026, 3, 29), date(2026, 4, 5), date(2026, 7, 1),
           date(2026, 10, 4), date(2026, 10, 25), date(2026, 11, 1)]


@st.composite
def raw_interval(draw: st.DrawFn) -> tuple[int, int, int]:
    day = draw(st.integers(0, 6))
    start = draw(st.integers(0, 1439))
    length = draw(st.integers(1, 1440))
    end = start + length if start + length <= 1440 else start + length - 1440
    assume(end != start)
    return day, start, end


@st.composite
def scenario(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, int]], set[date], int, int]:
    tz = draw(st.sampled_from(ZONES))
    raw = draw(st.lists(raw_interval(), min_size=1, max_size=8))
    anchor = draw(st.sampled_from(ANCHORS))
    base = utc(anchor.isoformat() + "T00:00")
    start = base + draw(st.integers(-8 * 1440, 8 * 1440)) * MIN_MS
    end = start + draw(st.integers(0, 14 * 1440)) * MIN_MS
    holidays = set(draw(st.lists(
        st.integers(-8, 22).map(lambda n: anchor + timedelta(days=n)), max_size=4)))
    return tz, raw, holidays, start, end


def build(tz: str, raw: list[tuple[int, int, int]], holidays: set[date]) -> BusinessCalendar:
    return BusinessCalendar(
        tz, [WeeklyInterval(d, s * 60, e * 60) for d, s, e in raw], holidays
    )


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_business_seconds_matches_minute_stepping(
    case: tuple[str, list[tuple[int, int, int]], set[date], int, int],
) -> None:
    tz, raw, holidays, start, end = case
    calendar = build(tz, raw, holidays)
    assert calendar.business_seconds(start, end) == reference_business_seconds(
        tz, raw, holidays, start, end)


@settings(max_examples=200, deadline=None)
@given(scenario(), st.integers(0, 10 * DAY_S * 1000))
def test_add_business_seconds_inverts_business_seconds(
    case: tuple[str, list[tuple[int, int, int]], set[date], int, int], extra_ms: int,
) -> None:
    tz, raw, holidays, start, end = case
    calendar = build(tz, raw, holidays)
    open_s = calendar.business_seconds(start, end)
    deadline = calendar.add_business_seconds(start, open_s)
    assert start <= deadline <= end
    assert calendar.business_seconds(start, deadline) == open_s
    if open_s > 0:  # the earliest such instant: open time ran right up to it
        assert calendar.business_seconds(deadline - MIN_MS, deadline) > 0
    any_amount = extra_ms / 1000
    assert calendar.business_seconds(
        start, calendar.add_business_seconds(start, any_amount)) == any_amount


@settings(max_examples=200, deadline=None)
@given(scenario(), st.integers(0, 14 * 1440))
def test_business_seconds_is_additive(
    case: tuple[str, list[tuple[int, int, int]], set[date], int, int], split_min: int,
) -> None:
    tz, raw, holidays, start, end = case
    calendar = build(tz, raw, holidays)
    middle = min(end, start + split_min * MIN_MS)
    assert calendar.business_seconds(start, end) == (
        calendar.business_seconds(start, middle) + calendar.business_seconds(middle, end))
