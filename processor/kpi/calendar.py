"""Business calendars: how much *open* time lies between two instants, and when a target is due.

Semantics ("clock on the wall"): an instant is open when the local wall-clock time at that
instant, on its local date, falls inside one of that weekday's open intervals and the local date
is not a holiday. So on a spring-forward day the skipped wall-clock hour is never open, and on a
fall-back day a repeated open hour counts twice: an interval "01:00-03:00" lasts as long as it
really does on the clock that day (1 h, 2 h or 3 h in Europe/Amsterdam).

An overnight interval such as Sunday "22:00-02:00" is Sunday 22:00-24:00 plus Monday 00:00-02:00;
a holiday closes every open minute whose local date is the holiday, including the part of an
overnight shift that spills onto it.

How it is computed, without stepping through time: between two UTC-offset changes the wall clock
is the instant plus a constant offset, so open time in a stretch of instants is open time in a
stretch of naive local time, which `_Schedule.open_until` gives in O(log holidays) by skipping
whole weeks. Offset changes are found per year (once, then cached) by sampling daily offsets.

All instants are epoch milliseconds; results are exact to the millisecond.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CALENDAR_24_7",
    "DAY_S",
    "WEEKDAYS",
    "BusinessCalendar",
    "WeeklyInterval",
]

DAY_S: Final = 86_400
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names by index, 0 = Monday (as `date.weekday()`)."""

_DAY_MS: Final = DAY_S * 1000
_WEEK_DAYS: Final = 7
_EPOCH_WEEKDAY: Final = 3
"""1970-01-01 was a Thursday."""
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MIN_YEAR: Final = 1900
_MAX_YEAR: Final = 9998


@dataclass(frozen=True, slots=True)
class WeeklyInterval:
    """One open interval of the weekly schedule, in local wall-clock time."""

    weekday: int
    """0 = Monday .. 6 = Sunday: the day the interval starts on."""
    start_s: int
    """Seconds after local midnight, 0 <= start_s < 86400."""
    end_s: int
    """Seconds after local midnight, 0 < end_s <= 86400. `end_s <= start_s` means the interval
    runs past midnight and ends at `end_s` on the next day (an overnight shift)."""

    def __post_init__(self) -> None:
        if not 0 <= self.weekday < _WEEK_DAYS:
            raise ValueError(f"weekday must be 0..6, got {self.weekday}")
        if not 0 <= self.start_s < DAY_S:
            raise ValueError(f"start_s must be in [0, 86400), got {self.start_s}")
        if not 0 < self.end_s <= DAY_S:
            raise ValueError(f"end_s must be in (0, 86400], got {self.end_s}")
        if self.end_s == self.start_s:
            raise ValueError("an interval cannot start and end at the same time")

    @property
    def overnight(self) -> bool:
        return self.end_s < self.start_s

    def day_parts(self) -> Iterator[tuple[int, int, int]]:
        """(weekday, start_s, end_s) pieces that each stay within one local date."""
        if not self.overnight:
            yield self.weekday, self.start_s, self.end_s
            return
        yield self.weekday, self.start_s, DAY_S
        yield (self.weekday + 1) % _WEEK_DAYS, 0, self.end_s


