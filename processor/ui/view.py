"""What the live page shows of `msgkpi.kpi`: the newest snapshot per channel and window, the
first-response-time history of the smallest window, per-agent figures. Pure: fed decoded
snapshots (schemas/kpi-snapshot.v1.schema.json), read as plain JSON-ready dicts.

"Newest" is by window end, then closed over open (a closed snapshot is final), then by
watermark, so records read in any order (a rebuild, two partitions) give the same view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from processor.ui.alerts import AlertBook, AlertKind, SlaEvent

__all__ = [
    "CHART_SPAN_MS",
    "KpiBoard",
    "SnapshotKey",
    "channel_summary",
    "page_json",
    "window_ms",
]

CHART_SPAN_MS: Final = 3600_000
"""The FRT chart covers the windows ending in the last hour (of event time) of a channel."""
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3600_000, "d": 86_400_000}
_AGENT_FIELDS: Final = ("messages", "replies", "first_responses", "first_response_ms",
                        "resolutions")

SnapshotKey = tuple[str, str]
"""(channel, window name)."""


def window_ms(name: str) -> int:
    """"5m" -> 300000; ValueError for anything that is not <number><s|m|h|d>."""
    number, unit = name[:-1], name[-1:]
    if unit not in _UNIT_MS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{name!r} is not a window such as 5m, 1h, 24h")
    return int(number) * _UNIT_MS[unit]


def _rank(snapshot: Mapping[str, Any]) -> tuple[int, int, int]:
    return (int(snapshot["window_end"]), snapshot["state"] == "closed",
            int(snapshot.get("watermark", 0)))


def _ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if not denominator else numerator / denominator


def _time(times: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    figures = times.get(name)
    if not figures:
        return None
    return {key: figures[key] for key in ("count", "avg", "p50", "p90")}


def _csat(counts: Mapping[str, int]) -> dict[str, Any]:
    responses = counts.get("csat.responses", 0)
    return {
        "responses": responses,
        "average": _ratio(counts.get("csat.score_sum_x100", 0) / 100, responses),
        "satisfied_ratio": _ratio(counts.get("csat.satisfied", 0), responses),
    }


def _nps(counts: Mapping[str, int]) -> dict[str, Any]:
    responses = counts.get("nps.responses", 0)
    promoters, detractors = counts.get("nps.promoters", 0), counts.get("nps.detractors", 0)
    score = _ratio(100 * (promoters - detractors), responses)
    return {"responses": responses, "score": score}


def _sla(sla: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, Any]:
    return {policy: {metric: {**figures, "ratio": _ratio(figures["attained"],
                                                         figures["measured"])}
                     for metric, figures in metrics.items()}
            for policy, metrics in sla.items()}


def _agents(agents: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
    return {agent: _agent_row(figures) for agent, figures in agents.items()}


def _agent_row(figures: Mapping[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {name: figures.get(name, 0) for name in _AGENT_FIELDS}
    row["first_response_avg_s"] = _ratio(row["first_response_ms"] / 1000,
                                         row["first_responses"])
    return row


def channel_summary(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The page's figures of one snapshot: times in seconds, ratios in 0..1 (None when
    nothing was measured), raw counts beside them."""
    counts: Mapping[str, int] = snapshot.get("counts", {})
    times: Mapping[str, Any] = snapshot.get("times", {})
    return {
        "state": snapshot["state"],
        "window_start": snapshot["window_start"],
        "window_end": snapshot["window_end"],
        "watermark": snapshot.get("watermark"),
        "first_response": _time(times, "first_response.agent"),
        "bot_first_response": _time(times, "first_response.bot"),
        "reply": _time(times, "reply.agent"),
        "resolution": _time(times, "resolution"),
        "handle": _time(times, "handle"),
        "reply_rate": {
            "received": counts.get("reply_rate.received", 0),
            "answered": counts.get("reply_rate.answered", 0),
            "ratio": _ratio(counts.get("reply_rate.answered", 0),
                            counts.get("reply_rate.received", 0)),
        },
        "messages": {author: counts.get(f"messages.{author}", 0)
                     for author in ("customer", "agent", "bot")},
        "cycles": {name: counts.get(f"cycles.{name}", 0)
                   for name in ("opened", "resolved", "resolved_without_reply")},
        "unique_customers": snapshot.get("unique_customers", 0),
        "fcr": {"resolved": counts.get("fcr.resolved", 0),
                "ratio": _ratio(counts.get("fcr.first_contact", 0),
                                counts.get("fcr.resolved", 0))},
        "csat": _csat(counts),
        "nps": _nps(counts),
        "sla": _sla(snapshot.get("sla", {})),
        "tags": dict(snapshot.get("tags", {})),
        "agents": _agents(snapshot.get("agents", {})),
    }


