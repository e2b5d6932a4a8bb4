"""Worker throughput on a preloaded topic, beside its peers on the same topic in the same run.

1. Preload N realistic canonical events (the simulator's generator) into a fresh topic.
2. Bare aiokafka: one consumer reads and JSON-parses every record (the client's ceiling).
3. Faust no-op: a Faust agent that only counts (the framework's ceiling).
4. Plain Faust app: one Table of conversation state, the peers' minimal FRT/reply/resolution
   state machine (bench/peers/).
5. Quix Streams: the same state machine as keyed state, from a venv of its own under .cache/
   (made here on first use; never a project dependency).
6. `msgkpi worker` (a real subprocess, its own consumer group).
Each process's rate is taken from its own counter, from the first processed event to the last,
so start-up and the group join are not counted. Prints the rates and the worker's ratios;
`--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.results import publish, row
from processor.config import Topics
from processor.kafka_security import KafkaSecurity
from processor.topics import ensure_topics
from processor.traffic.scenario import Scenario, generate_events

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / "bench" / "peers"
BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
QUIX_VENV = REPO / ".cache" / "bench-quix-venv"
QUIX_REQUIREMENT = "quixstreams==3.28.*"
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
            if process.poll() is not None:
                raise SystemExit(f"{command[1]} exited with {process.returncode}; see {log_path}")
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


def _peer_rate(script: Path, python: str, topic: str, name: str, expected: int, port: int,
               timeout_s: float) -> float:
    env = {**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": BOOTSTRAP}
    data_dir = REPO / ".cache" / "bench" / f"{topic}-{name}"
    command = [python, str(script), topic, str(port), str(data_dir)]
    return _rate_of(command, env, REPO / ".cache" / "bench" / f"{topic}-{name}.log", expected,
                    port, timeout_s)


def _quix_python() -> str:
    """The Quix Streams peer's interpreter: a venv of its own, made once."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {QUIX_VENV} ({QUIX_REQUIREMENT}) for the Quix Streams peer")
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT, "orjson"],
                   check=True)
    return str(python)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=6099)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    quix_python = _quix_python()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topics = Topics.with_prefix(prefix)
    asyncio.run(ensure_topics(BOOTSTRAP, topics, security=SECURITY))
    records = _events(args.events)
    started = time.perf_counter()
    asyncio.run(_preload(topics.events, records))
    count = len(records)
    print(f"preloaded {count} events into {topics.events} in "
          f"{time.perf_counter() - started:.1f}s")
    rates = {"bare aiokafka + orjson": asyncio.run(_bare_consumer_rate(topics.events, count))}
    peers = (("faust no-op", PEERS / "faust_noop.py", sys.executable),
             ("plain Faust app, one Table", PEERS / "faust_state.py", sys.executable),
             ("Quix Streams, keyed state", PEERS / "quix_state.py", quix_python))
    for offset, (name, script, python) in enumerate(peers, start=1):
        rates[name] = _peer_rate(script, python, topics.events, script.stem, count,
                                 args.port + offset, args.timeout)
        print(f"{name + ':':<34}{rates[name]:>10,.0f} events/s")
    worker = rates["msgkpi worker"] = _worker_rate(prefix, count, args.port, args.timeout)
    print(f"{'msgkpi worker:':<34}{worker:>10,.0f} events/s")
    for name, rate in rates.items():
        if name != "msgkpi worker":
            print(f"ratio worker / {name + ':':<32}{worker / rate:.3f}")
    publish([row(f"{count:,}", *(f"{rate:,.0f}" for rate in rates.values()),
                 f"{worker / rates['Quix Streams, keyed state']:.2f}",
                 f"{worker / rates['plain Faust app, one Table']:.2f}")], args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
