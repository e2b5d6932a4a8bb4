"""Webhook to metric latency through the real gateway and worker, at fixed request rates.

A gateway and a worker run on fresh topics. For each rate, one canonical event per request is
posted on an open-loop schedule (request i leaves at start + i / rate, whatever the answers
before it) for `--seconds`, while the worker's `msgkpi_worker_events_total` is polled every
5 ms. Event i's latency is the time from its request leaving to the first poll that counts i
events (events of one conversation stay in order; across partitions the worker may finish them
out of order, so this is the latency of "the i-th event processed"), which includes the
gateway, Kafka's acknowledgement, the worker's fetch and processing, and /metrics. Prints p50
and p99 per rate; `--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from bisect import bisect_left
from pathlib import Path

import aiohttp
import orjson

from bench.gateway_throughput import _wait_ready
from bench.results import publish, row

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
COUNTER = "/metrics?name%5B%5D=msgkpi_worker_events_total"


def _event(run: str, i: int) -> bytes:
    author = "customer" if i % 2 == 0 else "agent"
    return orjson.dumps({
        "event_id": f"{run}-{i}", "type": "message", "channel": "whatsapp",
        "conversation_id": f"{run}-c{i // 2 % 2000}", "occurred_at": int(time.time() * 1000),
        "author": author, **({"agent_id": "agent-1"} if author == "agent" else {})})


async def _count(session: aiohttp.ClientSession, worker: str) -> int:
    async with session.get(worker + COUNTER) as response:
        match = re.search(r"^msgkpi_worker_events_total (\S+)$", await response.text(),
                          re.MULTILINE)
    return int(float(match.group(1))) if match else 0


async def _run_rate(gateway: str, worker: str, rate: int, seconds: float,
                    run: str) -> tuple[list[float], float]:
    """Latencies in s, and the rate the gateway actually answered."""
    total = int(rate * seconds)
    sent_at: list[float] = [0.0] * total
    polls: list[tuple[float, int]] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        base = await _count(session, worker)

        async def post(i: int) -> None:
            nonlocal failures
            sent_at[i] = time.perf_counter()
            async with session.post(gateway + "/webhooks/canonical", data=_event(run, i),
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                failures += response.status != 200

        async def poll(until: int) -> None:
            while True:
                count = await _count(session, worker) - base
                polls.append((time.perf_counter(), count))
                if count >= until:
                    return
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll(total))
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        answered = total / (time.perf_counter() - start)
        await asyncio.wait_for(poller, timeout=120)
    if failures:
        raise SystemExit(f"{failures} requests were not answered 200")
    counts = [count for _, count in polls]
    latencies = [polls[bisect_left(counts, i + 1)][0] - sent_at[i] for i in range(total)]
    return latencies, answered


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=8299)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    prefix = f"bench-lat-{uuid.uuid4().hex[:8]}"
    out = REPO / ".cache" / "bench"
    env = {**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": BOOTSTRAP, "MSGKPI_TOPIC_PREFIX": prefix,
           "MSGKPI_APP_ID": f"{prefix}-worker", "MSGKPI_GATEWAY_PORT": str(args.port),
           "MSGKPI_WORKER_PORT": str(args.port + 1), "MSGKPI_LOG_LEVEL": "warning",
           "MSGKPI_WORKER_DATA_DIR": str(out / prefix)}
    msgkpi = str(REPO / ".venv" / "bin" / "msgkpi")
    gateway = _start([msgkpi, "gateway"], env, out / f"{prefix}-gateway.log")
    worker = _start([msgkpi, "worker"], env, out / f"{prefix}-worker.log")
    gateway_url = f"http://127.0.0.1:{args.port}"
    worker_url = f"http://127.0.0.1:{args.port + 1}"
    figures = []
    try:
        _wait_ready(gateway_url + "/readyz", gateway)
        _wait_ready(worker_url + "/metrics", worker)
        asyncio.run(_run_rate(gateway_url, worker_url, 100, 3, f"{prefix}-warm"))
        for rate in (int(r) for r in args.rates.split(",")):
            latencies, answered = asyncio.run(
                _run_rate(gateway_url, worker_url, rate, args.seconds, f"{prefix}-{rate}"))
            cuts = statistics.quantiles(latencies, n=100)
            figures.append((rate, answered, cuts[49] * 1000, cuts[98] * 1000))
            print(f"{rate:>5} events/s offered, {answered:,.0f} answered: "
                  f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms")
    finally:
        for process in (gateway, worker):
            process.terminate()
            process.wait(timeout=30)
    publish([row(rate, f"{answered:,.0f}", f"{p50:.0f}", f"{p99:.0f}")
             for rate, answered, p50, p99 in figures], args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
