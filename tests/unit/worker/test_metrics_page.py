"""The worker's /metrics text, whole or restricted to the series named by `name[]`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from processor.export.worker_metrics import WorkerMetrics
from processor.worker.app import metrics_page


def test_whole_page_and_one_counter() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.events.inc(3)
    metrics.first_response.labels("whatsapp", "agent").observe(12.0)
    whole = metrics_page(registry, []).decode()
    assert "msgkpi_worker_events_total 3.0" in whole
    assert "msgkpi_first_response_seconds_bucket" in whole
    only = metrics_page(registry, ["msgkpi_worker_events_total"]).decode()
    samples = [line for line in only.splitlines() if not line.startswith("#")]
    assert samples == ["msgkpi_worker_events_total 3.0"]
