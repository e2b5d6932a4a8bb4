"""Faust tables whose keys are plain strings and whose values use our own codec."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import faust

__all__ = ["ChangelogWriter", "string_keyed_table"]


class _CodecTable(faust.Table):  # type: ignore[type-arg]
    """Faust derives a table's changelog serializers from key_type/value_type only (JSON
    unless the type is bytes or a faust Record), in __init__, when it creates the changelog
    topic. This table answers raw UTF-8 for the str keys and the given codec for the values,
    so writes and recovery agree."""

    def __init__(self, app: faust.App, *, value_codec: Any, **kwargs: Any) -> None:
        self._value_codec = value_codec
        super().__init__(app, **kwargs)

    def _serializer_from_type(self, typ: Any) -> Any:
        return "raw" if typ is str else self._value_codec


def string_keyed_table(app: faust.App, name: str, partitions: int, codec: Any) -> Any:
    """A changelog-backed table with raw UTF-8 string keys and `codec` values."""
    table = _CodecTable(app, name=name, default=None, beacon=app.tables.beacon,
                        partitions=partitions, key_type=str, value_type=None,
                        value_codec=codec)
    app.tables.add(table)
    return table


class ChangelogWriter:
    """A table's changelog writes, sent in order and awaited until Kafka has them.

    Faust's `send_changelog` puts the record in the producer buffer, and the flush before an
    offset commit gives up as soon as one buffered record takes more than 0.1 s to leave: the
    offsets of the records that changed the table can then be committed while the change is
    still buffered, and a crash loses it for good. So writes are queued here (`write`, in the
    order the store changed) and `flush` sends them straight to the producer and waits for the
    acknowledgements; callers flush before the records that caused them are acknowledged."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._queued: list[tuple[int, str, Any]] = []
        self._sending = asyncio.Lock()

    def write(self, partition: int, key: str, value: Any) -> None:
        """Queue `value` (None: delete) as the key's new state in the changelog."""
        self._queued.append((partition, key, value))

    @property
    def queued(self) -> int:
        return len(self._queued)

    async def flush(self) -> None:
        """Send everything queued so far and wait until Kafka acknowledged it."""
        acks: list[Awaitable[Any]] = []
        async with self._sending:  # one sender at a time, so the changelog keeps the order
            queued, self._queued = self._queued, []
            topic = self._table.changelog_topic
            for partition, key, value in queued:
                acks.append(await topic.send(
                    key=key, value=value, partition=partition,
                    key_serializer=self._table.key_serializer,
                    value_serializer=self._table.value_serializer if value is not None
                    else "raw",
                    callback=self._table._on_changelog_sent, force=True))
        if acks:
            await asyncio.gather(*acks)
