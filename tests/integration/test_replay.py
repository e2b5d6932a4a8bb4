"""`msgkpi replay` on the real broker: a log recorded by the simulator, posted live through a
gateway to deployment A and replayed from the file into deployment B, gives identical closed
KPI snapshots; Kafka down means exit 1 with a clear message, quickly; an invalid line with
--on-error stop means exit 2 and nothing written."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.config import Topics
from processor.events import event_from_dict
from processor.topics import KPI_PARTITIONS, ensure_topics
from tests.integration.exactness import (
    ENV,
    GRACE_S,
    REOPEN_WINDOW_S,
    SLA,
    WINDOWS,
    closed_snapshots,
    read_all,
)
from tests.integration.services import (
    MSGKPI,
    Deployment,
    Service,
    free_port,
    http_post,
    wait_until,
)
from tests.oracle.windowed import expected_windows

pytestmark = pytest.mark.integration

EVENTS_PARTITIONS = 6


def record_log(path: Path, seed: int) -> tuple[list[bytes], int]:
    """A simulator log (about 1000 events over 2 h of event time ending 30 min ago), plus
    every 25th line again five lines later: duplicates as a real recording has them."""
    start_ms = int(time.time() * 1000) - 9_000_000
    raw = path.with_suffix(".raw.jsonl")
    subprocess.run(
        [str(MSGKPI), "simulate", "--dry-run", "--seed", str(seed), "--run-id", f"rp{seed}",
         "--start", str(start_ms), "--duration", "10", "--speed", "720", "--rate", "15",
         "--out", str(raw)],
        check=True, timeout=120, capture_output=True,
    )
    lines = raw.read_bytes().splitlines()
    out: list[bytes] = []
    duplicates = 0
    for index, line in enumerate(lines):
        out.append(line)
        if index >= 5 and (index - 5) % 25 == 0:
            out.append(lines[index - 5])
            duplicates += 1
    path.write_bytes(b"\n".join(out) + b"\n")
    return out, duplicates


def replay(deployment: Deployment, *args: str, timeout: float = 120,
           **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MSGKPI), "replay", *args], env=deployment.env(**env), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def settled(worker: Service, deployment: Deployment, total: int,
            expected: set[tuple[str, str, int]]) -> dict[tuple[str, str, int], Any]:
    """Every record processed and every expected window emitted closed; the closed snapshots."""
    wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= total, 240,
               what="all events processed")
    topic = Topics.with_prefix(f"msgkpi-test-{deployment.tag}").kpi
    found: dict[tuple[str, str, int], Any] = {}

    def all_closed() -> bool:
        found.clear()
        found.update(closed_snapshots(asyncio.run(
            read_all(deployment.bootstrap, topic, KPI_PARTITIONS))))
        return expected <= set(found)

    with contextlib.suppress(AssertionError):  # the comparison below says what is missing
        wait_until(all_closed, 120, interval_s=2, what="every expected window closed")
    time.sleep(3)  # a few more snapshot intervals: anything extra would show up now
    found.clear()
    found.update(closed_snapshots(asyncio.run(
        read_all(deployment.bootstrap, topic, KPI_PARTITIONS))))
    return found


def leaf_diff(live: Any, replayed: Any, path: str = "") -> list[str]:
    """Where two snapshots differ: 'times.reply.agent.p50: 1.0 (live) != 2.0 (replay)'.
    Every value must be equal, to the last bit (sums are kept in whole milliseconds, so they
    do not depend on processing order)."""
    if isinstance(live, dict) and isinstance(replayed, dict):
        return [d for k in sorted(set(live) | set(replayed))
                for d in leaf_diff(live.get(k), replayed.get(k), f"{path}.{k}" if path else k)]
    return [] if live == replayed else [f"{path}: {live!r} (live) != {replayed!r} (replay)"]


def by_key(bootstrap: str, topic: str) -> dict[bytes, list[Any]]:
    records = asyncio.run(read_all(bootstrap, topic, EVENTS_PARTITIONS))
    grouped: dict[bytes, list[Any]] = defaultdict(list)
    for key, value in records:
        grouped[key].append(value)
    return dict(grouped)


def test_replaying_the_recorded_log_gives_the_live_snapshots(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    lines, duplicates = record_log(log, seed=21)
    events = [event_from_dict(orjson.loads(line)) for line in lines]
    expected = set(expected_windows(events, WINDOWS, GRACE_S * 1000, REOPEN_WINDOW_S * 1000, SLA))
    assert len(expected) > 50

    # (1) live: the log posted, in order, through a real gateway to deployment A
    live = Deployment(kafka_bootstrap, extra_env=ENV)
    asyncio.run(ensure_topics(kafka_bootstrap, Topics.with_prefix(f"msgkpi-test-{live.tag}")))
    gateway = Service(live, "gateway", free_port(), tmp_path, name="gateway-a")
    worker_a = Service(live, "worker", free_port(), tmp_path, name="worker-a")
    try:
        gateway.wait_http("/readyz")
        for start in range(0, len(lines), 100):
            body = b"[" + b",".join(lines[start:start + 100]) + b"]"
            status, answer = http_post(f"{gateway.url}/webhooks/canonical", body)
            assert status == 200, answer
        live_closed = settled(worker_a, live, len(lines), expected)
    finally:
        gateway.stop()
        worker_a.stop()

    # (2) replay: the same file written by `msgkpi replay` into deployment B (topics created
    # by the replay), then B's own worker
    replayed = Deployment(kafka_bootstrap, extra_env=ENV)
    began = time.monotonic()
    result = replay(replayed, str(log))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 60
    summary = [x for x in result.stderr.splitlines() if x.startswith("msgkpi replay: done:")]
    assert len(summary) == 1, result.stderr
    topic_b = Topics.with_prefix(f"msgkpi-test-{replayed.tag}").events
    assert (f"{len(lines)} lines read, {len(lines)} of {len(lines)} events written to "
            f"{topic_b}, 0 invalid lines, {duplicates} duplicate event ids") in summary[0]
    worker_b = Service(replayed, "worker", free_port(), tmp_path, name="worker-b")
    try:
        replay_closed = settled(worker_b, replayed, len(lines), expected)
    finally:
        worker_b.stop()

    # the events topics hold the same records, in the same order per conversation
    topic_a = Topics.with_prefix(f"msgkpi-test-{live.tag}").events
    assert by_key(kafka_bootstrap, topic_a) == by_key(kafka_bootstrap, topic_b)
    # and the closed snapshots are identical: same windows, same values
    assert expected <= set(live_closed), sorted(expected - set(live_closed))[:3]
    assert not [k for k in live_closed if k[0] == "conflict"]
    assert set(replay_closed) == set(live_closed), (
        sorted(set(live_closed) ^ set(replay_closed))[:5])
    differing = {key: diff for key, snapshot in live_closed.items()
                 if (diff := leaf_diff(snapshot, replay_closed[key]))}
    assert not differing, f"{len(differing)} windows differ, e.g. {list(differing.items())[:3]}"

    # an invalid line with --on-error stop: exit 2, the line named, nothing written
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join([*lines[:10], b'{"event_id": "x"}', *lines[10:20]]) + b"\n")
    before = sum(len(v) for v in by_key(kafka_bootstrap, topic_b).values())
    stopped = replay(replayed, str(bad))
    assert stopped.returncode == 2, stopped.stderr
    assert "bad.jsonl:11: invalid event: " in stopped.stderr
    assert "stopped at invalid line 11, nothing written" in stopped.stderr
    assert sum(len(v) for v in by_key(kafka_bootstrap, topic_b).values()) == before


def test_replay_to_a_dead_broker_fails_fast_and_clearly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(line + b"\n" for line in record_log(log, seed=22)[0][:50]))
    began = time.monotonic()
    result = replay(Deployment(kafka_bootstrap), str(log), timeout=60,
                    MSGKPI_KAFKA_BOOTSTRAP="127.0.0.1:1")
    elapsed = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    assert elapsed < 20, elapsed
    assert "msgkpi replay: error: Kafka at 127.0.0.1:1 is not" in result.stderr
    assert "FAILED: 50 lines read, 0 of 50 events written" in result.stderr
    assert "Traceback" not in result.stderr
