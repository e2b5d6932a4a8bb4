"""Peer: a plain faust-streaming app doing the peers' stateful job (`state_machine.step`) with one
Table of conversation state (changelog-backed, as Faust does it by default). Serves its count
on /metrics like the worker. Usage: faust_state.py TOPIC PORT DATADIR"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import faust
import orjson
from faust.web import Request, Response, View

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root
from bench.peers.state_machine import step


def main() -> int:
    topic_name, port, datadir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = faust.App(
        f"bench-faust-state-{topic_name}",
        broker=f"kafka://{os.environ['MSGKPI_KAFKA_BOOTSTRAP']}",
        store="memory://", web_port=port, web_bind="127.0.0.1", datadir=datadir,
        consumer_auto_offset_reset="earliest", table_standby_replicas=0,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    conversations = app.Table("conversations", partitions=6)  # JSON keys and values
    totals: dict[str, float] = {}
    count = 0

    @app.agent(topic)
    async def consume(stream: faust.StreamT[bytes]) -> None:
        nonlocal count
        async for key, value in stream.items():
            conversation = key.decode()
            conversations[conversation] = step(conversations.get(conversation),
                                               orjson.loads(value), totals)
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
