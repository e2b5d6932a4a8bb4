"""The simulator's transport: batches of events as HTTP requests, paced on the wall clock.

An `Encoder` turns a batch of events into requests (`CanonicalEncoder` posts to
`/webhooks/canonical`; `processor.traffic.native.NativeEncoder` posts each platform's own signed
webhooks) and `Sender` delivers them with bounded retries. `run_live` paces a scenario's stream
on the wall clock: simulated time runs at `speed` x real time from `start_ms`.

Every event is accounted for: generated = delivered + rejected (4xx) + failed (gave up after
retries, or aborted) once a run has finished.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

import aiohttp
import orjson

from processor.events import ConversationEvent
from processor.traffic.scenario import ScheduledEvent

__all__ = [
    "CanonicalEncoder",
    "Encoder",
    "HttpRequest",
    "LiveOptions",
    "SendStats",
    "Sender",
    "run_dry",
    "run_live",
]

# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST to the gateway, with the events it carries (for accounting and --out)."""

    path: str
    body: bytes
    headers: Mapping[str, str]
    events: tuple[ConversationEvent, ...]


class Encoder(Protocol):
    """Turns a batch of events into the requests that deliver them (one or several)."""

    def encode(self, events: Sequence[ConversationEvent]) -> list[HttpRequest]: ...


class CanonicalEncoder:
    """`POST /webhooks/canonical`: one event as an object, or a batch as a JSON array."""

    path: Final = "/webhooks/canonical"

    def __init__(self, *, as_array: bool = False) -> None:
        self.as_array = as_array

    def encode(self, events: Sequence[ConversationEvent]) -> list[HttpRequest]:
        if not events:
            return []
        dicts = [e.to_dict() for e in events]
        payload: Any = dicts if self.as_array or len(dicts) > 1 else dicts[0]
        return [HttpRequest(
            self.path, orjson.dumps(payload), {"Content-Type": "application/json"}, tuple(events),
        )]


@dataclass
class SendStats:
    generated: int = 0
    """Events taken from the scenario and handed to the transport."""
    delivered: int = 0
    rejected: int = 0
    """Events in requests answered 4xx (not retried)."""
    failed: int = 0
    """Events given up on after the last retry, or aborted."""
    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    conn_errors: int = 0
    retries: int = 0
    batches_failed: int = 0
    behind_s: float = 0.0
    """How far the sender lags behind the simulated schedule (wall seconds)."""
    first_error: str | None = None
    first_failure: str | None = None

    @property
    def in_flight(self) -> int:
        return self.generated - self.delivered - self.rejected - self.failed


_RETRY_STATUSES: Final = frozenset({408, 425, 429})


def _jsonl(events: Iterable[ConversationEvent]) -> bytes:
    return b"".join(orjson.dumps(e.to_dict()) + b"\n" for e in events)


