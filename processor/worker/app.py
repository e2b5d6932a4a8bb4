"""The Faust worker: msgkpi.events -> per-conversation table -> KPI facts -> /metrics.

Agents stay tiny: decode, call the pure core through `EventProcessor`, record or send.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from faust.web.base import BlueprintManager
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from processor.config import Settings
from processor.errors import ConfigError
from processor.export.worker_metrics import AwaitingCollector, WorkerMetrics
from processor.kafka_security import EXIT_KAFKA_AUTH, KafkaAuthFailed
from processor.kpi.awaiting import AwaitingIndex
from processor.kpi.event_step import EventProcessor, Record, Rejected
from processor.kpi.policy import PolicySet
from processor.policy_file import load_policy_file
from processor.topics import TopicsUnavailable, ensure_settings_topics
from processor.worker.checkpoint import CHECKPOINT_INTERVAL_S, Checkpoint, CheckpointCollector
from processor.worker.codec import ConversationCodec
from processor.worker.delivery import (
    DELIVERY_CHECK_S,
    DeliveryCollector,
    DeliveryGuard,
    KafkaRanges,
)
from processor.worker.faust_seams import (
    BatchCollector,
    batch_consumer,
    check_faust_version,
    deliver_batches,
    local_dict,
    string_keyed_table,
    use_batch_consumer,
)
from processor.worker.lag import ConsumerLagCollector
from processor.worker.recovery_guard import RecoveryGuard, RecoveryGuardCollector
from processor.worker.sla_stage import SlaStage, attach_sla_stage
from processor.worker.tables import ChangelogWriter
from processor.worker.window_stage import attach_window_stage

__all__ = ["WorkerApp", "build_worker", "metrics_page", "run_worker", "static_member_id"]

log = logging.getLogger("msgkpi.worker")

EXPIRY_SCAN_PER_BATCH = 500
"""Conversations checked for idle expiry after each batch (a full round spans many batches)."""
EXIT_NO_BROKER = 69
"""Exit status (EX_UNAVAILABLE) of a worker that could not reach Kafka at start-up."""
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
"""aiohttp refuses a charset in content_type; UTF-8 is the text format's default."""


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """The Faust app and the pieces tests and the CLI reach into."""

    app: faust.App
    registry: CollectorRegistry
    processor: EventProcessor
    metrics: WorkerMetrics


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka_security.faust_credentials(),
        topic_replication_factor=settings.replication_factor,
        store="memory://",
        # Exactness comes from the idempotent design (docs/kpis.md, "Which numbers are exact"),
        # tested with SIGKILL on the real broker; not from Kafka transactions.
        processing_guarantee="at_least_once",
        datadir=settings.worker_data_dir,
        web_port=settings.worker_port,
        web_bind=settings.worker_host,
        web_host=settings.worker_host,
        topic_partitions=settings.topics.events_partitions,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        broker_max_poll_records=settings.batch_max,
        consumer_group_instance_id=static_member_id(settings),
        stream_wait_empty=False,
    )


def static_member_id(settings: Settings) -> str | None:
    """Kafka's `group.instance.id` for `MSGKPI_WORKER_INSTANCE_ID`, with the worker's web
    address in it. A static member that rejoins is handed its previous assignment as the group
    leader wrote it, with the member's address at the time; Faust's assignor asserts that this
    address is still its own, and a worker restarted under the same id on another port never
    got partitions (the assertion ends aiokafka's coordinator routine). With the address in the
    id, such a restart is a new member: its partitions come after the session timeout."""
    if settings.worker_instance_id is None:
        return None
    return f"{settings.worker_instance_id}@{settings.worker_host}:{settings.worker_port}"