@dataclass(slots=True)
class _ChartPoint:
    rank: tuple[int, int, int]
    p50: float | None
    p90: float | None


@dataclass
class KpiBoard:
    """The newest snapshot per (channel, window) and each channel's FRT history."""

    windows: tuple[str, ...]
    """Window names in display order; the first (smallest) feeds the FRT chart."""
    _latest: dict[SnapshotKey, dict[str, Any]] = field(default_factory=dict)
    _chart: dict[str, dict[int, _ChartPoint]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("a board needs at least one window")
        self.windows = tuple(sorted(self.windows, key=window_ms))

    def add(self, snapshot: Mapping[str, Any]) -> bool:
        """Take one snapshot; True if the view changed. Snapshots of windows the board does
        not show are ignored."""
        window = snapshot["window"]
        if window not in self.windows:
            return False
        key = (str(snapshot["channel"]), str(window))
        changed = False
        current = self._latest.get(key)
        if current is None or _rank(snapshot) > _rank(current):
            self._latest[key] = dict(snapshot)
            changed = True
        if window == self.windows[0]:
            changed = self._add_chart_point(key[0], snapshot) or changed
        return changed

    def _add_chart_point(self, channel: str, snapshot: Mapping[str, Any]) -> bool:
        points = self._chart.setdefault(channel, {})
        end, rank = int(snapshot["window_end"]), _rank(snapshot)
        known = points.get(end)
        if known is not None and known.rank >= rank:
            return False
        frt = snapshot.get("times", {}).get("first_response.agent") or {}
        points[end] = _ChartPoint(rank, frt.get("p50"), frt.get("p90"))
        newest = max(points)
        for old in [e for e in points if e <= newest - CHART_SPAN_MS]:
            del points[old]
        return True

    def channels(self) -> list[str]:
        return sorted({channel for channel, _ in self._latest})

    def snapshot(self, channel: str, window: str) -> dict[str, Any] | None:
        return self._latest.get((channel, window))

    def frt_chart(self, channel: str) -> list[dict[str, Any]]:
        """[{window_end, p50, p90}] of the smallest window, oldest first, last hour."""
        points = self._chart.get(channel, {})
        return [{"window_end": end, "p50": point.p50, "p90": point.p90}
                for end, point in sorted(points.items())]

    def agents(self, window: str) -> list[dict[str, Any]]:
        """Per agent, summed over channels, from each channel's newest snapshot of `window`;
        most replies first."""
        totals: dict[str, dict[str, int]] = {}
        for (_, name), snapshot in self._latest.items():
            if name != window:
                continue
            for agent, figures in snapshot.get("agents", {}).items():
                row = totals.setdefault(agent, dict.fromkeys(_AGENT_FIELDS, 0))
                for field_name in _AGENT_FIELDS:
                    row[field_name] += figures.get(field_name, 0)
        rows = [{"agent": agent, **_agent_row(figures)} for agent, figures in totals.items()]
        return sorted(rows, key=lambda row: (-row["replies"], -row["resolutions"],
                                             row["agent"]))

    def to_json(self) -> dict[str, Any]:
        """Channels -> {windows: {window: summary}, frt_chart}, and agents per window."""
        channels = {
            channel: {
                "windows": {window: channel_summary(snapshot) for window in self.windows
                            if (snapshot := self.snapshot(channel, window)) is not None},
                "frt_chart": self.frt_chart(channel),
            }
            for channel in self.channels()
        }
        return {"windows": list(self.windows), "channels": channels,
                "agents": {window: self.agents(window) for window in self.windows}}


def _no_link(event: SlaEvent) -> str | None:
    return None


def page_json(board: KpiBoard, book: AlertBook, now_ms: int, *, ready: bool,
              link: Callable[[SlaEvent], str | None] = _no_link,
              limit: int = 100) -> dict[str, Any]:
    """`GET /api/kpis`: the board, and the newest `limit` active at-risk and breached
    conversations with their time left at `now_ms` (negative: overdue) and `link` (the
    conversation in the helpdesk, or None)."""
    def rows(kind: AlertKind) -> list[dict[str, Any]]:
        return [{**alert.to_json(now_ms), "conversation_url": link(alert.event)}
                for alert in book.active(kind, limit)]

    return {
        "now_ms": now_ms,
        "ready": ready,
        **board.to_json(),
        "at_risk": rows("at_risk"),
        "breached": rows("breach"),
        "totals": {"at_risk": book.active_count("at_risk"),
                   "breached": book.active_count("breach")},
    }
