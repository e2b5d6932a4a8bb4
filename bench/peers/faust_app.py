"""What the Faust peers share: the count page `make bench` polls, and running the worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from processor.kafka_security import KafkaSecurity


def faust_peer(name: str, port: int, **settings: Any) -> faust.App:
    return faust.App(name, broker=f"kafka://{os.environ['MSGKPI_KAFKA_BOOTSTRAP']}",
                     broker_credentials=KafkaSecurity.from_env(os.environ).faust_credentials(),
                     store="memory://", web_port=port, web_bind="127.0.0.1",
                     consumer_auto_offset_reset="earliest", table_standby_replicas=0,
                     **settings)


def run_with_count_page(app: faust.App, count: Callable[[], int]) -> None:
    """Serve `msgkpi_worker_events_total` on /metrics as the worker does, then run the app."""

    @app.page("/metrics")
    class Count(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(f"msgkpi_worker_events_total {count()}\n".encode(),
                              content_type="text/plain")

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
