"""Settings from the environment, built once in `main()` and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from processor.errors import ConfigError
from processor.kafka_security import KafkaSecurity

__all__ = ["CHANNELS", "Settings", "Topics"]

CHANNELS: Final = (
    "whatsapp", "messenger", "instagram", "telegram", "line", "wechat", "x", "chatwoot",
)
"""Platforms with a native adapter; `canonical` is always there besides them."""


@dataclass(frozen=True, slots=True)
class Topics:
    events: str = "msgkpi.events"
    kpi: str = "msgkpi.kpi"
    sla: str = "msgkpi.sla"
    dlq: str = "msgkpi.dlq"
    events_partitions: int = 6

    @classmethod
    def with_prefix(cls, prefix: str, events_partitions: int = 6) -> Topics:
        """`<prefix>.events` etc.: several independent deployments (or tests) on one cluster."""
        return cls(f"{prefix}.events", f"{prefix}.kpi", f"{prefix}.sla", f"{prefix}.dlq",
                   events_partitions)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(name, f"must be at least 1, got {value}")
    return value


def _min_insync_replicas(env: Mapping[str, str]) -> int | None:
    """Unset: the broker's default. It must not exceed the replication factor, or no write
    with acks=all could ever succeed."""
    if not env.get("MSGKPI_MIN_INSYNC_REPLICAS"):
        return None
    value = _positive_int(env, "MSGKPI_MIN_INSYNC_REPLICAS", 1)
    replication = _positive_int(env, "MSGKPI_REPLICATION_FACTOR", 1)
    if value > replication:
        raise ConfigError("MSGKPI_MIN_INSYNC_REPLICAS",
                          f"{value} is more than MSGKPI_REPLICATION_FACTOR ({replication}): "
                          "no write could be acknowledged")
    return value


def _windows(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("MSGKPI_WINDOWS", "5m,1h,24h")
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for name in names:
        number, unit = name[:-1], name[-1:]
        if unit not in "smhd" or not unit or not number.isdigit() or int(number) <= 0:
            raise ConfigError("MSGKPI_WINDOWS", f"{name!r} is not a window such as 5m, 1h, 24h")
    if not names:
        raise ConfigError("MSGKPI_WINDOWS", "needs at least one window size")
    return names


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults of the public contract."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    worker_port: int = 6066
    config_path: str | None = None
    topics: Topics = field(default_factory=Topics)
    max_body_bytes: int = 4 * 1024 * 1024
    """Meta sends bodies up to 3 MB; anything larger gets 413."""
    produce_timeout_s: float = 10.0
    """How long the gateway waits for Kafka's acknowledgement before answering 503."""
    grace_ms: int = 10 * 60 * 1000
    """Late events within this much event time are still placed in order."""
    reopen_window_ms: int = 72 * 3600 * 1000
    """First contact resolution: a resolved cycle must not reopen within this (event time)."""
    worker_data_dir: str = ".cache/worker"
    worker_host: str = "127.0.0.1"
    worker_instance_id: str | None = None
    """Kafka static group membership (`group.instance.id`): a worker restarted under the same
    id gets its partitions back at once instead of after the session timeout. Unique per
    worker (a StatefulSet pod name); unset: dynamic membership."""
    app_id: str = "msgkpi"
    session_timeout_s: float = 30.0
    """Consumer group session timeout; also bounds how long a dead worker holds partitions."""
    max_agent_labels: int = 500
    """Distinct agent label values on /metrics; further agents are exported as `other`."""
    log_level: str = "info"
    batch_max: int = 1000
    """Records the worker takes per fetch, its batch (each changed conversation is persisted
    once per batch). A batch is whatever one fetch brought: nothing waits for it to fill."""
    windows: tuple[str, ...] = ("5m", "1h", "24h")
    """Rolling event-time window sizes."""
    snapshot_interval_s: float = 5.0
    """How often windows are checked for closing and open-window snapshots are published."""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """MSGKPI_<CHANNEL>_SECRET by lower-case channel name; never logged."""
    verify_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """TLS and SASL of every Kafka client (gateway, worker, replay, topic creation)."""
    replication_factor: int = 1
    """Of the topics msgkpi and Faust create (events, kpi, sla, dlq, changelogs, facts)."""
    min_insync_replicas: int | None = None
    """Set on those topics when given; otherwise the broker's default applies."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        names = (*CHANNELS, "canonical")
        return cls(
            kafka_bootstrap=env.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            gateway_host=env.get("MSGKPI_GATEWAY_HOST", "127.0.0.1"),
            gateway_port=_int(env, "MSGKPI_GATEWAY_PORT", 8080),
            worker_port=_int(env, "MSGKPI_WORKER_PORT", 6066),
            config_path=env.get("MSGKPI_CONFIG") or None,
            topics=Topics.with_prefix(
                env.get("MSGKPI_TOPIC_PREFIX", "msgkpi"),
                _int(env, "MSGKPI_EVENTS_PARTITIONS", 6),
            ),
            max_body_bytes=_int(env, "MSGKPI_MAX_BODY_BYTES", 4 * 1024 * 1024),
            produce_timeout_s=_float(env, "MSGKPI_PRODUCE_TIMEOUT_S", 10.0),
            grace_ms=int(_float(env, "MSGKPI_GRACE_S", 600) * 1000),
            reopen_window_ms=int(_float(env, "MSGKPI_REOPEN_WINDOW_S", 72 * 3600) * 1000),
            worker_data_dir=env.get("MSGKPI_WORKER_DATA_DIR", ".cache/worker"),
            worker_host=env.get("MSGKPI_WORKER_HOST", "127.0.0.1"),
            worker_instance_id=env.get("MSGKPI_WORKER_INSTANCE_ID") or None,
            app_id=env.get("MSGKPI_APP_ID", "msgkpi"),
            session_timeout_s=_float(env, "MSGKPI_SESSION_TIMEOUT_S", 30.0),
            max_agent_labels=_int(env, "MSGKPI_MAX_AGENT_LABELS", 500),
            log_level=env.get("MSGKPI_LOG_LEVEL", "info").lower(),
            batch_max=_int(env, "MSGKPI_BATCH_MAX", 1000),
            windows=_windows(env),
            snapshot_interval_s=_float(env, "MSGKPI_SNAPSHOT_INTERVAL_S", 5.0),
            secrets={c: env[f"MSGKPI_{c.upper()}_SECRET"] for c in names
                     if env.get(f"MSGKPI_{c.upper()}_SECRET")},
            verify_tokens={c: env[f"MSGKPI_{c.upper()}_VERIFY_TOKEN"] for c in names
                           if env.get(f"MSGKPI_{c.upper()}_VERIFY_TOKEN")},
            kafka_security=KafkaSecurity.from_env(env),
            replication_factor=_positive_int(env, "MSGKPI_REPLICATION_FACTOR", 1),
            min_insync_replicas=_min_insync_replicas(env),
        )

    def topic_configs(self) -> dict[str, str]:
        """Topic-level settings for every topic msgkpi or Faust creates."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}
