"""The policy file: the sample loads, and every kind of mistake names its key."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from processor.errors import ConfigError
from processor.kpi.calendar import CALENDAR_24_7
from processor.policy_file import (
    load_policy_file,
    parse_days,
    parse_duration,
    parse_interval,
    parse_policy_document,
    parse_policy_text,
)

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "msgkpi.yaml"

GOOD = """
calendars:
  emea:
    timezone: Europe/Amsterdam
    hours: {mon-fri: ["08:00-12:00", "13:00-18:00"], sat: ["10:00-14:00"], sun: ["22:00-02:00"]}
    holidays: ["2026-12-25", 2026-12-26, "2026-12-31..2027-01-01"]
policies:
  - name: wa
    match: {channel: whatsapp}
    calendar: emea
    first_response: 15m
    next_reply: 30m
    resolution: 24h
    at_risk: 0.8
"""


def test_sample_file_loads() -> None:
    policies = load_policy_file(SAMPLE)
    names = [policy.name for policy in policies.policies]
    assert "whatsapp-24-7" in names
    whatsapp = policies.match("whatsapp")
    assert whatsapp is not None
    assert whatsapp.calendar == "24/7"
    assert policies.calendar_of(whatsapp) is CALENDAR_24_7
    emea = policies.calendars["emea-support"]
    assert emea.timezone == "Europe/Amsterdam"
    assert date(2026, 12, 25) in emea.holidays
    assert any(interval.overnight for interval in emea.intervals)
    assert {"messenger", "telegram", "chatwoot"} <= {
        channel for policy in policies.policies for channel in policy.match.channel
    }


def test_good_document() -> None:
    policies = parse_policy_text(GOOD)
    (policy,) = policies.policies
    assert (policy.first_response_s, policy.next_reply_s, policy.resolution_s) == (
        900, 1800, 86400)
    calendar = policies.calendars["emea"]
    assert calendar.holidays == {date(2026, 12, 25), date(2026, 12, 26), date(2026, 12, 31),
                                 date(2027, 1, 1)}
    assert calendar.weekly_open_seconds == (5 * 9 + 4 + 4) * 3600


def test_empty_file_means_no_policies() -> None:
    assert parse_policy_text("").policies == ()
    assert parse_policy_document({"policies": []}).match("whatsapp") is None


def test_24_7_hours_and_defaults() -> None:
    policies = parse_policy_document({
        "calendars": {"always": {"timezone": "UTC", "hours": "24/7", "holidays": []}},
        "policies": [{"name": "p", "match": {"channel": "*", "account_id": 42},
                      "first_response": "1h30m"}],
    })
    assert policies.calendars["always"].is_24_7
    (policy,) = policies.policies
    assert policy.calendar == "24/7"
    assert policy.at_risk == 0.8
    assert policy.first_response_s == 5400
    assert policy.match.account_id == frozenset({"42"})


@pytest.mark.parametrize(("text", "seconds"), [
    ("15m", 900), ("30m", 1800), ("24h", 86400), ("1h30m", 5400), ("90s", 90), ("2d", 172800),
    ("1d 2h", 93600), ("1h0m30s", 3630),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15", "m", "15 minutes", "1.5h", "30m1h", "1h1h", "0m", "-5m",
                                  ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_intervals_and_days() -> None:
    assert parse_interval("08:00-12:30") == (28800, 45000)
    assert parse_interval("22:00-02:00") == (79200, 7200)
    assert parse_interval("00:00-24:00") == (0, 86400)
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("fri-mon") == (4, 5, 6, 0)
    assert parse_days("sun") == (6,)
    assert parse_days("mon,wed") == (0, 2)


def calendar_doc(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"timezone": "Europe/Amsterdam",
                               "hours": {"mon-fri": ["09:00-17:00"]}}
    body.update(overrides)
    return {"calendars": {"emea": body},
            "policies": [{"name": "p", "match": {"channel": "x"}, "calendar": "emea",
                          "first_response": "1h"}]}


POLICY: dict[str, object] = {"name": "p", "match": {"channel": "x"}, "first_response": "1h"}


def policy_doc(**overrides: object) -> dict[str, object]:
    return {"policies": [{**POLICY, **overrides}]}


ERROR_CASES = [
    # (id, document, key named, words in the message)
    ("unknown top-level key", {"policy": []}, "policy", "unknown key"),
    ("top level not a mapping", ["x"], "(top level)", "mapping"),
    ("unknown timezone", calendar_doc(timezone="Europe/Atlantis"), "calendars.emea.timezone",
     "unknown time zone"),
    ("missing timezone", {"calendars": {"emea": {"hours": "24/7"}}}, "calendars.emea.timezone",
     "required"),
    ("bad interval", calendar_doc(hours={"mon-fri": ["25:00-26:00"]}),
     "calendars.emea.hours.mon-fri[0]", "not a time of day"),
    ("interval not an interval", calendar_doc(hours={"mon": ["9-5"]}),
     "calendars.emea.hours.mon[0]", "not an interval"),
    ("empty interval", calendar_doc(hours={"mon": ["09:00-09:00"]}),
     "calendars.emea.hours.mon[0]", "empty"),
    ("bad day", calendar_doc(hours={"mon-fry": ["09:00-17:00"]}), "calendars.emea.hours.mon-fry",
     "not a day"),
    ("day given twice", calendar_doc(hours={"mon-fri": ["09:00-17:00"], "fri": ["18:00-19:00"]}),
     "calendars.emea.hours.fri", "already given"),
    ("no open hours", calendar_doc(hours={"mon": []}), "calendars.emea.hours", "no open"),
    ("bad holiday", calendar_doc(holidays=["2026-02-30"]), "calendars.emea.holidays[0]",
     "not a date"),
    ("backwards holiday range", calendar_doc(holidays=["2026-12-26..2026-12-24"]),
     "calendars.emea.holidays[0]", "runs forward"),
    ("unknown calendar key", calendar_doc(holiday=[]), "calendars.emea.holiday", "unknown key"),
    ("24/7 is reserved", {"calendars": {"24/7": {"timezone": "UTC", "hours": "24/7"}}},
     "calendars.24/7", "built in"),
    ("bad duration", policy_doc(first_response="15 minutes"), "policies[0].first_response",
     "not a duration"),
    ("duration without unit", policy_doc(next_reply=900), "policies[0].next_reply", "must be text"),
    ("unknown calendar", policy_doc(calendar="apac"), "policies[0].calendar", "unknown calendar"),
    ("at_risk too big", policy_doc(at_risk=1.2), "policies[0].at_risk", "between 0 and 1"),
    ("at_risk zero", policy_doc(at_risk=0), "policies[0].at_risk", "between 0 and 1"),
    ("at_risk not a number", policy_doc(at_risk="80%"), "policies[0].at_risk", "number"),
    ("unknown policy key", policy_doc(frist_response="1h"), "policies[0].frist_response",
     "unknown key"),
    ("unknown match key", policy_doc(match={"channel": "x", "tier": "gold"}),
     "policies[0].match.tier", "unknown key"),
    ("missing channel", policy_doc(match={"team": "a"}), "policies[0].match.channel", "required"),
    ("empty channel list", policy_doc(match={"channel": []}), "policies[0].match.channel",
     "at least one"),
    ("missing name", {"policies": [{"match": {"channel": "x"}, "first_response": "1h"}]},
     "policies[0].name", "required"),
    ("no target", {"policies": [{"name": "p", "match": {"channel": "x"}}]}, "policies[0]",
     "no target"),
    ("duplicate name", {"policies": [POLICY, POLICY]}, "policies[1].name",
     "already used by policies[0]"),
    ("policies not a list", {"policies": {"name": "p"}}, "policies", "must be a list"),
    ("bad breach severity", policy_doc(breach_severity="critical"),
     "policies[0].breach_severity", "one of page, ticket"),
    ("unknown url placeholder", policy_doc(conversation_url="https://h/{conv}"),
     "policies[0].conversation_url", "placeholders are"),
    ("url placeholder with a format", policy_doc(conversation_url="https://h/{channel!r}"),
     "policies[0].conversation_url", "placeholders are"),
    ("unbalanced url brace", policy_doc(conversation_url="https://h/{channel"),
     "policies[0].conversation_url", "https://h/{channel"),
    ("relative url", policy_doc(conversation_url="/app/{conversation_id}"),
     "policies[0].conversation_url", "absolute"),
]


@pytest.mark.parametrize(("document", "key", "words"), [case[1:] for case in ERROR_CASES],
                         ids=[case[0] for case in ERROR_CASES])
def test_errors_name_the_key(document: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy_document(document)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")


def test_duplicate_yaml_keys_are_rejected() -> None:
    text = textwrap.dedent("""
        policies:
          - name: p
            match: {channel: x}
            first_response: 1h
            first_response: 2h
    """)
    with pytest.raises(ConfigError) as caught:
        parse_policy_text(text)
    assert caught.value.key == "policies[0].first_response"
    assert "twice" in str(caught.value)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("policies: [\n")
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    assert caught.value.key == str(path)
    assert "not valid YAML" in str(caught.value)


def test_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy_file(tmp_path / "absent.yaml")
    assert caught.value.key == "MSGKPI_CONFIG"


def test_alert_settings_of_a_policy() -> None:
    template = "https://desk.example/app/accounts/{account_id}/conversations/{conversation_id}"
    policies = parse_policy_document(policy_doc(breach_severity="page",
                                                conversation_url=template))
    (policy,) = policies.policies
    assert policy.breach_severity == "page"
    assert policy.conversation_url == template
    (plain,) = parse_policy_document(policy_doc()).policies
    assert (plain.breach_severity, plain.conversation_url) == ("ticket", None)


def test_sample_file_pages_on_urgent_breaches_and_links_helpdesk_conversations() -> None:
    policies = load_policy_file(SAMPLE)
    vip = policies.match("chatwoot", priority="urgent")
    assert vip is not None and vip.breach_severity == "page"
    helpdesk = policies.match("chatwoot")
    assert helpdesk is not None and helpdesk.conversation_url is not None
    assert "{conversation_id}" in helpdesk.conversation_url
