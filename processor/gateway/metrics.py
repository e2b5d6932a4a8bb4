"""The gateway's Prometheus metrics, built once from a registry passed in.

Label values come from bounded sets only: channels outside the known list become "other",
routes are route templates, never raw paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry

from processor.config import CHANNELS
from processor.export.plain_metrics import PlainCounter, PlainHistogram

__all__ = [
    "KNOWN_CHANNELS",
    "PRODUCE_ERROR_REASONS",
    "REJECT_REASONS",
    "REQUEST_BUCKETS_S",
    "GatewayMetrics",
    "channel_label",
]

KNOWN_CHANNELS: Final = frozenset((*CHANNELS, "canonical"))
REJECT_REASONS: Final = ("bad_signature", "invalid", "too_large")
PRODUCE_ERROR_REASONS: Final = ("timeout", "kafka_error", "not_connected", "stopped")
REQUEST_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def channel_label(name: str | None) -> str:
    """The channel as a label value: a known channel name, else "other"."""
    return name if name in KNOWN_CHANNELS else "other"


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    """Plain families (processor.export.plain_metrics): the gateway answers every request on
    one event loop, which also serves /metrics, and each request touches three series."""

    requests: PlainCounter
    request_seconds: PlainHistogram
    events: PlainCounter
    ignored: PlainCounter
    produce_errors: PlainCounter
    rejected: PlainCounter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        metrics = cls(
            requests=PlainCounter(
                registry, "msgkpi_gateway_requests", "HTTP requests answered",
                ["route", "channel", "status"],
            ),
            request_seconds=PlainHistogram(
                registry, "msgkpi_gateway_request_seconds", "Time to answer an HTTP request",
                ["route"], buckets=REQUEST_BUCKETS_S,
            ),
            events=PlainCounter(
                registry, "msgkpi_gateway_events", "Canonical events acknowledged by Kafka",
                ["channel"],
            ),
            ignored=PlainCounter(
                registry, "msgkpi_gateway_ignored", "Delivered items msgkpi does not use",
                ["channel"],
            ),
            produce_errors=PlainCounter(
                registry, "msgkpi_gateway_produce_errors",
                "Writes to Kafka that were not acknowledged",
                ["reason"],
            ),
            rejected=PlainCounter(
                registry, "msgkpi_gateway_rejected", "Webhook deliveries refused",
                ["channel", "reason"],
            ),
        )
        for reason in PRODUCE_ERROR_REASONS:
            metrics.produce_errors.labels(reason)  # export zeros, so rate() works from start
        return metrics
