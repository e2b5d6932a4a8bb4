"""Peer: Quix Streams doing the peers' stateful job (`state_machine.step`) with keyed state
(`sdf.update(fn, stateful=True)`, RocksDB with a changelog, its default). Runs from its own venv
(`.cache/bench-quix-venv`, made by bench/worker_throughput.py); serves its count on /metrics.
Usage: quix_state.py TOPIC PORT STATE_DIR"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root
from bench.peers.counter_page import serve_count
from bench.peers.state_machine import step


def main() -> int:
    topic_name, port, state_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = Application(
        broker_address=os.environ["MSGKPI_KAFKA_BOOTSTRAP"],
        consumer_group=f"bench-quix-{topic_name}", auto_offset_reset="earliest",
        state_dir=state_dir, loglevel="WARNING",
    )
    topic = app.topic(topic_name, value_deserializer="json")
    totals: dict[str, float] = {}
    count = 0

    def apply(value: dict[str, Any], state: Any) -> None:
        nonlocal count
        state.set("conversation", step(state.get("conversation"), value, totals))
        count += 1

    serve_count(port, lambda: count)
    app.dataframe(topic).update(apply, stateful=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
