"""Kafka -> the page's view: `msgkpi.kpi` into the `KpiBoard`, `msgkpi.sla` and the clock
stopping activity of `msgkpi.events` into the `AlertBook`.

Every UI process reads every partition (assigned, not subscribed: several replicas behind a
load balancer each show everything) under its own consumer group id and commits nothing; on
start it rebuilds the view from the topics:

- `msgkpi.sla` from the beginning (at-risk and breach events are few);
- `msgkpi.kpi` from `kpi_lookback_ms` ago (by record time): enough for the newest snapshot of
  the largest window and the last hour of the FRT chart;
- once those are read up to where they ended at start-up (`ready`), `msgkpi.events` from just
  before the oldest active alert began (and at least `EVENTS_MARGIN_MS` back), so replies and
  resolutions that ended alerts while the UI was down are seen again.

Kafka clients are built by `create_consumer` and `create_admin` only: the places for connection
(security) settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from processor.config import Settings
from processor.topics import TopicsUnavailable, ensure_topics
from processor.ui.alerts import AlertBook, ConversationActivity, SlaEvent
from processor.ui.view import KpiBoard

__all__ = ["EVENTS_MARGIN_MS", "UiFeed", "create_admin", "create_consumer"]

log = logging.getLogger("msgkpi.ui.feed")

EVENTS_MARGIN_MS: Final = 15 * 60_000
"""msgkpi.events is re-read from at least this long before start-up (a reply read before its
alert, a worker a little behind)."""
_TOPICS_RETRY_S: Final = 5.0
_POLL_MS: Final = 500
_MAX_RECORDS: Final = 2000


def create_consumer(settings: Settings, group_id: str) -> AIOKafkaConsumer:
    """A consumer for the UI: no auto-commit, earliest offsets; partitions are assigned."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def create_admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client for the UI (describes the topics' partitions)."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                               client_id="msgkpi-ui-admin")


def _decode(record: ConsumerRecord[Any, Any]) -> dict[str, Any] | None:
    try:
        data = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