def build_worker(
    settings: Settings, registry: CollectorRegistry, policies: PolicySet | None = None
) -> WorkerApp:
    """Wire the Faust app: topics, the conversation table, the agent and the /metrics page.
    SLA targets of `policies` become histogram bucket edges, so 'share within target' is exact."""
    app = _faust_app(settings)
    use_batch_consumer(app)
    # No Faust view (app index, /router/, /table/{name}/{key}/, stats): they would show
    # conversation state to anyone who can scrape the port. Only the pages below are served.
    app.web.blueprints = BlueprintManager([])
    partitions = settings.topics.events_partitions
    events = app.topic(
        settings.topics.events, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw", partitions=partitions,
    )
    dlq = app.topic(
        settings.topics.dlq, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw",
    )
    conversations = string_keyed_table(app, "conversations", partitions, ConversationCodec())
    changelog = ChangelogWriter(conversations)
    checkpoint = Checkpoint([changelog])
    metrics = WorkerMetrics(
        registry,
        sla_targets_s=policies.targets_s() if policies else (),
        max_agents=settings.max_agent_labels,
    )
    awaiting = AwaitingIndex()
    registry.register(AwaitingCollector(awaiting, metrics.channel_label))
    # The processor reads and writes the table's local store directly; each batch queues its
    # changed conversations, and the checkpoint hands each to the changelog once before the
    # batches' offsets are acknowledged to Faust (processor.worker.checkpoint).
    # SLA: the stage observes every applied event; its timer publishes at-risk/breach events.
    local_conversations = local_dict(conversations)
    sla = SlaStage(policies or PolicySet(), local_conversations, registry,
                   channel_label=metrics.channel_label)
    processor = EventProcessor(local_conversations, metrics, awaiting, settings.grace_ms,
                               observer=sla, reopen_window_ms=settings.reopen_window_ms)
    registry.register(ConsumerLagCollector(app, settings.topics.events,
                                           processor.partition_next_offset))
    # Held while a batch is processed (until its facts are acknowledged) and while the
    # checkpoint commits: no conversation may reach the changelog while its batch's facts are
    # not yet acknowledged (after a crash those events would be duplicates, their facts lost).
    unsettled = asyncio.Lock()
    attach_sla_stage(app, settings, sla, processor, conversations, changelog, checkpoint,
                     unsettled)
    windows = attach_window_stage(app, settings, registry, processor, unsettled)
    guard = DeliveryGuard(KafkaRanges(settings.kafka_bootstrap, settings.app_id,
                                      settings.topics.events, settings.kafka_security))
    registry.register(DeliveryCollector([guard, windows.guard]))
    registry.register(BatchCollector(batch_consumer(app)))
    registry.register(CheckpointCollector({"conversations": checkpoint,
                                           "windows": windows.checkpoint}))
    for internal in (windows.facts, *(table.changelog_topic for table in app.tables.values())):
        internal.config = {**internal.config, **settings.topic_configs()}  # min.insync.replicas

    async def process(records: list[Record]) -> None:
        """One batch, completed by the guard (the caller holds `unsettled`): state, facts
        (acknowledged), the DLQ, and the changed conversations queued for the checkpoint."""
        outcome = processor.process_batch(records)
        await windows.send_deltas(outcome.deltas)
        for conversation_id, stored in outcome.changed.items():
            changelog.write(stored.partition, conversation_id, stored)
        # Here, after the batch's changes, so no batch is half-way between its facts and its
        # changelog writes for a conversation dropped now.
        for conversation_id, partition in processor.expire_idle(EXPIRY_SCAN_PER_BATCH):
            changelog.write(partition, conversation_id, None)
        rejected = [await dlq.send(key=records[index].key, force=True,
                                   value=_dlq_record(events.get_topic_name(), records[index],
                                                     reason))
                    for index, reason in outcome.rejected]
        await asyncio.gather(*rejected)

    async def process_fetched(records: list[Record]) -> None:
        """Each fetch's events, as one batch (see faust_seams)."""
        async with unsettled:
            await guard.process(app, records, process, checkpoint.hold)
            await checkpoint.commit_if_due()

    deliver_batches(app, events, process_fetched, checkpoint.hold)

    @app.timer(CHECKPOINT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def commit_when_idle() -> None:
        """Batches commit as they go; this covers the last ones before a pause."""
        async with unsettled:
            await checkpoint.commit_if_due()

    @app.timer(DELIVERY_CHECK_S)  # type: ignore[untyped-decorator]
    async def process_dropped_tails() -> None:
        try:
            async with unsettled:
                await guard.process_stalled(app, process, checkpoint.hold)
        except Exception:  # an exception would end Faust's timer for good
            log.exception("delivery check failed")

    recovery_guard = RecoveryGuard(app)
    registry.register(RecoveryGuardCollector(recovery_guard))
    batch_consumer(app).recovery_checks.append(recovery_guard.check)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def reset_delivery(sender: Any, assigned: set[Any], **_: Any) -> None:
        guard.reset(tp.partition for tp in assigned if tp.topic == settings.topics.events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        async with unsettled:  # not while a batch is half-way
            await checkpoint.revoke()  # the state of what was processed here is kept
            gone = processor.forget_partitions(
                {tp.partition for tp in revoked if tp.topic == settings.topics.events}
            )
            guard.reset(tp.partition for tp in revoked if tp.topic == settings.topics.events)
        log.info("partitions revoked: dropped %d conversations from memory", gone)

    @conversations.on_recover  # type: ignore[untyped-decorator]
    async def reindex_after_rebalance() -> None:
        processor.rebuild_awaiting()
        processor.recover_newest_times()
        log.info("conversation table ready: %d conversations owned", len(conversations))

    @app.page("/metrics")
    class MetricsPage(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics_page(registry, request.rel_url.query.getall("name[]", [])),
                              content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    class HealthPage(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    return WorkerApp(app, registry, processor, metrics)


def metrics_page(registry: CollectorRegistry, names: list[str]) -> bytes:
    """The exposition text; with `name[]` parameters (as prometheus_client's own handler
    accepts them) only those series, e.g. for a poller that needs one counter."""
    if names:
        return generate_latest(registry.restricted_registry(names))
    return generate_latest(registry)


def _timestamp_ms(seconds: float | None) -> int | None:
    return None if not seconds else int(seconds * 1000)


def _dlq_record(topic: str, record: Record, rejected: Rejected) -> bytes:
    return orjson.dumps({
        "reason": rejected.reason,
        "error": rejected.error,
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "value": (record.value or b"").decode("utf-8", errors="replace"),
        "rejected_at_ms": int(time.time() * 1000),
    })


def run_worker(settings: Settings) -> int:
    """`msgkpi worker`: create the topics if needed, then run until SIGINT/SIGTERM."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        check_faust_version()
        policies = load_policy_file(settings.config_path) if settings.config_path else None
    except ConfigError as exc:
        print(f"msgkpi worker: configuration error: {exc}", file=sys.stderr)
        return 2
    # Until Faust configures logging, aiokafka's connection errors would reach stderr through
    # logging's last-resort handler, beside our one-line message.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    try:
        asyncio.run(ensure_settings_topics(settings, worker=True))
    except TopicsUnavailable as exc:
        print(f"msgkpi worker: no Kafka broker reachable: {exc}", file=sys.stderr)
        return EXIT_NO_BROKER
    except KafkaAuthFailed as exc:
        print(f"msgkpi worker: {exc}", file=sys.stderr)
        return EXIT_KAFKA_AUTH
    worker_app = build_worker(settings, CollectorRegistry(), policies)
    log.info("worker metrics on http://%s:%d/metrics", settings.worker_host,
             settings.worker_port)
    worker = faust.Worker(worker_app.app, loglevel=settings.log_level, quiet=True)
    # Faust's terminal spinner adds a DEBUG-level handler to the root logger, which makes
    # every library's debug() build a record: a third of the CPU at full load.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
