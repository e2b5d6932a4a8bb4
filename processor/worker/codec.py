"""How a conversation is stored in the Faust table and its changelog."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers.codecs import Codec

from processor.kpi.timeline import Timeline
from processor.worker.processor import StoredConversation

__all__ = ["ConversationCodec"]


class ConversationCodec(Codec):
    """StoredConversation <-> compact JSON (orjson)."""

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, StoredConversation):
            raise TypeError(f"expected a StoredConversation, got {type(obj).__name__}")
        return orjson.dumps({"partition": obj.partition, "timeline": obj.timeline.to_dict(),
                             "sla": obj.sla})

    def _loads(self, s: bytes) -> StoredConversation:
        data = orjson.loads(s)
        return StoredConversation(data["partition"], Timeline.from_dict(data["timeline"]),
                                  data.get("sla"))
