"""Worker throughput on a preloaded topic, beside a bare aiokafka consumer in the same run.

1. Preload N realistic canonical events (the simulator's generator) into a fresh topic.
2. Baseline: a bare aiokafka consumer reads and JSON-parses every record.
3. Worker: `msgkpi worker` (a real subprocess, its own consumer group) processes the same
   topic; its rate is measured from its own counter, from the first processed event to the
   last, so start-up and the group join are not counted.
Prints both rates and their ratio; `--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processor.config import Topics
from processor.kafka_security import KafkaSecurity
from processor.topics import ensure_topics
from processor.traffic.scenario import Scenario, generate_events

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
SECURITY = KafkaSecurity.from_env(os.environ)
"""The same MSGKPI_KAFKA_SECURITY_PROTOCOL, _SASL_* and _SSL_* settings as msgkpi itself."""


def _events(count: int) -> list[tuple[bytes, bytes]]:
    start_ms = int(time.time() * 1000) - 24 * 3600 * 1000
    scenario = Scenario(seed=7, start_ms=start_ms, run_id="bench", conversations_per_s=5.0)
    records = []
    for scheduled in generate_events(scenario):
        event = scheduled.event
        records.append((event.conversation_id.encode(), event.to_json()))
        if len(records) == count:
            break
    return records


async def _preload(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=20,
        max_batch_size=512 * 1024, **SECURITY.aiokafka_options(),
    )
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _bare_consumer_rate(topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False, **SECURITY.aiokafka_options(),
    )
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                if started is None:
                    started = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                    seen += 1
        assert started is not None
        return expected / (time.perf_counter() - started)
    finally:
        await consumer.stop()


COUNTER_URL = "http://127.0.0.1:{port}/metrics?name%5B%5D=msgkpi_worker_events_total"
"""Only the counter the rate is taken from: the full page of a busy worker costs milliseconds
to render, and the bench polls 20 times a second (Prometheus scrapes every 15 s)."""


def _events_processed(port: int) -> float:
    try:
        with urllib.request.urlopen(COUNTER_URL.format(port=port), timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return -1.0
    match = re.search(r"^msgkpi_worker_events_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _rate_of(command: list[str], env: dict[str, str], log_path: Path, expected: int, port: int,
             timeout_s: float) -> float:
    """Run `command`, poll its msgkpi_worker_events_total, and measure the rate from the first
    processed record to the last."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        first_at = None
        first_count = 0.0
        while time.monotonic() < deadline:
            count = _events_processed(port)
            now = time.perf_counter()
            if count > 0 and first_at is None:
                first_at, first_count = now, count
            if count >= expected and first_at is not None:
                return (count - first_count) / max(now - first_at, 1e-9)
            time.sleep(0.05)
        raise SystemExit(
            f"processed {_events_processed(port)} of {expected} in time; see {log_path}"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def _faust_noop_rate(topic: str, expected: int, port: int, timeout_s: float) -> float:
    env = {**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": BOOTSTRAP}
    command = [sys.executable, str(REPO / "bench" / "faust_noop.py"), topic, str(port)]
    return _rate_of(command, env, REPO / ".cache" / "bench" / f"{topic}-noop.log", expected,
                    port, timeout_s)


def _worker_rate(prefix: str, expected: int, port: int, timeout_s: float) -> float:
    env = {
        **os.environ, "MSGKPI_TOPIC_PREFIX": prefix, "MSGKPI_APP_ID": f"{prefix}-worker",
        "MSGKPI_WORKER_PORT": str(port), "MSGKPI_SESSION_TIMEOUT_S": "10",
        "MSGKPI_WORKER_DATA_DIR": str(REPO / ".cache" / "bench" / prefix),
        "MSGKPI_LOG_LEVEL": "warning",
    }
    command = [str(REPO / ".venv" / "bin" / "msgkpi"), "worker"]
    return _rate_of(command, env, REPO / ".cache" / "bench" / f"{prefix}.log", expected, port,
                    timeout_s)


def _record(results: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    with path.open("a") as out:
        out.write(results + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=6099)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topics = Topics.with_prefix(prefix)
    asyncio.run(ensure_topics(BOOTSTRAP, topics, security=SECURITY))
    records = _events(args.events)
    started = time.perf_counter()
    asyncio.run(_preload(topics.events, records))
    print(f"preloaded {len(records)} events into {topics.events} in "
          f"{time.perf_counter() - started:.1f}s")
    bare = asyncio.run(_bare_consumer_rate(topics.events, len(records)))
    print(f"bare aiokafka consumer + orjson: {bare:,.0f} events/s")
    noop = _faust_noop_rate(topics.events, len(records), args.port + 1, args.timeout)
    print(f"faust agent that only counts:    {noop:,.0f} events/s")
    worker = _worker_rate(prefix, len(records), args.port, args.timeout)
    print(f"msgkpi worker:                   {worker:,.0f} events/s")
    print(f"ratio worker / bare aiokafka:    {worker / bare:.3f}")
    print(f"ratio worker / faust no-op:      {worker / noop:.2f}")
    row = (f"| {datetime.now(UTC):%Y-%m-%d %H:%M} | {platform.machine()} {os.cpu_count()} cores, "
           f"Python {platform.python_version()} | {len(records)} | {bare:,.0f} | {noop:,.0f} | "
           f"{worker:,.0f} | {worker / bare:.3f} | {worker / noop:.2f} |")
    print(row)
    if args.record:
        _record(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
