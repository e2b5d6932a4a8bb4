"""Peer: a plain faust-streaming app doing the peers' stateful job (`state_machine.step`) with one
Table of conversation state (changelog-backed, as Faust does it by default). Serves its count
on /metrics like the worker. Usage: faust_state.py TOPIC PORT DATADIR"""

from __future__ import annotations

import sys
from pathlib import Path

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root
from bench.peers.faust_app import faust_peer, run_with_count_page
from bench.peers.state_machine import step


def main() -> int:
    topic_name, port, datadir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = faust_peer(f"bench-faust-state-{topic_name}", port, datadir=datadir)
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

    run_with_count_page(app, lambda: count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
