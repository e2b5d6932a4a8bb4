"""SLA policies: which cycles a policy covers, its targets, and the calendar they count on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from processor.kpi.calendar import CALENDAR_24_7, BusinessCalendar

__all__ = [
    "ANY",
    "BREACH_SEVERITIES",
    "CONVERSATION_URL_FIELDS",
    "DEFAULT_AT_RISK",
    "SLA_METRICS",
    "BreachSeverity",
    "PolicyMatch",
    "PolicySet",
    "SlaMetric",
    "SlaPolicy",
]

SlaMetric = Literal["first_response", "next_reply", "resolution"]
SLA_METRICS: Final[tuple[SlaMetric, ...]] = get_args(SlaMetric)
DEFAULT_AT_RISK: Final = 0.8
BreachSeverity = Literal["page", "ticket"]
BREACH_SEVERITIES: Final[tuple[BreachSeverity, ...]] = get_args(BreachSeverity)
CONVERSATION_URL_FIELDS: Final = (
    "channel", "account_id", "conversation_id", "policy", "team", "priority",
)
"""Placeholders a policy's conversation_url template may use."""
ANY: Final = "*"
"""A channel value that matches every channel."""


def _accepts(allowed: frozenset[str] | None, value: str | None) -> bool:
    return allowed is None or (value is not None and value in allowed)


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """Which cycles a policy covers; each field is a set of accepted values, None = any."""

    channel: frozenset[str]
    """Channel names, or {"*"} for every channel."""
    priority: frozenset[str] | None = None
    team: frozenset[str] | None = None
    account_id: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("channel", "priority", "team", "account_id"):
            values = getattr(self, name)
            if values is not None and not values:
                raise ValueError(f"match.{name} must name at least one value")

    @classmethod
    def of(
        cls,
        channel: str | Iterable[str],
        priority: str | Iterable[str] | None = None,
        team: str | Iterable[str] | None = None,
        account_id: str | Iterable[str] | None = None,
    ) -> PolicyMatch:
        """Build from single values or collections of them."""
        return cls(_as_set(channel), _as_optional_set(priority), _as_optional_set(team),
                   _as_optional_set(account_id))

    def matches(
        self,
        channel: str,
        priority: str | None = None,
        team: str | None = None,
        account_id: str | None = None,
    ) -> bool:
        """A cycle matches when every given field accepts its value; a field the policy names
        does not match a cycle that lacks that value."""
        return (
            (ANY in self.channel or channel in self.channel)
            and _accepts(self.priority, priority)
            and _accepts(self.team, team)
            and _accepts(self.account_id, account_id)
        )


def _as_set(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset((value,)) if isinstance(value, str) else frozenset(value)


def _as_optional_set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else _as_set(value)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Targets for the cycles a policy covers, in business seconds of `calendar`."""

    name: str
    match: PolicyMatch
    calendar: str = CALENDAR_24_7.name
    """Name of the calendar in the PolicySet; "24/7" is always there."""
    first_response_s: float | None = None
    """Cycle start (or bot->human handoff) -> first agent reply; None = not measured."""
    next_reply_s: float | None = None
    """Oldest unanswered customer message -> agent reply."""
    resolution_s: float | None = None
    """Cycle start -> resolution."""
    at_risk: float = DEFAULT_AT_RISK
    """Share of a target elapsed at which the cycle is reported at risk, in (0, 1)."""
    breach_severity: BreachSeverity = "ticket"
    """Severity of the per-conversation breach alert (`msgkpi ui`): page or ticket."""
    conversation_url: str | None = None
    """Template of the link to a conversation in the helpdesk, with placeholders among
    CONVERSATION_URL_FIELDS, e.g. "https://chat.example.com/app/accounts/{account_id}/
    conversations/{conversation_id}"; None = alerts carry no link."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a policy needs a name")
        if self.breach_severity not in BREACH_SEVERITIES:
            raise ValueError(f"breach_severity must be one of {', '.join(BREACH_SEVERITIES)}")
        if not 0 < self.at_risk < 1:
            raise ValueError(f"at_risk must be between 0 and 1 (exclusive), got {self.at_risk}")
        targets = (self.first_response_s, self.next_reply_s, self.resolution_s)
        if all(target is None for target in targets):
            raise ValueError(f"policy {self.name!r} sets no target")
        if any(target is not None and target <= 0 for target in targets):
            raise ValueError(f"policy {self.name!r}: targets must be positive")

    def target_s(self, metric: SlaMetric) -> float | None:
        """The target for one metric in business seconds, or None when not measured."""
        if metric == "first_response":
            return self.first_response_s
        if metric == "next_reply":
            return self.next_reply_s
        return self.resolution_s

    def at_risk_s(self, metric: SlaMetric) -> float | None:
        """Business seconds after which the metric is at risk (at_risk x target)."""
        target = self.target_s(metric)
        return None if target is None else target * self.at_risk


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Policies in priority order (first match wins) and the calendars they count on."""

    policies: tuple[SlaPolicy, ...] = ()
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        calendars = {CALENDAR_24_7.name: CALENDAR_24_7, **self.calendars}
        object.__setattr__(self, "calendars", calendars)
        seen: set[str] = set()
        for policy in self.policies:
            if policy.name in seen:
                raise ValueError(f"policy name {policy.name!r} is used twice")
            seen.add(policy.name)
            if policy.calendar not in calendars:
                raise ValueError(f"policy {policy.name!r}: unknown calendar {policy.calendar!r}")

    def match(
        self,
        channel: str,
        priority: str | None = None,
        team: str | None = None,
        account_id: str | None = None,
    ) -> SlaPolicy | None:
        """The first policy whose match accepts the cycle, or None (no SLA applies)."""
        for policy in self.policies:
            if policy.match.matches(channel, priority, team, account_id):
                return policy
        return None

    def calendar_of(self, policy: SlaPolicy) -> BusinessCalendar:
        """The calendar a policy's targets count on."""
        return self.calendars[policy.calendar]

    def targets_s(self) -> tuple[float, ...]:
        """Every distinct target in the set, ascending: histogram bucket edges go on these."""
        return tuple(sorted({
            target for policy in self.policies for metric in SLA_METRICS
            if (target := policy.target_s(metric)) is not None
        }))

    def policy(self, name: str) -> SlaPolicy:
        """A policy by name; KeyError when there is none."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(name)
