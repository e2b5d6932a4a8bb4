"""A Faust agent that only counts the records of a topic: the framework's own ceiling on this
machine, for comparison with the msgkpi worker. Serves its count on /metrics like the worker."""

from __future__ import annotations

import os
import sys

import faust
from faust.web import Request, Response, View

from processor.kafka_security import KafkaSecurity


def main() -> int:
    topic_name, port = sys.argv[1], int(sys.argv[2])
    app = faust.App(
        f"bench-noop-{topic_name}", broker=f"kafka://{os.environ['MSGKPI_KAFKA_BOOTSTRAP']}",
        broker_credentials=KafkaSecurity.from_env(os.environ).faust_credentials(),
        store="memory://", web_port=port, web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest", table_standby_replicas=0,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    count = 0

    @app.agent(topic)
    async def consume(stream: faust.StreamT[bytes]) -> None:
        nonlocal count
        async for _ in stream:
            count += 1

    @app.page("/metrics")
    class Count(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(f"msgkpi_worker_events_total {count}\n".encode(),
                              content_type="text/plain")

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
