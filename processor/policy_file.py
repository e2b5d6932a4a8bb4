"""The policy file (`MSGKPI_CONFIG`, YAML): calendars and SLA policies, validated.

Every problem raises `ConfigError` whose key is the path to the offending entry, such as
`calendars.emea-support.hours.mon-fri[1]` or `policies[0].first_response`, and whose message says
what is wrong, so a bad file stops startup with a pointer to the line to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from string import Formatter
from typing import Any, Final, TypeVar

import yaml  # type: ignore[import-untyped, unused-ignore]

from processor.errors import ConfigError
from processor.kpi.calendar import CALENDAR_24_7, DAY_S, WEEKDAYS, BusinessCalendar, WeeklyInterval
from processor.kpi.policy import (
    BREACH_SEVERITIES,
    CONVERSATION_URL_FIELDS,
    DEFAULT_AT_RISK,
    BreachSeverity,
    PolicyMatch,
    PolicySet,
    SlaPolicy,
)

__all__ = [
    "load_policy_file",
    "parse_days",
    "parse_duration",
    "parse_interval",
    "parse_policy_document",
    "parse_policy_text",
    "parse_url_template",
]

_T = TypeVar("_T")

_TOP_KEYS: Final = ("calendars", "policies")
_CALENDAR_KEYS: Final = ("timezone", "hours", "holidays")
_POLICY_KEYS: Final = (
    "name", "match", "calendar", "first_response", "next_reply", "resolution", "at_risk",
    "breach_severity", "conversation_url",
)
_MATCH_KEYS: Final = ("channel", "priority", "team", "account_id")
_DURATION_UNITS: Final = {"d": DAY_S, "h": 3600, "m": 60, "s": 1}
_DURATION_RE: Final = re.compile(r"\s*(\d+)\s*([dhms])\s*")
_INTERVAL_RE: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MAX_HOLIDAY_RANGE_DAYS: Final = 366
_ALWAYS_OPEN: Final = "24/7"


def _key(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


# -- scalar parsers (ValueError; callers add the key) -------------------------------------------

def parse_duration(text: str) -> float:
    """Seconds in "15m", "24h", "1h30m", "90s", "2d" (units d, h, m, s, largest first)."""
    position, total, last_unit = 0, 0, None
    units = list(_DURATION_UNITS)
    for part in _DURATION_RE.finditer(text):
        if part.start() != position:
            break
        amount, unit = int(part.group(1)), part.group(2)
        if last_unit is not None and units.index(unit) <= units.index(last_unit):
            raise ValueError(f"{text!r}: units must go from largest to smallest, each once")
        total, position, last_unit = total + amount * _DURATION_UNITS[unit], part.end(), unit
    if last_unit is None or position != len(text):
        raise ValueError(f"{text!r} is not a duration such as 15m, 1h30m, 90s or 2d")
    if total <= 0:
        raise ValueError(f"{text!r}: a target must be longer than zero")
    return float(total)


def _clock_s(hour: str, minute: str, text: str, *, end: bool) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and (m != 0 or not end)):
        raise ValueError(f"{text!r}: {hour}:{minute} is not a time of day (00:00-23:59, "
                         "or 24:00 as an end)")
    return h * 3600 + m * 60


def parse_interval(text: str) -> tuple[int, int]:
    """"08:00-12:00" -> (28800, 43200); "22:00-02:00" runs overnight (end < start)."""
    found = _INTERVAL_RE.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not an interval such as \"08:00-17:30\"")
    start = _clock_s(found.group(1), found.group(2), text, end=False)
    end = _clock_s(found.group(3), found.group(4), text, end=True)
    if start == end or (start == 0 and end == 0):
        raise ValueError(f"{text!r} is empty; a whole day is \"00:00-24:00\"")
    return start, end


def _weekday(name: str, spec: str) -> int:
    try:
        return WEEKDAYS.index(name.strip().lower())
    except ValueError:
        raise ValueError(f"{spec!r}: {name.strip()!r} is not a day ({', '.join(WEEKDAYS)})"
                         ) from None


def parse_days(spec: str) -> tuple[int, ...]:
    """"mon-fri" -> (0..4), "sat" -> (5,), "fri-mon" wraps, "mon,wed" lists."""
    days: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        start = _weekday(first, spec)
        stop = _weekday(last, spec) if last else start
        days.extend((start + i) % 7 for i in range((stop - start) % 7 + 1))
    if len(set(days)) != len(days):
        raise ValueError(f"{spec!r} names a day twice")
    return tuple(days)


# -- structure ---------------------------------------------------------------------------------

def _mapping(value: object, path: str, allowed: tuple[str, ...] | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, got {_kind(value)}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(_key(path, str(name)), "keys must be text")
        if allowed is not None and name not in allowed:
            raise ConfigError(_key(path, name),
                              f"unknown key (expected one of: {', '.join(allowed)})")
    return value


def _text(value: object, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ConfigError(path, f"must be non-empty text, got {_kind(value)}")
    return str(value)


def _texts(value: object, path: str) -> list[str]:
    if isinstance(value, list):
        if not value:
            raise ConfigError(path, "must name at least one value")
        return [_text(item, _key(path, i)) for i, item in enumerate(value)]
    return [_text(value, path)]


def _parsed(parse: Callable[[str], _T], value: object, path: str) -> _T:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be text, got {_kind(value)} {value!r}")
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _date(value: object, path: str) -> date:
    if isinstance(value, datetime):
        raise ConfigError(path, f"must be a date (YYYY-MM-DD), not a date and time: {value}")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a date (YYYY-MM-DD), got {_kind(value)}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(path, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _holidays(value: object, path: str) -> list[date]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of dates or \"a..b\" ranges, got {_kind(value)}")
    days: list[date] = []
    for i, item in enumerate(value):
        item_path = _key(path, i)
        if isinstance(item, str) and ".." in item:
            first_text, _, last_text = item.partition("..")
            first, last = _date(first_text, item_path), _date(last_text, item_path)
            span = (last - first).days
            if not 0 <= span < _MAX_HOLIDAY_RANGE_DAYS:
                raise ConfigError(item_path, f"{item!r}: a range runs forward and spans at most "
                                             f"{_MAX_HOLIDAY_RANGE_DAYS} days")
            days.extend(first + timedelta(days=n) for n in range(span + 1))
        else:
            days.append(_date(item, item_path))
    return days


def _day_intervals(day_spec: str, value: object, path: str) -> list[WeeklyInterval]:
    days = _parsed(parse_days, day_spec, path)
    raw = [value] if isinstance(value, str) else value
    if raw is None or raw == ["closed"]:
        return []
    if not isinstance(raw, list):
        raise ConfigError(path, f"must be a list of intervals like \"08:00-12:00\", got "
                                f"{_kind(value)}")
    spans = [_parsed(parse_interval, item, _key(path, i)) for i, item in enumerate(raw)]
    return [WeeklyInterval(day, start, end) for day in days for start, end in spans]


def _hours(value: object, path: str) -> list[WeeklyInterval]:
    if value == _ALWAYS_OPEN:
        return [WeeklyInterval(day, 0, DAY_S) for day in range(7)]
    hours = _mapping(value, path, None)
    intervals: list[WeeklyInterval] = []
    named_by: dict[int, str] = {}
    for day_spec, day_value in hours.items():
        day_path = _key(path, day_spec)
        for day in _parsed(parse_days, day_spec, day_path):
            if day in named_by:
                raise ConfigError(day_path, f"{WEEKDAYS[day]} is already given by "
                                            f"{_key(path, named_by[day])}")
            named_by[day] = day_spec
        intervals.extend(_day_intervals(day_spec, day_value, day_path))
    if not intervals:
        raise ConfigError(path, "no open interval on any day")
    return intervals


def _calendar(name: str, value: object, path: str) -> BusinessCalendar:
    spec = _mapping(value, path, _CALENDAR_KEYS)
    for required in ("timezone", "hours"):
        if required not in spec:
            raise ConfigError(_key(path, required), "is required")
    timezone = _text(spec["timezone"], _key(path, "timezone"))
    intervals = _hours(spec["hours"], _key(path, "hours"))
    holidays = _holidays(spec.get("holidays", []), _key(path, "holidays"))
    try:
        return BusinessCalendar(timezone, intervals, holidays, name=name)
    except ValueError as exc:
        key = "timezone" if "time zone" in str(exc) else "hours"
        raise ConfigError(_key(path, key), str(exc)) from None


def _calendars(value: object) -> dict[str, BusinessCalendar]:
    if value is None:
        return {}
    spec = _mapping(value, "calendars", None)
    calendars: dict[str, BusinessCalendar] = {}
    for name, body in spec.items():
        if name == _ALWAYS_OPEN:
            raise ConfigError(_key("calendars", name), "\"24/7\" is built in; pick another name")
        calendars[name] = _calendar(name, body, _key("calendars", name))
    return calendars


def _match(value: object, path: str) -> PolicyMatch:
    spec = _mapping(value, path, _MATCH_KEYS)
    if "channel" not in spec:
        raise ConfigError(_key(path, "channel"), "is required (\"*\" matches every channel)")
    sets = {name: frozenset(_texts(spec[name], _key(path, name))) for name in spec}
    return PolicyMatch(channel=sets["channel"], priority=sets.get("priority"),
                       team=sets.get("team"), account_id=sets.get("account_id"))


def _at_risk(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number between 0 and 1, got {_kind(value)}")
    if not 0 < value < 1:
        raise ConfigError(path, f"must be between 0 and 1 (exclusive), got {value}")
    return float(value)


def _breach_severity(value: object, path: str) -> BreachSeverity:
    for severity in BREACH_SEVERITIES:
        if value == severity:
            return severity
    raise ConfigError(path, f"must be one of {', '.join(BREACH_SEVERITIES)}, got {value!r}")


def parse_url_template(text: str) -> str:
    """A conversation link template: placeholders in braces, each one of
    CONVERSATION_URL_FIELDS ("{account_id}"); "{{" and "}}" are literal braces."""
    try:
        parts = [(name, spec, conversion) for _, name, spec, conversion
                 in Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    for name, spec, conversion in parts:
        if name not in CONVERSATION_URL_FIELDS or spec or conversion:
            raise ValueError(f"{text!r}: placeholders are {{name}} with name one of "
                             f"{', '.join(CONVERSATION_URL_FIELDS)}")
    if not text.startswith(("https://", "http://")):
        raise ValueError(f"{text!r} is not an absolute http(s) URL")
    return text


def _target(spec: Mapping[str, Any], name: str, path: str) -> float | None:
    return None if spec.get(name) is None else _parsed(parse_duration, spec[name],
                                                        _key(path, name))


def _policy(value: object, path: str, calendars: Mapping[str, BusinessCalendar]) -> SlaPolicy:
    spec = _mapping(value, path, _POLICY_KEYS)
    for required in ("name", "match"):
        if required not in spec:
            raise ConfigError(_key(path, required), "is required")
    calendar = _text(spec.get("calendar", _ALWAYS_OPEN), _key(path, "calendar"))
    if calendar not in calendars:
        raise ConfigError(_key(path, "calendar"),
                          f"unknown calendar {calendar!r} (defined: {', '.join(calendars)})")
    targets = [_target(spec, name, path) for name in ("first_response", "next_reply",
                                                      "resolution")]
    if all(target is None for target in targets):
        raise ConfigError(path, "sets no target: give first_response, next_reply or resolution")
    return SlaPolicy(
        name=_text(spec["name"], _key(path, "name")),
        match=_match(spec["match"], _key(path, "match")),
        calendar=calendar,
        first_response_s=targets[0],
        next_reply_s=targets[1],
        resolution_s=targets[2],
        at_risk=_at_risk(spec.get("at_risk", DEFAULT_AT_RISK), _key(path, "at_risk")),
        breach_severity=_breach_severity(spec.get("breach_severity", "ticket"),
                                         _key(path, "breach_severity")),
        conversation_url=(None if spec.get("conversation_url") is None else _parsed(
            parse_url_template, spec["conversation_url"], _key(path, "conversation_url"))),
    )


def _policies(value: object, calendars: Mapping[str, BusinessCalendar]) -> list[SlaPolicy]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("policies", f"must be a list (first match wins), got {_kind(value)}")
    policies: list[SlaPolicy] = []
    first_use: dict[str, int] = {}
    for i, item in enumerate(value):
        policy = _policy(item, _key("policies", i), calendars)
        if policy.name in first_use:
            earlier = _key("policies", first_use[policy.name])
            raise ConfigError(_key(_key("policies", i), "name"),
                              f"{policy.name!r} is already used by {earlier}")
        first_use[policy.name] = i
        policies.append(policy)
    return policies


def parse_policy_document(data: object) -> PolicySet:
    """Validate an already-parsed document (None, an empty file, means no policies)."""
    if data is None:
        return PolicySet()
    spec = _mapping(data, "", _TOP_KEYS) if isinstance(data, Mapping) else None
    if spec is None:
        raise ConfigError("(top level)", f"must be a mapping with {' and '.join(_TOP_KEYS)}, "
                                         f"got {_kind(data)}")
    calendars = {CALENDAR_24_7.name: CALENDAR_24_7, **_calendars(spec.get("calendars"))}
    return PolicySet(tuple(_policies(spec.get("policies"), calendars)), calendars)


# -- YAML --------------------------------------------------------------------------------------

def _reject_duplicate_keys(node: Any, path: str) -> None:
    """PyYAML keeps the last of two equal keys silently; a policy file must not."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value)
            line = key_node.start_mark.line + 1
            if name in seen:
                raise ConfigError(_key(path, name), f"given twice (lines {seen[name]} and {line})")
            seen[name] = line
            _reject_duplicate_keys(value_node, _key(path, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, _key(path, i))


def parse_policy_text(text: str, source: str = "policy file") -> PolicySet:
    """Parse and validate YAML text; `source` names the file in YAML syntax errors."""
    try:
        _reject_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), "")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from None
    return parse_policy_document(data)


def load_policy_file(path: str | os.PathLike[str]) -> PolicySet:
    """Read and validate the policy file; ConfigError if unreadable or invalid."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("MSGKPI_CONFIG", f"cannot read {os.fspath(path)!r}: {exc}") from None
    return parse_policy_text(text, source=os.fspath(path))
