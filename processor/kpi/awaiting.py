"""Which conversations wait for an agent right now, per channel (the live 'wait now' KPI)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["AwaitingIndex", "ChannelWait"]


class ChannelWait(NamedTuple):
    waiting: int
    """Open conversations whose customer waits for an agent reply."""
    oldest_wait_seconds: float
    """now - the oldest waiting_since among them (0 when none waits)."""


class AwaitingIndex:
    """conversation -> (channel, waiting_since_ms) for the conversations this worker owns."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[str, int]] = {}

    def update(self, conversation_id: str, channel: str, waiting_since_ms: int | None) -> None:
        if waiting_since_ms is None:
            self._waiting.pop(conversation_id, None)
        else:
            self._waiting[conversation_id] = (channel, waiting_since_ms)

    def clear(self) -> None:
        self._waiting.clear()

    def __len__(self) -> int:
        return len(self._waiting)

    def by_channel(self, now_ms: int) -> dict[str, ChannelWait]:
        oldest: dict[str, int] = {}
        counts: dict[str, int] = {}
        for channel, since in self._waiting.values():
            counts[channel] = counts.get(channel, 0) + 1
            oldest[channel] = min(oldest.get(channel, since), since)
        return {
            channel: ChannelWait(count, max(0.0, (now_ms - oldest[channel]) / 1000))
            for channel, count in counts.items()
        }