class UiFeed:
    """Owns the consumers and the read loops; `alerts_changed` is called after records that
    changed the alert book (a new alert, or one that ended)."""

    def __init__(self, settings: Settings, group_id: str, board: KpiBoard, book: AlertBook,
                 *, kpi_lookback_ms: int, alerts_changed: Callable[[], None],
                 clock_ms: Callable[[], int]) -> None:
        self._settings = settings
        self._group_id = group_id
        self.board = board
        self.book = book
        self._kpi_lookback_ms = kpi_lookback_ms
        self._alerts_changed = alerts_changed
        self._clock_ms = clock_ms
        self.ready = asyncio.Event()
        """Set once msgkpi.kpi and msgkpi.sla are read up to their ends at start-up."""
        self.skipped = 0
        """Records that could not be decoded (logged, then skipped)."""
        self._consumers: list[AIOKafkaConsumer] = []
        self._ends: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="msgkpi-ui-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        await self._stop_consumers()

    async def __aenter__(self) -> UiFeed:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        """Read until cancelled; after a failure, start over (records read twice change
        nothing: the board keeps the newest snapshot, the book ignores known alert ids)."""
        while True:
            try:
                await self._ensure_topics()
                await self._read_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the UI's Kafka feed failed; starting over in %ss",
                              _TOPICS_RETRY_S)
            await self._stop_consumers()
            await asyncio.sleep(_TOPICS_RETRY_S)

    async def _read_all(self) -> None:
        views = await self._start_views_consumer()
        views_task = asyncio.create_task(self._read(views, until_ready=True))
        try:
            ready = asyncio.create_task(self.ready.wait())
            await asyncio.wait({views_task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if views_task.done():
                ready.cancel()
                await views_task  # raises what ended it
            events = await self._start_events_consumer()
            await asyncio.gather(views_task, self._read(events, until_ready=False))
        finally:
            views_task.cancel()
            await asyncio.wait({views_task})

    async def _stop_consumers(self) -> None:
        for consumer in self._consumers:
            try:
                await consumer.stop()
            except Exception:
                log.exception("stopping a consumer failed")
        self._consumers.clear()

    async def _ensure_topics(self) -> None:
        while True:
            try:
                await ensure_topics(self._settings.kafka_bootstrap, self._settings.topics)
                return
            except TopicsUnavailable as exc:
                log.warning("Kafka topics not available yet, retrying in %ss: %s",
                            _TOPICS_RETRY_S, exc)
            await asyncio.sleep(_TOPICS_RETRY_S)

    async def _assigned(self, topics: Iterable[str]) -> tuple[AIOKafkaConsumer,
                                                                list[TopicPartition]]:
        consumer = create_consumer(self._settings, self._group_id)
        self._consumers.append(consumer)
        await consumer.start()
        partitions: list[TopicPartition] = []
        for topic in topics:
            partitions += [TopicPartition(topic, p) for p in await self._partitions(topic)]
        consumer.assign(partitions)
        return consumer, partitions

    async def _partitions(self, topic: str) -> list[int]:
        """A topic's partition numbers, as Kafka describes it."""
        admin = create_admin(self._settings)
        await admin.start()
        try:
            for meta in await admin.describe_topics([topic]):
                if meta.get("error_code", 0) == 0 and meta["partitions"]:
                    return sorted(int(p["partition"]) for p in meta["partitions"])
        finally:
            await admin.close()
        raise TopicsUnavailable(f"topic {topic} has no partitions")

    async def _start_views_consumer(self) -> AIOKafkaConsumer:
        topics = self._settings.topics
        consumer, partitions = await self._assigned((topics.kpi, topics.sla))
        await consumer.seek_to_beginning(*[tp for tp in partitions if tp.topic == topics.sla])
        await self._seek_to_time(consumer, [tp for tp in partitions if tp.topic == topics.kpi],
                                 self._clock_ms() - self._kpi_lookback_ms)
        self._ends = await consumer.end_offsets(partitions)
        return consumer

    async def _start_events_consumer(self) -> AIOKafkaConsumer:
        consumer, partitions = await self._assigned((self._settings.topics.events,))
        periods = [a.event.period_ms for a in self.book.alerts() if a.active]
        since = min([self._clock_ms(), *periods]) - EVENTS_MARGIN_MS
        await self._seek_to_time(consumer, partitions, since)
        log.info("reading %s from %d ms", self._settings.topics.events, since)
        return consumer

    @staticmethod
    async def _seek_to_time(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                            since_ms: int) -> None:
        if not partitions:
            return
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, max(0, since_ms)))
        for tp in partitions:
            offset = found.get(tp)
            if offset is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, offset.offset)

    async def _read(self, consumer: AIOKafkaConsumer, *, until_ready: bool) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
            alerts_changed = False
            for records in batches.values():
                for record in records:
                    alerts_changed = self._apply(record) or alerts_changed
            if alerts_changed:
                self._alerts_changed()
            if until_ready and not self.ready.is_set() and await self._caught_up(consumer):
                log.info("view rebuilt: %d channels, %d alerts", len(self.board.channels()),
                         len(self.book.alerts()))
                self.ready.set()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self._ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Take one record; True if it changed the alert book."""
        data = _decode(record)
        topics = self._settings.topics
        try:
            if data is None:
                raise ValueError("not a JSON object")
            if record.topic == topics.events:
                activity = ConversationActivity.from_event(data)
                return activity is not None and bool(self.book.add_activity(activity))
            if record.topic == topics.sla:
                return self.book.add_sla_event(SlaEvent.from_dict(data))
            self.board.add(data)
            return False
        except (KeyError, TypeError, ValueError) as exc:
            self.skipped += 1
            log.warning("skipped a record of %s (partition %d, offset %d): %s",
                        record.topic, record.partition, record.offset, exc)
            return False
