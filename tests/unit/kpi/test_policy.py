"""SLA policies and first-match selection."""

from __future__ import annotations

import pytest

from processor.kpi.calendar import CALENDAR_24_7, BusinessCalendar, WeeklyInterval
from processor.kpi.policy import PolicyMatch, PolicySet, SlaPolicy

OFFICE = BusinessCalendar(
    "Europe/Amsterdam", [WeeklyInterval(d, 8 * 3600, 18 * 3600) for d in range(5)], name="office"
)

VIP = SlaPolicy("vip", PolicyMatch.of("*", priority=["urgent", "vip"]), first_response_s=300)
WA_EMEA = SlaPolicy("wa-emea", PolicyMatch.of("whatsapp", team="emea"), "office",
                    first_response_s=900, next_reply_s=1800)
WA_ACCOUNT = SlaPolicy("wa-account", PolicyMatch.of("whatsapp", account_id="123"),
                       resolution_s=86400)
WA = SlaPolicy("wa", PolicyMatch.of("whatsapp"), first_response_s=1800, at_risk=0.5)
SOCIAL = SlaPolicy("social", PolicyMatch.of(["messenger", "instagram"]), resolution_s=7200)
POLICIES = PolicySet((VIP, WA_EMEA, WA_ACCOUNT, WA, SOCIAL), {"office": OFFICE})

MATCH_CASES = [
    # (id, channel, priority, team, account_id, expected policy name or None)
    ("wildcard channel with priority", "telegram", "urgent", None, None, "vip"),
    ("priority beats later team match", "whatsapp", "vip", "emea", None, "vip"),
    ("team match", "whatsapp", "normal", "emea", None, "wa-emea"),
    ("account match", "whatsapp", None, "apac", "123", "wa-account"),
    ("channel only", "whatsapp", None, None, "999", "wa"),
    ("named field needs a value", "whatsapp", None, None, None, "wa"),
    ("channel list", "instagram", None, None, None, "social"),
    ("no policy", "telegram", "normal", None, None, None),
    ("channel names are exact", "WhatsApp", None, None, None, None),
]


@pytest.mark.parametrize(("channel", "priority", "team", "account_id", "expected"),
                         [case[1:] for case in MATCH_CASES], ids=[c[0] for c in MATCH_CASES])
def test_first_match_wins(
    channel: str, priority: str | None, team: str | None, account_id: str | None,
    expected: str | None,
) -> None:
    found = POLICIES.match(channel, priority, team, account_id)
    assert (None if found is None else found.name) == expected


def test_targets_and_at_risk() -> None:
    assert WA_EMEA.target_s("first_response") == 900
    assert WA_EMEA.target_s("next_reply") == 1800
    assert WA_EMEA.target_s("resolution") is None
    assert WA_EMEA.at_risk_s("first_response") == pytest.approx(720)
    assert WA.at_risk_s("first_response") == 900
    assert WA.at_risk_s("resolution") is None
    assert VIP.at_risk == 0.8


def test_calendars() -> None:
    assert POLICIES.calendar_of(WA_EMEA) is OFFICE
    assert POLICIES.calendar_of(WA) is CALENDAR_24_7
    assert POLICIES.policy("social") is SOCIAL
    with pytest.raises(KeyError):
        POLICIES.policy("nope")


def test_targets_for_histogram_buckets() -> None:
    assert POLICIES.targets_s() == (300, 900, 1800, 7200, 86400)


def test_empty_set_matches_nothing() -> None:
    assert PolicySet().match("whatsapp") is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SlaPolicy("x", PolicyMatch.of("a"), first_response_s=60, at_risk=1.0),
         "at_risk"),
        (lambda: SlaPolicy("x", PolicyMatch.of("a"), first_response_s=60, at_risk=0), "at_risk"),
        (lambda: SlaPolicy("x", PolicyMatch.of("a")), "no target"),
        (lambda: SlaPolicy("x", PolicyMatch.of("a"), next_reply_s=0), "positive"),
        (lambda: SlaPolicy("", PolicyMatch.of("a"), next_reply_s=1), "name"),
        (lambda: PolicyMatch.of([]), "at least one"),
        (lambda: PolicySet((WA, WA)), "twice"),
        (lambda: PolicySet((WA_EMEA,)), "unknown calendar"),
    ],
)
def test_bad_arguments(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make()
