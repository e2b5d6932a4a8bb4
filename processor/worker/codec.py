"""How a conversation is stored in the Faust table and its changelog."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faust.serializers.codecs import Codec

from processor.kpi.event_step import StoredConversation
from processor.kpi.sla_record import SlaRecord
from processor.kpi.timeline import Timeline

__all__ = ["ConversationCodec", "decode_or_drop"]

log = logging.getLogger("msgkpi.worker.state")


def decode_or_drop(kind: str, raw: bytes, decode: Any) -> Any:
    """Decode a changelog record; one that cannot be decoded (written by an incompatible
    version, or damaged) is dropped with an error log instead of stalling table recovery, which
    Faust would otherwise retry forever. The conversation then starts afresh."""
    try:
        return decode(orjson.loads(raw))
    except Exception as exc:  # any damage: drop the record, never stall recovery
        log.error("dropped an undecodable %s record from the changelog: %s: %s",
                  kind, type(exc).__name__, exc)
        return None


class ConversationCodec(Codec):
    """StoredConversation <-> compact JSON (orjson)."""

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, StoredConversation):
            raise TypeError(f"expected a StoredConversation, got {type(obj).__name__}")
        return orjson.dumps({"partition": obj.partition, "timeline": obj.timeline.to_dict(),
                             "sla": None if obj.sla is None else obj.sla.to_dict()})

    def _loads(self, s: bytes) -> StoredConversation | None:
        return decode_or_drop("conversation", s, _conversation)  # type: ignore[no-any-return]


def _conversation(data: dict[str, Any]) -> StoredConversation:
    sla = data.get("sla")
    return StoredConversation(data["partition"], Timeline.from_dict(data["timeline"]),
                              None if sla is None else SlaRecord.from_dict(sla))
