"""Gateway requests/s for signed WhatsApp webhooks, beside a bare aiohttp handler that only
answers 200, with the same load generator in the same run.

The gateway (`msgkpi gateway`, a real subprocess on the real broker) verifies each request's
X-Hub-Signature-256 on the raw body, normalizes it and answers only after Kafka acknowledged
the event (acks=all). The load generator keeps `--connections` requests in flight for
`--seconds` against each server in turn; every body is a distinct inbound message. Prints both
rates, the ratio and latency percentiles; `--record` appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp

from bench.results import publish, row
from processor.traffic.samples import whatsapp_inbound

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
SECRET = secrets.token_hex(16)


def _requests(count: int) -> list[tuple[dict[str, str], bytes]]:
    now_s = int(time.time())
    return [whatsapp_inbound(SECRET, wa_id=f"1650555{i % 5000:04d}", wamid=f"wamid.bench{i}",
                             text="Hello, where is my order?", timestamp_s=now_s)
            for i in range(count)]


async def _load(url: str, bodies: list[tuple[dict[str, str], bytes]], connections: int,
                seconds: float) -> tuple[float, list[float], int]:
    """(requests/s, latencies in s, non-2xx answers)."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            headers, body = bodies[next(counter) % len(bodies)]
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready in {timeout_s}s")


def _measure(command: list[str], env: dict[str, str], port: int, log: Path,
             bodies: list[tuple[dict[str, str], bytes]], args: argparse.Namespace,
             ) -> tuple[float, list[float], int]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        url = f"http://127.0.0.1:{port}/webhooks/whatsapp"
        asyncio.run(_load(url, bodies, args.connections, 2.0))  # warm-up
        return asyncio.run(_load(url, bodies, args.connections, args.seconds))
    finally:
        process.terminate()
        process.wait(timeout=30)


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000)[int(share * 1000) - 1] if len(values) > 1 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    bodies = _requests(20_000)
    out = REPO / ".cache" / "bench"
    bare = _measure([sys.executable, str(REPO / "bench" / "peers" / "bare_aiohttp.py"),
                     str(args.port + 1)], dict(os.environ), args.port + 1,
                    out / "bare-aiohttp.log", bodies, args)
    prefix = f"bench-gw-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": BOOTSTRAP, "MSGKPI_TOPIC_PREFIX": prefix,
           "MSGKPI_GATEWAY_PORT": str(args.port), "MSGKPI_WHATSAPP_SECRET": SECRET,
           "MSGKPI_WHATSAPP_VERIFY_TOKEN": secrets.token_hex(8),
           "MSGKPI_LOG_LEVEL": "warning"}
    gateway = _measure([str(REPO / ".venv" / "bin" / "msgkpi"), "gateway"], env, args.port,
                       out / f"{prefix}.log", bodies, args)
    for name, (rate, latencies, failures) in (("bare aiohttp 200", bare),
                                              ("msgkpi gateway", gateway)):
        print(f"{name + ':':<20}{rate:>8,.0f} requests/s, p50 {_percentile(latencies, .5)*1000:.1f}"
              f" ms, p99 {_percentile(latencies, .99)*1000:.1f} ms, {failures} non-200")
    if gateway[2]:
        raise SystemExit("the gateway refused requests; see its log in .cache/bench/")
    ratio = gateway[0] / bare[0]
    print(f"ratio gateway / bare aiohttp: {ratio:.2f}")
    publish([row(args.connections, f"{bare[0]:,.0f}", f"{gateway[0]:,.0f}",
                 f"{_percentile(gateway[1], .5) * 1000:.1f}",
                 f"{_percentile(gateway[1], .99) * 1000:.1f}", f"{ratio:.2f}")], args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
