"""The oracle, windowed: which closed windows a run must emit, with their exact contents.

Reuses the batch oracle's walk unchanged; a recording builder notes the event time at which
every observation is made (the time of the event that completes it), and each window
[end - size, end) collects the observations made in it. Windows follow docs/kpis.md: 12 panes
per window, ends on pane boundaries, closed once the newest event time passes end + grace,
starting with the first pane that has data; windows with nothing in them are not emitted.

Reply rate: an answer or an exclusion is recorded at the customer message's time, and counts in
a window only when the reply or resolution is before the window's end (docs/kpis.md, item 6).
Tags: counted per tag (the 50-per-pane cap is not modelled: logs here stay under it), top 10
by count then name. Unique customers: distinct customers of the window's customer messages.
SLA attainment (optional `sla` targets): each agent first response, next reply (not the
first-response wait when the policy has a first-response target) and resolution of a channel
with a policy, measured against the target on a 24/7 calendar, at its event time.
FCR: recorded at each resolved cycle's decision time (resolution + reopen window), with the
reopen that cancels it recorded at that same time.
Agents: per human agent, outbound messages, replies, first responses and their FRT in whole
ms, and resolutions credited to the resolver (the 200-agents-per-pane cap is not modelled).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from processor.events import ConversationEvent
from processor.kpi.sketch import MIN_VALUE_S
from tests.oracle.batch import (
    DEFAULT_REOPEN_WINDOW_MS,
    ReportBuilder,
    _walk,
    dedupe,
    total_order_key,
)

__all__ = ["assert_snapshots_equal_oracle", "expected_windows"]

PANES = 12
AGENT_FIELDS = ("messages", "replies", "first_responses", "first_response_ms", "resolutions")

Observation = tuple[int, str, str, str, float, int]
"""(event time ms, channel, "count" | "time" | "tag" | "customer" | "agent", series name,
value, known from (event time ms): a window counts it only if that is before the window's
end). An "agent" series is named "<field>.<agent>"."""


SlaTargets = Mapping[str, tuple[str, Mapping[str, float]]]
"""channel -> (policy name, metric -> target seconds) on a 24/7 calendar: which policy covers
every cycle of the channel (tests use channel-only policies)."""


class _Recorder(ReportBuilder):
    def __init__(self, sla: SlaTargets) -> None:
        super().__init__()
        self.now_ms = 0
        self.observations: list[Observation] = []
        self._sla = sla
        self._after_first_response = False
        """The agent message being walked gave its cycle the agent FRT."""

    def _attainment(self, channel: str, metric: str, seconds: float) -> None:
        """SLA: measured when the channel's policy has a target for `metric`; attained when
        the duration, in whole ms, is at most the target's (24/7: elapsed = business time)."""
        policy = self._sla.get(channel)
        if policy is None or metric not in policy[1]:
            return
        name, targets = policy
        attained = round(seconds * 1000) <= round(targets[metric] * 1000)
        self._note(channel, "sla", f"{name}|{metric}", 1.0 if attained else 0.0)

    def _note(self, channel: str, kind: str, name: str, value: float = 1.0,
              at_ms: int | None = None, known_ms: int | None = None) -> None:
        at = self.now_ms if at_ms is None else at_ms
        known = at if known_ms is None else known_ms
        self.observations.append((at, channel, kind, name, value, known))

    def _agent(self, channel: str, agent: str, field: str, value: float = 1.0) -> None:
        self._note(channel, "agent", f"{field}.{agent}", value)

    def message(self, channel: str, author: str, agent: str) -> None:
        self._after_first_response = False
        self._note(channel, "count", f"messages.{author}")
        if author == "agent":
            self._agent(channel, agent, "messages")
        if author == "customer":
            self._note(channel, "count", "reply_rate.received")
            self._note(channel, "customer", agent)

    def message_answered(self, channel: str, message_ms: int, reply_ms: int) -> None:
        self._note(channel, "count", "reply_rate.answered", 1, message_ms, reply_ms)

    def message_excluded(self, channel: str, message_ms: int, resolution_ms: int,
                         answered: bool) -> None:
        self._note(channel, "count", "reply_rate.received", -1, message_ms, resolution_ms)
        if answered:
            self._note(channel, "count", "reply_rate.answered", -1, message_ms, resolution_ms)

    def survey(self, channel: str, scale: int, score: float) -> None:
        if scale == 5:
            self._note(channel, "count", "csat.responses")
            self._note(channel, "count", "csat.score_sum_x100", round(score * 100))
            if score >= 4:
                self._note(channel, "count", "csat.satisfied")
        else:
            self._note(channel, "count", "nps.responses")
            if score >= 9:
                self._note(channel, "count", "nps.promoters")
            if score <= 6:
                self._note(channel, "count", "nps.detractors")

    def tag(self, channel: str, tag: str) -> None:
        self._note(channel, "tag", tag)

    def cycle_opened(self, channel: str) -> None:
        self._note(channel, "count", "cycles.opened")

    def fcr_decided(self, channel: str, decided_ms: int, one_agent: bool) -> None:
        self._note(channel, "count", "fcr.resolved", 1, decided_ms)
        if one_agent:
            self._note(channel, "count", "fcr.first_contact", 1, decided_ms)

    def fcr_reopened(self, channel: str, decided_ms: int, one_agent: bool) -> None:
        self._note(channel, "count", "fcr.reopened", 1, decided_ms)
        if one_agent:
            self._note(channel, "count", "fcr.first_contact", -1, decided_ms)

    def cycle_resolved(self, channel: str, kind: str, resolver: str, without_reply: bool) -> None:
        self._note(channel, "count", "cycles.resolved")
        self._agent(channel, resolver, "resolutions")
        if without_reply:
            self._note(channel, "count", "cycles.resolved_without_reply")

    def first_response(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._note(channel, "time", f"first_response.{responder}", seconds)
        if responder == "agent":
            self._agent(channel, agent, "first_responses")
            self._agent(channel, agent, "first_response_ms", round(seconds * 1000))
            self._attainment(channel, "first_response", seconds)
            self._after_first_response = True

    def reply(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._note(channel, "time", f"reply.{responder}", seconds)
        if responder == "agent":
            self._agent(channel, agent, "replies")
            # the wait a first response ended is first_response's when the policy has one
            policy = self._sla.get(channel)
            if not (self._after_first_response and policy and "first_response" in policy[1]):
                self._attainment(channel, "next_reply", seconds)
            self._after_first_response = False

    def resolution(self, channel: str, seconds: float) -> None:
        self._note(channel, "time", "resolution", seconds)
        self._attainment(channel, "resolution", seconds)

    def handle(self, channel: str, seconds: float) -> None:
        self._note(channel, "time", "handle", seconds)

    def clock_skew(self, channel: str) -> None:
        self._note(channel, "count", "clock_skew")


class _Timed(list[ConversationEvent]):
    """A conversation's events that tell the recorder the time of the event being walked."""

    def __init__(self, events: Sequence[ConversationEvent], recorder: _Recorder) -> None:
        super().__init__(events)
        self._recorder = recorder

    def __iter__(self) -> Iterator[ConversationEvent]:
        for event in super().__iter__():
            self._recorder.now_ms = event.occurred_at_ms
            yield event


def observations(events: Sequence[ConversationEvent],
                 reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS,
                 sla: SlaTargets | None = None) -> list[Observation]:
    by_conversation: dict[str, list[ConversationEvent]] = defaultdict(list)
    for event in dedupe(events):
        by_conversation[event.conversation_id].append(event)
    recorder = _Recorder(sla or {})
    for conv_events in by_conversation.values():
        _walk(_Timed(sorted(conv_events, key=total_order_key), recorder), recorder,
              reopen_window_ms)
    return recorder.observations


def expected_windows(events: Sequence[ConversationEvent], windows: Mapping[str, int],
                     grace_ms: int, reopen_window_ms: int = DEFAULT_REOPEN_WINDOW_MS,
                     sla: SlaTargets | None = None
                     ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(channel, window name, end) -> {"counts": {...}, "times": {series: [seconds]}} for every
    window closed once all of `events` are processed."""
    seen = observations(events, reopen_window_ms, sla)
    watermark = max(e.occurred_at_ms for e in events)
    expected: dict[tuple[str, str, int], dict[str, Any]] = {}
    for channel in sorted({o[1] for o in seen}):
        mine = [o for o in seen if o[1] == channel]
        for name, size_ms in windows.items():
            pane_ms = size_ms // PANES
            first_end = min(o[0] - o[0] % pane_ms for o in mine) + pane_ms
            last_end = (watermark - grace_ms) - (watermark - grace_ms) % pane_ms
            for end in range(first_end, last_end + 1, pane_ms):
                inside = [o for o in mine if end - size_ms <= o[0] < end and o[5] < end]
                if inside:
                    expected[(channel, name, end)] = _contents(inside)
    return expected


def _contents(inside: list[Observation]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    times: dict[str, list[float]] = defaultdict(list)
    tags: dict[str, int] = defaultdict(int)
    customers: set[str] = set()
    agents: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(AGENT_FIELDS, 0))
    sla: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for _, _, kind, name, value, _ in inside:
        if kind == "sla":
            policy, _, metric = name.rpartition("|")
            figures = sla[policy].setdefault(metric, {"measured": 0, "attained": 0})
            figures["measured"] += 1
            figures["attained"] += int(value)
        elif kind == "count":
            counts[name] += int(value)
        elif kind == "tag":
            tags[name] += 1
        elif kind == "customer":
            customers.add(name)
        elif kind == "agent":
            field, _, agent = name.partition(".")
            agents[agent][field] += int(value)
        else:
            times[name].append(value)
    top = sorted(tags.items(), key=lambda item: (-item[1], item[0]))[:10]
    return {"counts": {k: n for k, n in counts.items() if n}, "times": dict(times),
            "tags": dict(top), "unique_customers": len(customers),
            "agents": {agent: figures for agent, figures in sorted(agents.items())
                       if any(figures.values())},
            "sla": {policy: metrics for policy, metrics in sorted(sla.items())}}


def assert_snapshots_equal_oracle(closed: dict[tuple[str, str, int], Any],
                                  expected: dict[tuple[str, str, int], Any]) -> None:
    """Closed snapshots (channel, window, end) -> snapshot against `expected_windows`: the same
    windows, equal counts, tags, customers and agents, exact count and sum of every time
    series, and p50/p90 within the sketch's 1% relative error of the exact order statistic
    (0 for an order statistic of 1 ms or less: the sketch's zero bucket)."""
    missing = sorted(set(expected) - set(closed))
    extra = sorted(set(closed) - set(expected))
    assert not missing and not extra, (
        f"{len(missing)} windows missing, e.g. {missing[:3]}; {len(extra)} unexpected, "
        f"e.g. {extra[:3]}; newest window end {max((k[2] for k in expected), default=None)}"
    )
    for key, want in expected.items():
        got = closed[key]
        assert got["counts"] == want["counts"], key
        assert got["tags"] == want["tags"], key
        assert got["unique_customers"] == want["unique_customers"], key
        assert got["agents"] == want["agents"], key
        assert got.get("sla", {}) == want["sla"], (key, got.get("sla"), want["sla"])
        assert sorted(got["times"]) == sorted(want["times"]), key
        for series, values in want["times"].items():
            stats = got["times"][series]
            assert stats["count"] == len(values), (key, series)
            assert math.isclose(stats["sum"], round(sum(values), 3), abs_tol=1e-3), (key, series)
            for q, stat in ((0.5, "p50"), (0.9, "p90")):
                exact = sorted(values)[math.floor(q * (len(values) - 1))]
                if exact <= MIN_VALUE_S:  # the sketch's zero bucket
                    assert stats[stat] == 0, (key, series, stat)
                else:
                    assert abs(stats[stat] - exact) <= 0.01 * exact + 1e-9, (key, series, stat)
