"""The window stage: fact deltas from every partition -> panes per channel -> KPI snapshots.

Apart from Faust so it runs and tests on plain dicts. The conversation stage sends each
channel's fact deltas to one partition of the facts topic (keyed by channel), so one worker owns
all of a channel's panes. Deltas are identified by (source partition, offset, seq); each pane
remembers the highest id applied per source partition and skips anything at or below it, so a
source partition reprocessed after a crash does not count twice.

Watermark: every conversation-stage worker reports, per partition it owns, the newest event time
it has processed and whether it is caught up, to every facts partition, after that partition's
deltas. Each facts partition has its own watermark, from the reports that arrived on it: the
oldest report among sources that are behind (they may still hold older events), or the newest
overall when all are caught up. A report heard on another facts partition says nothing about
the deltas still queued on this one (after a restart, one partition can be far behind another).
A window closes when its partition's watermark passes its end plus the grace period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

from processor.kpi.event_step import FactDelta
from processor.kpi.facts import KIND_BY_VALUE, Fact, effective_ms
from processor.kpi.windows import (
    WindowAggregate,
    WindowSpec,
    closed_window_ends,
    fact_contributions,
    pane_start,
    panes_of_window,
    window_ends_with,
)

__all__ = [
    "PaneRecord",
    "SourceReport",
    "WindowProcessor",
    "decode_deltas",
    "encode_deltas",
    "snapshot_key",
]

SNAPSHOT_SCHEMA: Final = "msgkpi.kpi-snapshot.v1"


@dataclass(slots=True)
class PaneRecord:
    """A pane's aggregate and, per source partition, the last (offset, seq) applied."""

    aggregate: WindowAggregate = field(default_factory=WindowAggregate)
    applied: dict[int, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate.to_dict(),
                "applied": [[src, offset, seq] for src, (offset, seq) in self.applied.items()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaneRecord:
        return cls(WindowAggregate.from_dict(data["aggregate"]),
                   {int(src): (int(offset), int(seq)) for src, offset, seq in data["applied"]})


class SourceReport(NamedTuple):
    newest_ms: int | None
    caught_up: bool


def encode_deltas(source: int, deltas: Iterable[FactDelta]) -> bytes:
    return orjson.dumps({"src": source, "deltas": [
        [d.offset, d.seq, d.weight, *d.fact] for d in deltas
    ]})


def decode_deltas(source: int, rows: list[list[Any]]) -> list[FactDelta]:
    kinds = KIND_BY_VALUE
    return [
        FactDelta(source, offset, seq, weight,
                  Fact(kinds[kind], channel, at_ms, event_id, role, agent, value, cycle))
        for offset, seq, weight, kind, channel, at_ms, event_id, role, agent, value, cycle in rows
    ]


def pane_key(channel: str, window: str, start_ms: int) -> str:
    return f"pane|{channel}|{window}|{start_ms}"


def source_key(window_partition: int, source: int) -> str:
    return f"source|{window_partition}|{source}"


def closed_key(channel: str, window: str) -> str:
    return f"closed|{channel}|{window}"


def snapshot_key(snapshot: dict[str, Any]) -> bytes:
    return f"{snapshot['channel']}|{snapshot['window']}|{snapshot['window_end']}".encode()


class WindowProcessor:
    """Panes and closed-window marks in `store` (the window table's local store)."""

    def __init__(self, store: MutableMapping[str, Any], specs: tuple[WindowSpec, ...],
                 grace_ms: int) -> None:
        self._store = store
        self._specs = specs
        self._grace_ms = grace_ms
        self._sources: dict[int, dict[int, SourceReport]] = {}
        """Facts (window) partition -> source partition -> the newest report heard on it."""
        self.latest_open: dict[tuple[str, str], dict[str, Any]] = {}
        """The newest open-window snapshot per (channel, window), for the gauges."""
        self.late_deltas = 0
        self._index: dict[tuple[str, str], set[int]] | None = None
        """(channel, window) -> pane starts in the store, so a tick need not scan the store
        (FCR facts keep up to three days of future panes); built from the store when None."""

    def reindex(self) -> None:
        """Forget the pane index: the store changed behind this object's back (changelog
        recovery, a revoked partition's keys deleted)."""
        self._index = None

    def _pane_index(self) -> dict[tuple[str, str], set[int]]:
        if self._index is None:
            index: dict[tuple[str, str], set[int]] = {}
            for key in list(self._store):
                if key.startswith("pane|"):
                    _, channel, window, start = key.split("|")
                    index.setdefault((channel, window), set()).add(int(start))
            self._index = index
        return self._index

    def _pane_starts(self, channel: str, window: str) -> set[int]:
        return self._pane_index().setdefault((channel, window), set())

    def apply(self, deltas: Iterable[FactDelta]) -> set[str]:
        """Apply deltas to their panes; returns the keys of the panes that changed."""
        changed: set[str] = set()
        for delta in deltas:
            contributions = fact_contributions(delta.fact)
            for spec in self._specs:
                key = self._apply_to_pane(delta, spec, contributions)
                if key is not None:
                    changed.add(key)
        return changed

    def _apply_to_pane(self, delta: FactDelta, spec: WindowSpec,
                       contributions: tuple[tuple[str, str, int], ...]) -> str | None:
        fact = delta.fact
        start = pane_start(fact.at_ms, spec)
        closed_until = self._store.get(closed_key(fact.channel, spec.name))
        if closed_until is not None and start + spec.pane_ms <= closed_until:
            # Windows already emitted as closed never change; later ones still take it. A
            # lagged fact (reply rate) matters to the closed ones only if what made it known
            # came before their end.
            if pane_start(effective_ms(fact), spec) + spec.pane_ms <= closed_until:
                self.late_deltas += 1
            if start < closed_until - spec.size_ms + spec.pane_ms:
                return None
        key = pane_key(fact.channel, spec.name, start)
        record = self._store.get(key)
        if record is None:
            record = self._store[key] = PaneRecord()
            self._pane_starts(fact.channel, spec.name).add(start)
        position = (delta.offset, delta.seq)
        if record.applied.get(delta.partition, (-1, -1)) >= position:
            return None
        record.applied[delta.partition] = position
        record.aggregate.apply(fact, delta.weight, spec.pane_ms, contributions)
        return key

    def report(self, window_partition: int, source: int, newest_ms: int | None,
               caught_up: bool) -> str | None:
        """Note a source partition's progress as heard on `window_partition`. The newest event
        time is also kept in the store (key returned when it grew), because a worker that
        restarts after a source was fully processed will never see that source's newest
        event again. The stored time counts only while the source is caught up: it may be
        ahead of the source's committed offset (reports go out before commits), so after a
        crash, while the uncommitted records are processed again, only what the source reports
        since its restart bounds the watermark."""
        key = source_key(window_partition, source)
        stored = self._store.get(key)
        newest = max(m for m in (stored, newest_ms) if m is not None) if (
            stored is not None or newest_ms is not None) else None
        self._sources.setdefault(window_partition, {})[source] = SourceReport(
            newest if caught_up else newest_ms, caught_up)
        if newest is not None and newest != stored:
            self._store[key] = newest
            return key
        return None

    @property
    def sources(self) -> dict[int, SourceReport]:
        """Per source partition, the least advanced report over the facts partitions."""
        merged: dict[int, SourceReport] = {}
        for reports in self._sources.values():
            for source, report in reports.items():
                seen = merged.get(source)
                if seen is None:
                    merged[source] = report
                    continue
                known = [m for m in (seen.newest_ms, report.newest_ms) if m is not None]
                newest = None if len(known) < 2 else min(known)
                merged[source] = SourceReport(newest, seen.caught_up and report.caught_up)
        return merged

    def forget_sources(self) -> None:
        self._sources.clear()

    def watermark(self, partitions: int, window_partition: int) -> int | None:
        """The watermark of `window_partition`: None until every one of the `partitions`
        source partitions has reported on it."""
        sources = self._sources.get(window_partition, {})
        if len(sources) < partitions:
            return None
        behind = [r.newest_ms for r in sources.values() if not r.caught_up]
        if behind:
            return None if None in behind else min(m for m in behind if m is not None)
        known = [r.newest_ms for r in sources.values() if r.newest_ms is not None]
        return max(known) if known else None

    def channels(self, owned: Callable[[str], bool]) -> set[str]:
        return {channel for (channel, _), starts in self._pane_index().items()
                if starts and owned(channel)}

    def tick(self, watermark: int, owned: Callable[[str], bool]) -> tuple[
            list[dict[str, Any]], set[str], set[str]]:
        """Snapshots due at `watermark` for the channels `owned` says are ours: every window
        whose grace has passed (closed, once each) then the open window. Returns (snapshots,
        keys written, keys deleted)."""
        snapshots: list[dict[str, Any]] = []
        written: set[str] = set()
        deleted: set[str] = set()
        for channel in sorted(self.channels(owned)):
            for spec in self._specs:
                snapshots.extend(self._close_windows(channel, spec, watermark, written))
                deleted |= self._drop_old_panes(channel, spec)
                open_snapshot = self._snapshot(channel, spec, pane_start(watermark, spec)
                                               + spec.pane_ms, "open", watermark)
                self.latest_open[(channel, spec.name)] = open_snapshot
                snapshots.append(open_snapshot)
        return snapshots, written, deleted

    def _close_windows(self, channel: str, spec: WindowSpec, watermark: int,
                       written: set[str]) -> list[dict[str, Any]]:
        key = closed_key(channel, spec.name)
        last = self._store.get(key)
        if last is None:
            last = self._first_pane(channel, spec)
            if last is None:
                return []
        ends = closed_window_ends(last, watermark, self._grace_ms, spec)
        if not ends:
            return []
        self._store[key] = ends[-1]
        written.add(key)
        snapshots = (self._snapshot(channel, spec, end, "closed", None) for end in
                     window_ends_with(self._pane_starts(channel, spec.name), ends, spec))
        return [s for s in snapshots if s["counts"] or s["times"] or s["tags"] or s["sla"]]

    def _first_pane(self, channel: str, spec: WindowSpec) -> int | None:
        starts = self._pane_starts(channel, spec.name)
        return min(starts) if starts else None

    def _drop_old_panes(self, channel: str, spec: WindowSpec) -> set[str]:
        closed_until = self._store.get(closed_key(channel, spec.name))
        if closed_until is None:
            return set()
        oldest_needed = closed_until - spec.size_ms + spec.pane_ms
        starts = self._pane_starts(channel, spec.name)
        doomed = {start for start in starts if start < oldest_needed}
        starts -= doomed
        keys = {pane_key(channel, spec.name, start) for start in doomed}
        for key in keys:
            self._store.pop(key, None)
        return keys

    def _snapshot(self, channel: str, spec: WindowSpec, end: int, state: str,
                  watermark: int | None) -> dict[str, Any]:
        panes = (self._store.get(pane_key(channel, spec.name, start))
                 for start in panes_of_window(end, spec))
        merged = WindowAggregate.window(p.aggregate if p is not None else None for p in panes)
        snapshot: dict[str, Any] = {
            "schema": SNAPSHOT_SCHEMA, "channel": channel, "window": spec.name,
            "window_start": end - spec.size_ms, "window_end": end, "state": state,
            **merged.summary(),
        }
        if watermark is not None:
            snapshot["watermark"] = watermark
        return snapshot
