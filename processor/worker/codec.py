"""How a conversation's Timeline is stored in the Faust table and its changelog."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers.codecs import Codec

from processor.kpi.timeline import Timeline

__all__ = ["TimelineCodec"]


class TimelineCodec(Codec):  # type: ignore[misc]
    """Timeline <-> compact JSON (orjson)."""

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, Timeline):
            raise TypeError(f"expected a Timeline, got {type(obj).__name__}")
        return orjson.dumps(obj.to_dict())

    def _loads(self, s: bytes) -> Timeline:
        return Timeline.from_dict(orjson.loads(s))
