"""Peer: a Faust agent that only counts the records of a topic, the framework's own ceiling on
this machine. Usage: faust_noop.py TOPIC PORT [DATADIR] (DATADIR is ignored)"""

from __future__ import annotations

import sys
from pathlib import Path

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root
from bench.peers.faust_app import faust_peer, run_with_count_page


def main() -> int:
    topic_name, port = sys.argv[1], int(sys.argv[2])
    app = faust_peer(f"bench-noop-{topic_name}", port)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    count = 0

    @app.agent(topic)
    async def consume(stream: faust.StreamT[bytes]) -> None:
        nonlocal count
        async for _ in stream:
            count += 1

    run_with_count_page(app, lambda: count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