def _merge(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _open_before(spans: Sequence[tuple[int, int]], offset_ms: int) -> int:
    """Open milliseconds of one day's spans (ms after midnight) before `offset_ms`."""
    total = 0
    for start, end in spans:
        if offset_ms <= start:
            break
        total += min(end, offset_ms) - start
    return total


class _Schedule:
    """Open time on the naive local time axis (ms since 1970-01-01 00:00 local, no DST)."""

    __slots__ = ("_day_prefix_ms", "_days", "_holiday_days", "_holiday_prefix_ms", "week_open_ms")

    def __init__(self, intervals: Iterable[WeeklyInterval], holidays: Iterable[date]) -> None:
        by_day: list[list[tuple[int, int]]] = [[] for _ in range(_WEEK_DAYS)]
        for interval in intervals:
            for weekday, start_s, end_s in interval.day_parts():
                by_day[weekday].append((start_s * 1000, end_s * 1000))
        self._days = tuple(_merge(spans) for spans in by_day)
        day_open = [sum(end - start for start, end in spans) for spans in self._days]
        self._day_prefix_ms = tuple(sum(day_open[:i]) for i in range(_WEEK_DAYS + 1))
        self.week_open_ms = self._day_prefix_ms[-1]
        self._holiday_days = tuple(sorted({h.toordinal() - _EPOCH_ORDINAL for h in holidays}))
        prefix = [0]
        for day in self._holiday_days:
            prefix.append(prefix[-1] + day_open[self.weekday(day)])
        self._holiday_prefix_ms = tuple(prefix)

    @staticmethod
    def weekday(day: int) -> int:
        return (day + _EPOCH_WEEKDAY) % _WEEK_DAYS

    def spans(self, day: int) -> tuple[tuple[int, int], ...]:
        """Open spans (ms after midnight) of a local date given as days since 1970-01-01."""
        i = bisect.bisect_left(self._holiday_days, day)
        if i < len(self._holiday_days) and self._holiday_days[i] == day:
            return ()
        return self._days[self.weekday(day)]

    def open_until(self, local_ms: int) -> int:
        """Open ms from a fixed origin up to `local_ms`: monotone, slope 0 or 1."""
        day, into_day = divmod(local_ms, _DAY_MS)
        weeks, weekday = divmod(day + _EPOCH_WEEKDAY, _WEEK_DAYS)
        total = weeks * self.week_open_ms + self._day_prefix_ms[weekday]
        total += _open_before(self._days[weekday], into_day)
        i = bisect.bisect_left(self._holiday_days, day)
        total -= self._holiday_prefix_ms[i]
        if i < len(self._holiday_days) and self._holiday_days[i] == day:
            total -= _open_before(self._days[weekday], into_day)
        return total

    def reach(self, from_ms: int, to_ms: int, target: int) -> int:
        """Smallest local ms in (from_ms, to_ms] where `open_until` reaches `target`.

        The caller guarantees open_until(from_ms) < target <= open_until(to_ms).
        """
        lo, hi = from_ms // _DAY_MS, to_ms // _DAY_MS
        while lo < hi:  # first day whose end reaches the target
            mid = (lo + hi) // 2
            if self.open_until((mid + 1) * _DAY_MS) >= target:
                hi = mid
            else:
                lo = mid + 1
        left = target - self.open_until(lo * _DAY_MS)
        for start, end in self.spans(lo):
            if left <= end - start:
                return lo * _DAY_MS + start + left
            left -= end - start
        raise AssertionError("open time not found in the day that reaches it")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Piece:
    """Instants [start_ms, end_ms) on which the zone's UTC offset is constant."""

    start_ms: int
    end_ms: int
    offset_ms: int


class BusinessCalendar:
    """A time zone, a weekly schedule of open intervals, and holidays; immutable."""

    __slots__ = ("_always_open", "_schedule", "_zone", "holidays", "intervals", "name",
                 "timezone")

    def __init__(
        self,
        timezone: str,
        intervals: Iterable[WeeklyInterval],
        holidays: Iterable[date] = (),
        name: str = "",
    ) -> None:
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        self.timezone = timezone
        self.name = name
        self.intervals = tuple(intervals)
        self.holidays = frozenset(holidays)
        self._schedule = _Schedule(self.intervals, self.holidays)
        if self._schedule.week_open_ms == 0:
            raise ValueError("a calendar needs at least one open interval")
        self._always_open = (
            self._schedule.week_open_ms == _WEEK_DAYS * _DAY_MS and not self.holidays
        )

    @classmethod
    def always_open(cls, timezone: str = "UTC", name: str = "24/7") -> BusinessCalendar:
        return cls(timezone, (WeeklyInterval(d, 0, DAY_S) for d in range(_WEEK_DAYS)), (), name)

    def __repr__(self) -> str:
        return (f"BusinessCalendar(name={self.name!r}, timezone={self.timezone!r}, "
                f"intervals={len(self.intervals)}, holidays={len(self.holidays)})")

    @property
    def is_24_7(self) -> bool:
        """Open at every instant: business time equals elapsed time."""
        return self._always_open

    @property
    def weekly_open_seconds(self) -> float:
        """Open seconds in a week without holidays or DST changes."""
        return self._schedule.week_open_ms / 1000

    def is_open(self, instant_ms: int) -> bool:
        """Whether the calendar is open at this instant."""
        offset = self._offset_ms(instant_ms)
        day, into_day = divmod(instant_ms + offset, _DAY_MS)
        return any(start <= into_day < end for start, end in self._schedule.spans(day))

    def business_seconds(self, start_ms: int, end_ms: int) -> float:
        """Open seconds in [start_ms, end_ms); 0.0 when end_ms <= start_ms (never negative)."""
        if end_ms <= start_ms:
            return 0.0
        if self._always_open:
            return (end_ms - start_ms) / 1000
        total = 0
        for piece in self._pieces(start_ms):
            hi = min(end_ms, piece.end_ms)
            total += (self._schedule.open_until(hi + piece.offset_ms)
                      - self._schedule.open_until(piece.start_ms + piece.offset_ms))
            if hi == end_ms:
                return total / 1000
        raise ValueError(f"end_ms lies beyond the year {_MAX_YEAR}")

    def add_business_seconds(self, start_ms: int, seconds: float) -> int:
        """The first instant at which `seconds` of open time have elapsed since `start_ms`.

        This is an SLA deadline: with `seconds` > 0 the result lies inside or at the end of an open
        interval, never in closed time. `seconds` is rounded to whole milliseconds; 0 gives
        `start_ms`. Inverse of `business_seconds`: business_seconds(s, add(s, x)) == x.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        need = round(seconds * 1000)
        if need == 0:
            return start_ms
        if self._always_open:
            return start_ms + need
        for piece in self._pieces(start_ms):
            lo, hi = piece.start_ms + piece.offset_ms, piece.end_ms + piece.offset_ms
            base = self._schedule.open_until(lo)
            available = self._schedule.open_until(hi) - base
            if available >= need:
                return self._schedule.reach(lo, hi, base + need) - piece.offset_ms
            need -= available
        raise ValueError(f"deadline lies beyond the year {_MAX_YEAR}")

    # -- UTC offsets -------------------------------------------------------------------------

    def _offset_ms(self, instant_ms: int) -> int:
        return _utc_offset_s(self._zone, instant_ms // 1000) * 1000

    def _pieces(self, start_ms: int) -> Iterator[_Piece]:
        """Constant-offset stretches of instants from `start_ms` on, split at each new UTC year
        so that a zone without changes still yields finite pieces; ends after _MAX_YEAR."""
        year = _utc_year(start_ms)
        current_start, offset = start_ms, self._offset_ms(start_ms)
        while year <= _MAX_YEAR:
            for at_ms, new_offset in _transitions(self.timezone, year):
                if at_ms > current_start:
                    yield _Piece(current_start, at_ms, offset)
                    current_start, offset = at_ms, new_offset
            year_end_ms = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()) * 1000
            if year_end_ms > current_start:
                yield _Piece(current_start, year_end_ms, offset)
                current_start = year_end_ms
            year += 1


def _utc_year(instant_ms: int) -> int:
    try:
        year = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=instant_ms)).year
    except OverflowError:
        year = 0
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise ValueError(f"instant {instant_ms} ms is outside years {_MIN_YEAR}..{_MAX_YEAR}")
    return year


def _utc_offset_s(zone: ZoneInfo, epoch_s: int) -> int:
    offset = datetime.fromtimestamp(epoch_s, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


@functools.lru_cache(maxsize=1024)
def _transitions(timezone: str, year: int) -> tuple[tuple[int, int], ...]:
    """(instant ms, offset ms from then on) of the zone's offset changes in (Jan 1 year, Jan 1
    year+1] UTC: offsets sampled daily, each change pinned to the second by bisection. (Two
    changes within one day that cancel out are not seen; no real zone has them.)"""
    zone = ZoneInfo(timezone)
    first = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    last = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[tuple[int, int]] = []
    since, current = first, _utc_offset_s(zone, first)
    for at in range(first + DAY_S, last + 1, DAY_S):
        sampled = _utc_offset_s(zone, at)
        while sampled != current:
            lo, hi = since, at  # offset(lo) == current, offset(hi) != current
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _utc_offset_s(zone, mid) == current:
                    lo = mid
                else:
                    hi = mid
            since, current = hi, _utc_offset_s(zone, hi)
            found.append((hi * 1000, current * 1000))
        since = at
    return tuple(found)


CALENDAR_24_7: Final = BusinessCalendar.always_open()
"""Always open: business seconds are elapsed seconds. Policies without a calendar use it."""
