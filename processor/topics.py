"""Create msgkpi's Kafka topics explicitly (the broker runs with auto.create.topics.enable=false).

`ensure_topics` is idempotent: a topic that already exists is left as it is (a different
partition count is logged, never changed, because repartitioning would move conversations).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from processor.config import Settings, Topics
from processor.errors import MsgkpiError
from processor.kafka_security import KafkaSecurity, check_credentials

__all__ = [
    "DLQ_PARTITIONS",
    "KPI_PARTITIONS",
    "SLA_PARTITIONS",
    "TopicSpec",
    "TopicsUnavailable",
    "ensure_settings_topics",
    "ensure_topics",
    "facts_topic",
    "topic_specs",
]

log = logging.getLogger(__name__)

KPI_PARTITIONS: Final = 3
"""Window snapshots, keyed by channel/window: low volume."""
SLA_PARTITIONS: Final = 3
"""Breach and at-risk events, keyed by conversation."""
DLQ_PARTITIONS: Final = 1
"""What could not be processed; rare, read by people."""


class TopicsUnavailable(MsgkpiError):
    """Kafka could not be reached, or refused to create a topic; retrying later may help."""

    retriable = True


class TopicSpec(NamedTuple):
    name: str
    partitions: int


def topic_specs(topics: Topics) -> list[TopicSpec]:
    """The topics msgkpi needs, each with an explicit partition count."""
    return [
        TopicSpec(topics.events, topics.events_partitions),
        TopicSpec(topics.kpi, KPI_PARTITIONS),
        TopicSpec(topics.sla, SLA_PARTITIONS),
        TopicSpec(topics.dlq, DLQ_PARTITIONS),
    ]


def facts_topic(app_id: str) -> str:
    """The worker group's internal topic of fact deltas, read back by its window stage."""
    return f"{app_id}-facts"


async def ensure_topics(
    bootstrap: str,
    topics: Topics,
    *,
    timeout_s: float = 30.0,
    replication_factor: int = 1,
    topic_configs: Mapping[str, str] | None = None,
    security: KafkaSecurity | None = None,
    extra: Sequence[TopicSpec] = (),
) -> list[str]:
    """Create every missing msgkpi topic (and the `extra` ones); return the names created by
    this call.

    Raises `TopicsUnavailable` when Kafka does not answer within `timeout_s` or refuses, and
    `KafkaAuthFailed` when it refuses the credentials (or the TLS handshake fails).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    security = security or KafkaSecurity()
    await check_credentials(bootstrap, security, timeout_s)
    specs = [*topic_specs(topics), *extra]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="msgkpi-topics",
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
        **security.aiokafka_options(),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            created = await _create(admin, specs, replication_factor, topic_configs or {},
                                    timeout_s)
            await _wait_until_described(admin, [s for s in specs if s.name in created])
            await _warn_on_partition_mismatch(admin, specs)
            return created
    except TimeoutError:
        raise TopicsUnavailable(
            f"Kafka at {bootstrap} did not answer within {timeout_s}s"
        ) from None
    except KafkaError as exc:
        raise TopicsUnavailable(f"could not create topics on {bootstrap}: {exc!r}") from exc
    finally:
        await _close(admin)


async def ensure_settings_topics(settings: Settings, *, timeout_s: float = 30.0,
                                 worker: bool = False) -> list[str]:
    """`ensure_topics` with the deployment's bootstrap, security, replication and configs;
    for a worker, its group's facts topic too. Faust would declare that one itself, but a
    moment before subscribing: under load the subscription then missed the new topic for good
    and the windows never saw a fact."""
    extra = [TopicSpec(facts_topic(settings.app_id), settings.topics.events_partitions)]
    return await ensure_topics(
        settings.kafka_bootstrap, settings.topics, timeout_s=timeout_s,
        replication_factor=settings.replication_factor,
        topic_configs=settings.topic_configs(), security=settings.kafka_security,
        extra=extra if worker else (),
    )


async def _create(
    admin: AIOKafkaAdminClient,
    specs: list[TopicSpec],
    replication_factor: int,
    topic_configs: Mapping[str, str],
    timeout_s: float,
) -> list[str]:
    new_topics = [NewTopic(s.name, s.partitions, replication_factor,
                           topic_configs=dict(topic_configs)) for s in specs]
    response = await admin.create_topics(new_topics, timeout_ms=int(timeout_s * 1000))
    created = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code == 0:
            created.append(name)
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        message = entry[2] if len(entry) > 2 else ""
        raise error(f"{name}: {message}")
    if created:
        log.info("created Kafka topics: %s", ", ".join(created))
    return created


async def _wait_until_described(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Return once Kafka's metadata shows every new topic with all its partitions: a topic is
    not usable the moment CreateTopics answers (under load its metadata lags), and a producer
    or consumer started right away would see no partitions. Bounded by the caller's timeout."""
    pending = {s.name: s.partitions for s in specs}
    while pending:
        described = await admin.describe_topics(list(pending))
        for meta in described:
            if meta.get("error_code", 0) == 0 and len(meta["partitions"]) == pending.get(
                    meta["topic"]):
                pending.pop(meta["topic"], None)
        if pending:
            await asyncio.sleep(0.1)


async def _warn_on_partition_mismatch(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec]
) -> None:
    described = await admin.describe_topics([s.name for s in specs])
    counts = {meta["topic"]: len(meta["partitions"]) for meta in described}
    for spec in specs:
        have = counts.get(spec.name)
        if have is not None and have != spec.partitions:
            log.warning(
                "topic %s has %d partitions, msgkpi expects %d; left unchanged",
                spec.name, have, spec.partitions,
            )


async def _close(admin: AIOKafkaAdminClient) -> None:
    try:
        async with asyncio.timeout(5.0):
            await admin.close()
    except (TimeoutError, KafkaError, OSError) as exc:
        log.warning("closing the Kafka admin client failed: %r", exc)
