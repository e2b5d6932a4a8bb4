"""The seams under faust-streaming (processor.worker.faust_seams): the pinned version, and the
worker wired to receive its topics as batches, not through Faust streams."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport import consumer as faust_consumer
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from processor.config import Settings, Topics
from processor.errors import ConfigError
from processor.worker.app import build_worker
from processor.worker.faust_seams import (
    FAUST_VERSION,
    BatchConsumer,
    check_faust_version,
    local_dict,
)


def worker_settings(tmp_path: str) -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:1", topics=Topics.with_prefix("seams"),
                    app_id="seams", worker_data_dir=tmp_path)


def test_the_installed_faust_is_the_pinned_one_and_any_other_is_refused() -> None:
    assert faust.__version__ == FAUST_VERSION
    check_faust_version()
    with pytest.raises(ConfigError, match=r"faust-streaming 0\.15\.3 .* found 0\.16\.0"):
        check_faust_version("0.16.0")


def test_faust_still_drains_fetches_through_the_method_the_seam_replaces() -> None:
    """An upgrade that reroutes Faust's fetch loop would leave the seam unused."""
    assert "consumer._drain_messages(self)" in inspect.getsource(faust_consumer.Fetcher)
    assert BatchConsumer._drain_messages is not faust_consumer.Consumer._drain_messages


def test_the_worker_takes_events_and_facts_as_batches_and_no_stream_reads_them(
        tmp_path: object) -> None:
    worker = build_worker(worker_settings(str(tmp_path)), CollectorRegistry())
    consumer = worker.app.consumer
    assert type(consumer) is BatchConsumer
    assert sorted(consumer.batch_handlers) == ["seams-facts", "seams.events"]
    streamed = {topic for agent in worker.app.agents.values()
                for topic in agent.channel.topics} if worker.app.agents else set()
    assert streamed.isdisjoint(consumer.batch_handlers)
    page = generate_latest(worker.registry).decode()
    assert 'msgkpi_worker_batches_total{topic="seams.events"} 0.0' in page
    assert 'msgkpi_worker_checkpoints_total{stage="conversations"} 0.0' in page
    assert 'msgkpi_worker_checkpoints_total{stage="windows"} 0.0' in page


def test_many_offsets_are_acknowledged_once_each_from_the_commit_on(tmp_path: object) -> None:
    consumer = build_worker(worker_settings(str(tmp_path)), CollectorRegistry()).app.consumer
    assert isinstance(consumer, BatchConsumer)
    tp = TP("seams.events", 0)
    consumer._committed_offset[tp] = 3
    consumer.ack_offsets(tp, [1, 3, 4, 4, 5])
    consumer.ack_offsets(tp, [5, 6])
    assert sorted(consumer._acked[tp]) == [3, 4, 5, 6]
    assert consumer._n_acked == 4


def test_the_worker_reads_its_tables_through_the_dict_faust_recovery_writes(
        tmp_path: object) -> None:
    worker = build_worker(worker_settings(str(tmp_path)), CollectorRegistry())
    conversations: Any = worker.app.tables["conversations"]
    windows: Any = worker.app.tables["windows"]
    assert worker.processor._table is local_dict(conversations)
    # Faust's recovery writes the store's dict: what it restores is what the worker reads.
    conversations.data.data["c1"] = "restored"
    assert worker.processor._table["c1"] == "restored"
    local_dict(windows)["pane"] = "x"
    assert windows.data["pane"] == "x"


def test_changelog_records_skip_the_race_only_while_the_put_cannot_block(
        tmp_path: object) -> None:
    worker = build_worker(worker_settings(str(tmp_path)), CollectorRegistry())
    consumer = worker.app.consumer
    assert isinstance(consumer, BatchConsumer)
    changelog = worker.app.tables["conversations"].changelog_topic.get_topic_name()
    assert not consumer._restores_without_waiting(changelog)  # Faust starts suspended
    worker.app.flow_control.resume()  # as its recovery does before reading the changelogs
    assert consumer._restores_without_waiting(changelog)
    assert not consumer._restores_without_waiting("seams.events")
    consumer.suspend_flow.set()  # a rebalance began: Faust's own race decides
    assert not consumer._restores_without_waiting(changelog)
    consumer.suspend_flow.clear()
    worker.app.flow_control.suspend()  # the put would wait for the flow to resume
    assert not consumer._restores_without_waiting(changelog)
    worker.app.flow_control.resume()
    assert consumer._restores_without_waiting(changelog)
    queue: Any = worker.app.tables.changelog_queue  # type: ignore[attr-defined]
    for index in range(queue.maxsize):
        queue.put_nowait(index)
    assert not consumer._restores_without_waiting(changelog)


def _fetched(tp: TP, offsets: range) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())
            for offset in offsets]


def _fetch_once(consumer: BatchConsumer, records: dict[TP, list[Any]], active: set[TP],
                sought: list[tuple[TP, int]]) -> None:
    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
        return records, active

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.seek = seek  # type: ignore[method-assign, assignment]
    consumer.assignment = lambda: set(records)  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 0  # type: ignore[method-assign]


def test_records_faust_would_skip_are_read_again_not_lost(tmp_path: object) -> None:
    """Faust skips a partition missing from the active set it took before the fetch; the
    client's position has moved past those records all the same."""
    worker = build_worker(worker_settings(str(tmp_path)), CollectorRegistry())
    consumer = worker.app.consumer
    assert isinstance(consumer, BatchConsumer)
    consumer.flow_active = True
    changelog = "seams-conversations-changelog"
    restored, paused = TP(changelog, 0), TP(changelog, 3)
    sought: list[tuple[TP, int]] = []
    _fetch_once(consumer, {restored: _fetched(restored, range(0, 4)),
                           paused: _fetched(paused, range(10, 14))}, {restored}, sought)

    async def drain() -> list[tuple[TP, int]]:
        return [(tp, message.offset) async for tp, message in consumer.getmany(1.0)]

    handed = asyncio.run(drain())
    assert handed == [(restored, offset) for offset in range(4)]
    assert sought == [(paused, 10)]
    page = generate_latest(worker.registry).decode()
    assert ('msgkpi_worker_refetched_partitions_total{topic="seams-conversations-changelog"} 1.0'
            in page)


def test_the_rest_of_a_fetch_cut_short_by_a_rebalance_is_read_again(tmp_path: object) -> None:
    worker = build_worker(worker_settings(str(tmp_path)), CollectorRegistry())
    consumer = worker.app.consumer
    assert isinstance(consumer, BatchConsumer)
    consumer.flow_active = True
    first, second = TP("seams.events", 0), TP("seams.events", 1)
    sought: list[tuple[TP, int]] = []
    _fetch_once(consumer, {first: _fetched(first, range(0, 3)),
                           second: _fetched(second, range(5, 8))}, {first, second}, sought)

    async def drain_until_the_flow_stops() -> list[tuple[TP, int]]:
        handed = []
        async for tp, message in consumer.getmany(1.0):
            handed.append((tp, message.offset))
            if len(handed) == 3:
                consumer.flow_active = False  # a rebalance begins
        return handed

    handed = asyncio.run(drain_until_the_flow_stops())
    assert handed == [(first, 0), (second, 5), (first, 1)]  # round robin, then cut short
    assert sorted(sought) == [(first, 2), (second, 6)]
