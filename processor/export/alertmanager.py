"""Per-conversation SLA alerts to Alertmanager's API (`POST /api/v2/alerts`).

`to_alertmanager` is pure: one `ConversationAlert` -> one Alertmanager alert. Labels name the
conversation and route it (alertname, channel, policy, metric, team, priority,
conversation_id, severity); annotations say what to do (summary, time left or overdue, the
conversation's link from the policy's `conversation_url` template, the runbook and the
dashboard). An active alert is sent with `endsAt` a few resend intervals ahead, as Prometheus
does: re-sent while active, it stays firing; if the sender dies, Alertmanager resolves it by
itself. An ended alert is sent with `endsAt` at the reply or resolution that ended it.

`AlertmanagerClient` is the HTTP side (aiohttp), `start()`/`stop()` or `async with`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from processor.errors import MsgkpiError
from processor.kpi.policy import PolicySet, SlaPolicy
from processor.ui.alerts import ConversationAlert, SlaEvent

__all__ = [
    "ALERT_NAMES",
    "AlertLinks",
    "AlertmanagerClient",
    "AlertmanagerUnavailable",
    "conversation_link",
    "human_duration",
    "to_alertmanager",
]

ALERT_NAMES: Final = {"at_risk": "MsgkpiSlaConversationAtRisk",
                      "breach": "MsgkpiSlaConversationBreach"}
DEFAULT_TEAM: Final = "support"
"""The team label of a conversation that carries no team (the SLA alerts' owner)."""
RUNBOOK_ANCHOR: Final = "sla.md#per-conversation-alerts"
_METRIC_WORDS: Final = {"first_response": "first response", "next_reply": "next reply",
                        "resolution": "resolution"}
_BATCH: Final = 500


class AlertmanagerUnavailable(MsgkpiError):
    """Alertmanager did not take the alerts; they are sent again on the next round."""

    retriable = True


@dataclass(frozen=True, slots=True)
class AlertLinks:
    """Absolute base URLs the annotations link to."""

    docs_url: str
    """Where docs/ is published: runbook_url = <docs_url>/sla.md#per-conversation-alerts."""
    dashboard_url: str
    """The support dashboard: dashboard_url = <dashboard_url>?var-channel=..&var-policy=.."""
    page_url: str | None = None
    """The live page (`msgkpi ui`), Alertmanager's generatorURL."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def human_duration(ms: int) -> str:
    """1234567 -> "20m 34s"; whole seconds, at most two units."""
    seconds = max(0, ms) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{amount}{unit}" for amount, unit in parts if amount][:2]
    return " ".join(shown) or "0s"


def conversation_link(template: str | None, event: SlaEvent) -> str | None:
    """The policy's link template filled with URL-encoded values; None without a template or
    when a placeholder it uses has no value on this conversation."""
    if template is None:
        return None
    values = {"channel": event.channel, "account_id": event.account_id,
              "conversation_id": event.conversation_id, "policy": event.policy,
              "team": event.team, "priority": event.priority}
    try:
        return template.format_map(_Encoded(values))
    except _MissingValue:
        return None


class _MissingValue(Exception):
    pass


class _Encoded(dict[str, str]):
    def __init__(self, values: Mapping[str, str | None]) -> None:
        super().__init__({k: quote(v, safe="") for k, v in values.items() if v is not None})

    def __missing__(self, key: str) -> str:
        raise _MissingValue(key)


def _labels(event: SlaEvent, policy: SlaPolicy | None) -> dict[str, str]:
    severity = "warning" if event.kind == "at_risk" else (
        policy.breach_severity if policy is not None else "ticket")
    labels = {
        "alertname": ALERT_NAMES[event.kind], "channel": event.channel,
        "policy": event.policy, "metric": event.metric, "team": event.team or DEFAULT_TEAM,
        "conversation_id": event.conversation_id, "severity": severity,
    }
    if event.priority:
        labels["priority"] = event.priority
    return labels


def _time_left(event: SlaEvent, now_ms: int) -> str:
    left = event.due_ms - now_ms
    return (f"{human_duration(left)} left" if left > 0
            else f"overdue by {human_duration(-left)}")


def _annotations(alert: ConversationAlert, policy: SlaPolicy | None, links: AlertLinks,
                 now_ms: int) -> dict[str, str]:
    event = alert.event
    what = _METRIC_WORDS.get(event.metric, event.metric)
    if alert.active:
        state = _time_left(event, now_ms)
    else:
        state = f"{alert.ended_by} at {_iso(alert.ended_ms or event.at_ms)}"
    summary = (f"{event.channel} conversation {event.conversation_id}: {what} "
               f"{'at risk' if event.kind == 'at_risk' else 'breached'}, {state}")
    annotations = {
        "summary": summary,
        "description": (f"Policy {event.policy}, cycle {event.cycle}: the {what} is due "
                        f"{_iso(event.due_ms)} (the clock started {_iso(event.start_ms)})."),
        "due_at": _iso(event.due_ms),
        "time_left": _time_left(event, now_ms),
        "runbook_url": f"{links.docs_url.rstrip('/')}/{RUNBOOK_ANCHOR}",
        "dashboard_url": (f"{links.dashboard_url}?var-channel={quote(event.channel, safe='')}"
                          f"&var-policy={quote(event.policy, safe='')}"),
    }
    link = conversation_link(policy.conversation_url if policy is not None else None, event)
    if link is not None:
        annotations["conversation_url"] = link
    return annotations


def to_alertmanager(alert: ConversationAlert, policies: PolicySet, links: AlertLinks,
                    now_ms: int, active_for_ms: int) -> dict[str, Any]:
    """The Alertmanager alert of `alert` at `now_ms`; an active one ends `active_for_ms` from
    now unless sent again."""
    event = alert.event
    try:
        policy: SlaPolicy | None = policies.policy(event.policy)
    except KeyError:  # the policy file changed since the event
        policy = None
    ends_ms = (now_ms + active_for_ms if alert.ended_ms is None
               else max(alert.ended_ms, event.at_ms))
    body: dict[str, Any] = {
        "labels": _labels(event, policy),
        "annotations": _annotations(alert, policy, links, now_ms),
        "startsAt": _iso(event.at_ms),
        "endsAt": _iso(ends_ms),
    }
    if links.page_url:
        body["generatorURL"] = links.page_url
    return body


class AlertmanagerClient:
    """Posts alerts to one Alertmanager (a list of URLs: post to each, as Prometheus does)."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one Alertmanager URL is needed")
        self._urls = [url.rstrip("/") for url in urls]
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AlertmanagerClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def post(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send every alert to every Alertmanager; AlertmanagerUnavailable names the ones
        that did not take them (the others did)."""
        if self._session is None:
            raise RuntimeError("AlertmanagerClient.start() was not called")
        failures = []
        for url in self._urls:
            for first in range(0, len(alerts), _BATCH):
                problem = await self._post_batch(url, alerts[first:first + _BATCH])
                if problem is not None:
                    failures.append(f"{url}: {problem}")
                    break
        if failures:
            raise AlertmanagerUnavailable("; ".join(failures))

    async def _post_batch(self, url: str, batch: Sequence[Mapping[str, Any]]) -> str | None:
        assert self._session is not None
        try:
            async with self._session.post(f"{url}/api/v2/alerts", json=list(batch)) as answer:
                if answer.status == 200:
                    return None
                return f"HTTP {answer.status}: {(await answer.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