class Sender:
    """Delivers requests: retries 5xx/429/connection errors with capped exponential backoff."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        stats: SendStats,
        *,
        max_tries: int = 8,
        backoff_s: float = 0.25,
        backoff_max_s: float = 10.0,
        out: IO[bytes] | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.stats = stats
        self.max_tries = max(1, max_tries)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.out = out
        self.err = err
        self._jitter = random.Random()
        self._warned_unavailable = False

    def _say(self, line: str) -> None:
        if self.err is not None:
            print(f"msgkpi simulate: {line}", file=self.err, flush=True)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        delay *= self._jitter.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    async def send(self, request: HttpRequest) -> bool:
        """True once delivered (2xx); False if rejected (4xx) or given up on."""
        stats, n = self.stats, len(request.events)
        url = self.base_url + request.path
        last = ""
        try:
            for attempt in range(1, self.max_tries + 1):
                retry_after: float | None = None
                try:
                    async with self.session.post(
                        url, data=request.body, headers=dict(request.headers),
                    ) as response:
                        status = response.status
                        body = await response.read()
                        header = response.headers.get("Retry-After", "")
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    stats.conn_errors += 1
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    stats.requests += 1
                    if 200 <= status < 300:
                        stats.status_2xx += 1
                        stats.delivered += n
                        if self.out is not None:
                            self.out.write(_jsonl(request.events))
                        return True
                    if status >= 500:
                        stats.status_5xx += 1
                    else:
                        stats.status_4xx += 1
                    text = body[:500].decode("utf-8", "replace")
                    last = f"HTTP {status} {text}".strip()
                    if status < 500 and status not in _RETRY_STATUSES:
                        stats.rejected += n
                        if stats.first_error is None:
                            stats.first_error = last
                            self._say(f"gateway rejected a request of {n} event(s): {last}")
                        return False
                    if header.replace(".", "", 1).isdigit():
                        retry_after = float(header)
                if not self._warned_unavailable:
                    self._warned_unavailable = True
                    self._say(f"{url} unavailable ({last}); retrying")
                if attempt == self.max_tries:
                    break
                stats.retries += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
            stats.failed += n
            stats.batches_failed += 1
            if stats.first_failure is None:
                stats.first_failure = last
                self._say(f"gave up on {n} event(s) after {self.max_tries} tries: {last}")
            return False
        except asyncio.CancelledError:
            stats.failed += n
            stats.batches_failed += 1
            raise


# --------------------------------------------------------------------------------------------
# Scheduler
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveOptions:
    speed: float = 1.0
    duration_s: float | None = None
    """Wall-clock seconds to run; None or 0 = until stopped."""
    batch: int = 1
    concurrency: int = 4
    max_tries: int = 8
    backoff_s: float = 0.25
    backoff_max_s: float = 10.0
    request_timeout_s: float = 15.0
    progress_s: float = 5.0
    """Seconds between progress lines on stderr; 0 = none."""
    linger_s: float = 0.05
    """A partial batch is sent when the next event is further away than this."""


def _progress_line(stats: SendStats, rate: float, sim_elapsed_s: float) -> str:
    line = (
        f"msgkpi simulate: {stats.delivered} events sent, {rate:.1f} ev/s "
        f"(2xx {stats.status_2xx}, 4xx {stats.status_4xx}, 5xx {stats.status_5xx}, "
        f"conn errors {stats.conn_errors}, retries {stats.retries}, failed {stats.failed}, "
        f"in flight {stats.in_flight}) sim +{_hms(sim_elapsed_s)}"
    )
    if stats.behind_s > 1.0:
        line += f", {stats.behind_s:.1f} s behind schedule"
    return line


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


async def _sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep; True if `event` got set meanwhile."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def run_live(
    stream: Iterable[ScheduledEvent],
    *,
    start_ms: int,
    gateway: str,
    options: LiveOptions = LiveOptions(),
    encoder: Encoder | None = None,
    out: IO[bytes] | None = None,
    stop: asyncio.Event | None = None,
    abort: asyncio.Event | None = None,
    err: IO[str] | None = None,
) -> SendStats:
    """Post the stream to the gateway on the simulated schedule until it ends or `stop` is set.

    In-flight requests are finished (with their retries) before returning; `abort` cancels them.
    """
    encoder = encoder or CanonicalEncoder(as_array=options.batch > 1)
    stop = stop or asyncio.Event()
    abort = abort or asyncio.Event()
    stats = SendStats()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    speed = options.speed
    duration = options.duration_s or None
    timeout = aiohttp.ClientTimeout(total=options.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=max(1, options.concurrency))
    slots = asyncio.Semaphore(max(1, options.concurrency))
    tasks: set[asyncio.Task[bool]] = set()
    pending: list[ConversationEvent] = []
    sim_now = [0.0]

    async def report() -> None:
        last_t, last_n = loop.time(), 0
        while not await _sleep_unless(abort, options.progress_s):
            now = loop.time()
            rate = (stats.delivered - last_n) / max(now - last_t, 1e-9)
            last_t, last_n = now, stats.delivered
            if err is not None:
                print(_progress_line(stats, rate, sim_now[0]), file=err, flush=True)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        sender = Sender(
            session, gateway, stats, max_tries=options.max_tries, backoff_s=options.backoff_s,
            backoff_max_s=options.backoff_max_s, out=out, err=err,
        )

        async def flush() -> None:
            if not pending:
                return
            batch = tuple(pending)
            pending.clear()
            for request in encoder.encode(batch):
                await slots.acquire()
                task = asyncio.create_task(sender.send(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: slots.release())

        reporter = asyncio.create_task(report()) if options.progress_s > 0 else None
        try:
            for item in stream:
                if stop.is_set():
                    break
                offset = (item.send_at_ms - start_ms) / 1000.0 / speed
                if duration is not None and offset >= duration:
                    break
                delay = t0 + offset - loop.time()
                if delay > 0:
                    if pending and delay > options.linger_s:
                        await flush()
                    if await _sleep_unless(stop, delay):
                        break
                stats.behind_s = max(0.0, -delay)
                sim_now[0] = offset * speed
                pending.append(item.event)
                stats.generated += 1
                if len(pending) >= options.batch:
                    await flush()
            await flush()
            while tasks and not abort.is_set():
                aborted = asyncio.create_task(abort.wait())
                await asyncio.wait({*tasks, aborted}, return_when=asyncio.FIRST_COMPLETED)
                aborted.cancel()
        finally:
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
    return stats


def run_dry(
    stream: Iterable[ScheduledEvent], *, start_ms: int, speed: float, duration_s: float | None,
    out: IO[bytes],
) -> int:
    """Write the events of `duration_s` wall seconds (None = endless) as JSONL, without waiting."""
    limit_ms = None if not duration_s else duration_s * speed * 1000.0
    count = 0
    for item in stream:
        if limit_ms is not None and item.send_at_ms - start_ms >= limit_ms:
            break
        out.write(orjson.dumps(item.event.to_dict()) + b"\n")
        count += 1
    out.flush()
    return count
