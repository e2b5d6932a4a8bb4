"""The webhook gateway: HTTP in, canonical events to Kafka (msgkpi.events), health and metrics."""

from processor.gateway.app import create_app
from processor.gateway.metrics import GatewayMetrics
from processor.gateway.sink import EventSink, KafkaEventSink

__all__ = ["EventSink", "GatewayMetrics", "KafkaEventSink", "create_app"]
