"""Worker memory per open conversation, and time from a restart after SIGKILL to caught up.

1. A worker starts on fresh topics and settles; its resident memory is the empty baseline.
2. N conversations, each opened by one customer message (all waiting for a reply), are written
   to msgkpi.events; once the worker has processed all of them and settled, the memory above
   the baseline divided by N is the cost of one open conversation.
3. The worker is killed (SIGKILL) and started again on the same group and data directory; the
   time from the new process's start to caught up (table restored from its changelog, all N
   conversations waiting on /metrics again, lag 0 on every partition) is the restart time.
`--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.results import publish, row
from bench.worker_throughput import _preload
from processor.config import CHANNELS, Topics
from processor.topics import ensure_topics

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def _open_conversations(count: int) -> list[tuple[bytes, bytes]]:
    start_ms = int(time.time() * 1000) - 3600 * 1000
    records = []
    for i in range(count):
        conversation = f"scale-{i}"
        event = {"event_id": f"open-{i}", "type": "message", "channel": CHANNELS[i % 8],
                 "conversation_id": conversation, "occurred_at": start_ms + i % 3_000_000,
                 "author": "customer", "customer_id": f"customer-{i}"}
        records.append((conversation.encode(), orjson.dumps(event)))
    return records


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _sum(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text,
                                                    re.MULTILINE))


def _caught_up(port: int, waiting: int, partitions: int) -> bool:
    text = _metrics(port)
    lags = re.findall(r"^msgkpi_worker_consumer_lag\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return (len(lags) == partitions and all(float(lag) == 0 for lag in lags)
            and _sum(text, "msgkpi_awaiting_reply") == waiting)


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def _settled_rss(pid: int, seconds: float = 5.0) -> int:
    """The smallest of a few readings over `seconds` (after start-up or a burst, allocators
    and buffers settle)."""
    readings = []
    for _ in range(int(seconds / 0.5)):
        time.sleep(0.5)
        readings.append(_rss_bytes(pid))
    return min(readings)


def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout_s}s waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=6299)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    topics = Topics.with_prefix(prefix)
    asyncio.run(ensure_topics(BOOTSTRAP, topics))
    out = REPO / ".cache" / "bench"
    env = {**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": BOOTSTRAP, "MSGKPI_TOPIC_PREFIX": prefix,
           "MSGKPI_APP_ID": f"{prefix}-worker", "MSGKPI_WORKER_PORT": str(args.port),
           "MSGKPI_WORKER_DATA_DIR": str(out / prefix),
           "MSGKPI_LOG_LEVEL": os.environ.get("MSGKPI_LOG_LEVEL", "warning"),
           "MSGKPI_SESSION_TIMEOUT_S": "10", "MSGKPI_WORKER_INSTANCE_ID": f"{prefix}-0"}
    command = [str(REPO / ".venv" / "bin" / "msgkpi"), "worker"]

    def start(name: str) -> subprocess.Popen[bytes]:
        with (out / f"{prefix}-{name}.log").open("wb") as log:
            return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    out.mkdir(parents=True, exist_ok=True)
    worker = start("first")
    _until(lambda: _caught_up(args.port, 0, topics.events_partitions), 120, "an empty worker")
    empty = _settled_rss(worker.pid)
    asyncio.run(_preload(topics.events, _open_conversations(args.conversations)))
    _until(lambda: _caught_up(args.port, args.conversations, topics.events_partitions),
           args.timeout, f"{args.conversations} open conversations processed")
    full = _settled_rss(worker.pid)
    per_conversation = (full - empty) / args.conversations
    print(f"empty worker {empty / 2**20:.1f} MiB, with {args.conversations:,} open conversations "
          f"{full / 2**20:.1f} MiB: {per_conversation:,.0f} bytes per conversation")

    time.sleep(3)  # past a commit
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    started = time.perf_counter()
    worker = start("restarted")
    try:
        _until(lambda: _caught_up(args.port, args.conversations, topics.events_partitions),
               args.timeout, "the restarted worker to catch up")
        restart_s = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print(f"restart after SIGKILL to caught up: {restart_s:.1f} s")
    publish([row(f"{args.conversations:,}", f"{empty / 2**20:.1f}", f"{full / 2**20:.1f}",
                 f"{per_conversation:,.0f}", f"{restart_s:.1f}")], args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
