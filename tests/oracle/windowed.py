"""The oracle, windowed: which closed windows a run must emit, with their exact contents.

Reuses the batch oracle's walk unchanged; a recording builder notes the event time at which
every observation is made (the time of the event that completes it), and each window
[end - size, end) collects the observations made in it. Windows follow docs/kpis.md: 12 panes
per window, ends on pane boundaries, closed once the newest event time passes end + grace,
starting with the first pane that has data; windows with nothing in them are not emitted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from processor.events import ConversationEvent
from tests.oracle.batch import ReportBuilder, _walk, dedupe, total_order_key

__all__ = ["expected_windows"]

PANES = 12

Observation = tuple[int, str, str, str, float]
"""(event time ms, channel, "count" | "time", series name, value)."""


class _Recorder(ReportBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.now_ms = 0
        self.observations: list[Observation] = []

    def _note(self, channel: str, kind: str, name: str, value: float = 1.0) -> None:
        self.observations.append((self.now_ms, channel, kind, name, value))

    def message(self, channel: str, author: str, agent: str) -> None:
        self._note(channel, "count", f"messages.{author}")

    def cycle_opened(self, channel: str) -> None:
        self._note(channel, "count", "cycles.opened")

    def cycle_resolved(self, channel: str, kind: str, resolver: str, without_reply: bool) -> None:
        self._note(channel, "count", "cycles.resolved")
        if without_reply:
            self._note(channel, "count", "cycles.resolved_without_reply")

    def first_response(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._note(channel, "time", f"first_response.{responder}", seconds)

    def reply(self, channel: str, responder: str, agent: str, seconds: float) -> None:
        self._note(channel, "time", f"reply.{responder}", seconds)

    def resolution(self, channel: str, seconds: float) -> None:
        self._note(channel, "time", "resolution", seconds)

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


def observations(events: Sequence[ConversationEvent]) -> list[Observation]:
    by_conversation: dict[str, list[ConversationEvent]] = defaultdict(list)
    for event in dedupe(events):
        by_conversation[event.conversation_id].append(event)
    recorder = _Recorder()
    for conv_events in by_conversation.values():
        _walk(_Timed(sorted(conv_events, key=total_order_key), recorder), recorder)
    return recorder.observations


def expected_windows(events: Sequence[ConversationEvent], windows: Mapping[str, int],
                     grace_ms: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(channel, window name, end) -> {"counts": {...}, "times": {series: [seconds]}} for every
    window closed once all of `events` are processed."""
    seen = observations(events)
    watermark = max(e.occurred_at_ms for e in events)
    expected: dict[tuple[str, str, int], dict[str, Any]] = {}
    for channel in sorted({o[1] for o in seen}):
        mine = [o for o in seen if o[1] == channel]
        for name, size_ms in windows.items():
            pane_ms = size_ms // PANES
            first_end = min(o[0] - o[0] % pane_ms for o in mine) + pane_ms
            last_end = (watermark - grace_ms) - (watermark - grace_ms) % pane_ms
            for end in range(first_end, last_end + 1, pane_ms):
                inside = [o for o in mine if end - size_ms <= o[0] < end]
                if inside:
                    expected[(channel, name, end)] = _contents(inside)
    return expected


def _contents(inside: list[Observation]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    times: dict[str, list[float]] = defaultdict(list)
    for _, _, kind, name, value in inside:
        if kind == "count":
            counts[name] += 1
        else:
            times[name].append(value)
    return {"counts": dict(counts), "times": dict(times)}
