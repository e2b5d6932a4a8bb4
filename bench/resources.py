"""CPU and memory of a running gateway and worker under simulated traffic (sizing figures for
docs/deploy.md and the requests/limits in deploy/k8s/).

Run against `make up` (its pid files name the processes), e.g.
    MSGKPI_GATEWAY_PORT=18080 MSGKPI_WORKER_PORT=16066 make up
    .venv/bin/python bench/resources.py --rate 10 --seconds 120 --conversations 20000
1. Webhook load: `msgkpi simulate` posts to the gateway for --seconds; the gateway's and the
   worker's CPU (cores, from /proc/<pid>/stat) and RSS are sampled every second.
2. Memory per conversation: --conversations fresh conversations (a simulator dry run) are
   replayed straight to Kafka; the worker's RSS growth once it has processed them all, divided
   by their number, is an upper bound of the memory one open conversation costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MSGKPI = REPO / ".venv" / "bin" / "msgkpi"
STATE_DIR = Path(os.environ.get("MSGKPI_CACHE_DIR", REPO / ".cache")) / "up"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Samples:
    """RSS (bytes) and cumulative CPU seconds of one process over time."""

    pid: int
    rss: list[int] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)

    def take(self) -> None:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        self.cpu.append((time.monotonic(), (int(fields[11]) + int(fields[12])) / TICKS))
        self.rss.append(int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE)

    def mean_cores(self) -> float:
        (t0, c0), (t1, c1) = self.cpu[0], self.cpu[-1]
        return (c1 - c0) / (t1 - t0)

    def peak_cores(self, window: int = 5) -> float:
        peaks = [(self.cpu[i][1] - self.cpu[i - window][1])
                 / (self.cpu[i][0] - self.cpu[i - window][0])
                 for i in range(window, len(self.cpu))]
        return max(peaks, default=0.0)


def pid_of(name: str) -> int:
    return int((STATE_DIR / f"{name}.pid").read_text().strip())


def worker_events(port: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics?name[]=msgkpi_worker_events_total"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("msgkpi_worker_events_total"):
                return float(line.split()[-1])
    return 0.0


def webhook_load(rate: float, seconds: int, gateway: Samples, worker: Samples,
                 worker_port: str) -> float:
    """Returns the events per second the worker processed meanwhile."""
    before = worker_events(worker_port)
    simulate = subprocess.Popen(
        [str(MSGKPI), "simulate", "--rate", str(rate), "--speed", "30", "--duration",
         str(seconds), "--transport", "canonical", "--progress", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while simulate.poll() is None:
        gateway.take()
        worker.take()
        time.sleep(1.0)
    return (worker_events(worker_port) - before) / (time.monotonic() - started)


def memory_per_conversation(conversations: int, worker: Samples, worker_port: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "events.jsonl"
        subprocess.run([str(MSGKPI), "simulate", "--dry-run", "--out", str(log), "--rate",
                        "100", "--duration", str(conversations / 100), "--speed", "30",
                        "--progress", "0"], check=True, stdout=subprocess.DEVNULL)
        events = sum(1 for _ in log.open("rb"))
        worker.take()
        rss_before = worker.rss[-1]
        target = worker_events(worker_port) + events
        subprocess.run([str(MSGKPI), "replay", "--no-progress", str(log)], check=True,
                       stderr=subprocess.DEVNULL)
        while worker_events(worker_port) < target:
            time.sleep(1.0)
        time.sleep(5.0)
        worker.take()
        return (worker.rss[-1] - rss_before) / conversations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="conversations per second")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--conversations", type=int, default=20_000)
    args = parser.parse_args()
    worker_port = os.environ.get("MSGKPI_WORKER_PORT", "6066")
    gateway, worker = Samples(pid_of("gateway")), Samples(pid_of("worker"))
    rate = webhook_load(args.rate, args.seconds, gateway, worker, worker_port)
    mib = 1024 * 1024
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"webhook load: {args.rate:g} conversations/s for {args.seconds} s, "
          f"worker processed {rate:.0f} events/s")
    for name, samples in (("gateway", gateway), ("worker", worker)):
        print(f"  {name}: CPU mean {samples.mean_cores():.2f} cores, 5 s peak "
              f"{samples.peak_cores():.2f}; RSS peak {max(samples.rss) / mib:.0f} MiB")
    per = memory_per_conversation(args.conversations, worker, worker_port)
    print(f"memory: {args.conversations} more open conversations added "
          f"{per * args.conversations / mib:.0f} MiB to the worker's RSS, {per / 1024:.1f} KiB "
          f"each (upper bound); worker RSS now {worker.rss[-1] / mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
