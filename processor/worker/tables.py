"""Faust tables whose keys are plain strings and whose values use our own codec."""

from __future__ import annotations

from typing import Any

import faust

__all__ = ["string_keyed_table"]


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
