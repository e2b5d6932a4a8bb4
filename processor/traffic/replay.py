"""`msgkpi replay FILE.jsonl`: write a recorded event log to the events topic.

The log format is what `msgkpi simulate --out` writes: one canonical event (JSON object) per
line; blank lines are ignored. Each event goes to Kafka exactly as the gateway would write it
(key = conversation id, value = `ConversationEvent.to_json()`), so a replayed log gives the
worker the same input, and the same KPI snapshots, as the live run that recorded it.

Two passes:
1. every line is validated (JSON, then the event schema) before anything is written, so a
   replay stopped by an invalid line (`--on-error stop`, the default) has written nothing.
   `-` (stdin) is spooled to a temporary file during this pass.
2. the valid events are written through an idempotent producer (acks=all), paced by `--rate`,
   with at most `max_in_flight` unacknowledged sends. aiokafka retries forever while Kafka is
   down (issue #1101), so every event must be acknowledged within `--timeout` seconds of being
   sent, or the replay fails with exit status 1 and says how many events were acknowledged.
   The outcome of unacknowledged sends is unknown; replaying again is safe because the worker
   drops duplicate event ids.

Exit status: 0 done, 1 Kafka or I/O failure, 2 invalid input with `--on-error stop` (or bad
arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from processor.config import Settings
from processor.errors import InvalidEvent, MsgkpiError
from processor.events import ConversationEvent, event_from_dict
from processor.kafka_security import KafkaAuthFailed, KafkaSecurity, check_credentials
from processor.topics import TopicsUnavailable, ensure_settings_topics

__all__ = [
    "MAX_EVENT_BYTES",
    "LineError",
    "Pacer",
    "ReplayFailed",
    "ReplayStats",
    "add_arguments",
    "parse_line",
    "run_replay",
    "scan",
    "valid_events",
    "write_events",
]

MAX_EVENT_BYTES: Final = 1_000_000
"""The gateway's limit (key + value), below Kafka's default message.max.bytes."""
MAX_IN_FLIGHT: Final = 5000
"""Sends not yet acknowledged, at most."""
MAX_REPORTED_ERRORS: Final = 20
"""Invalid lines reported one by one with --on-error skip; the rest are only counted."""
_PROG: Final = "msgkpi replay"


class ReplayFailed(MsgkpiError):
    """Kafka could not be reached or did not acknowledge in time; exit status 1."""

    retriable = True


@dataclass(frozen=True, slots=True)
class LineError:
    """An invalid line: its 1-based number, the offending field and what is wrong."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(slots=True)
class ReplayStats:
    """What a replay read and wrote; every count the summary prints."""

    lines: int = 0
    """Lines read, blank ones included."""
    blank: int = 0
    valid: int = 0
    """Valid events (duplicates included): what the write pass sends."""
    invalid: int = 0
    duplicates: int = 0
    """Valid events whose event_id appeared on an earlier line (written anyway)."""
    sent: int = 0
    """Handed to the producer."""
    written: int = 0
    """Acknowledged by Kafka."""
    errors: list[LineError] = field(default_factory=list)
    """The first MAX_REPORTED_ERRORS invalid lines."""
    stopped_at: LineError | None = None
    """With --on-error stop: the first invalid line (nothing was written)."""
    failure: str | None = None
    """Why writing failed (Kafka or I/O)."""
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)
    write_started: float | None = None
    finished: float | None = None

    @property
    def unacknowledged(self) -> int:
        return self.sent - self.written


# --------------------------------------------------------------------------------------------
# Reading and validating (pure)
# --------------------------------------------------------------------------------------------

def parse_line(raw: bytes) -> ConversationEvent | None:
    """One log line -> the validated event; None for a blank line; `InvalidEvent` (naming the
    field) for anything else."""
    text = raw.strip()
    if not text:
        return None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("json", f"not valid JSON: {exc}") from None
    event = event_from_dict(data)
    size = len(event.conversation_id.encode()) + len(event.to_json())
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent("event", f"is {size} bytes, the limit is {MAX_EVENT_BYTES}")
    return event


def scan(lines: Iterable[bytes], *, stop_on_error: bool, stats: ReplayStats | None = None,
         on_invalid: Callable[[LineError], None] | None = None) -> ReplayStats:
    """Pass 1: validate every line and count; with `stop_on_error` stop at the first invalid
    line (recorded as `stopped_at`). `on_invalid` is told about every invalid line."""
    stats = stats if stats is not None else ReplayStats()
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        stats.lines = number
        try:
            event = parse_line(raw)
        except InvalidEvent as exc:
            error = LineError(number, exc.field, exc.message)
            stats.invalid += 1
            if len(stats.errors) < MAX_REPORTED_ERRORS:
                stats.errors.append(error)
            if on_invalid is not None:
                on_invalid(error)
            if stop_on_error:
                stats.stopped_at = error
                return stats
            continue
        if event is None:
            stats.blank += 1
            continue
        stats.valid += 1
        if event.event_id in seen:
            stats.duplicates += 1
        else:
            seen.add(event.event_id)
    return stats


def valid_events(lines: Iterable[bytes]) -> Iterator[ConversationEvent]:
    """Pass 2: the valid events in file order (invalid lines were reported by `scan`)."""
    for raw in lines:
        try:
            event = parse_line(raw)
        except InvalidEvent:
            continue
        if event is not None:
            yield event


# --------------------------------------------------------------------------------------------
# Pacing (pure, clock injected)
# --------------------------------------------------------------------------------------------

class Pacer:
    """Spaces events `1 / rate` seconds apart on an absolute schedule, so sleeping a little
    too long does not lower the rate; after a stall it catches up by at most `max_lag_s`
    worth of events at once. `rate` 0 means as fast as possible."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 max_lag_s: float = 1.0) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.rate = rate
        self._clock = clock
        self._max_lag_s = max_lag_s
        self._next: float | None = None

    def delay(self) -> float:
        """Seconds to wait before sending the next event (which is then counted as sent)."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        if self._next is None or now - self._next > self._max_lag_s:
            self._next = now if self._next is None else now - self._max_lag_s
        wait = max(0.0, self._next - now)
        self._next += 1.0 / self.rate
        return wait


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

class Producer(Protocol):
    """The part of AIOKafkaProducer the replay uses (a seam for tests)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]: ...


async def write_events(
    producer: Producer,
    topic: str,
    events: Iterable[ConversationEvent],
    stats: ReplayStats,
    *,
    timeout_s: float,
    pacer: Pacer | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> None:
    """Send every event (key = conversation id) and wait for every acknowledgement; raise
    `ReplayFailed` when a send or an acknowledgement takes longer than `timeout_s`, or Kafka
    refuses an event. `stats.sent` and `stats.written` are kept current."""
    loop = asyncio.get_running_loop()
    pending: deque[tuple[float, str, asyncio.Future[Any]]] = deque()

    def acknowledged(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            stats.written += 1

    async def settle(keep: int) -> None:
        """Drop acknowledged sends from the front; wait (bounded) until at most `keep` are
        pending and none is older than `timeout_s`."""
        while pending:
            deadline, event_id, future = pending[0]
            if not future.done():
                overdue = loop.time() >= deadline
                if len(pending) <= keep and not overdue:
                    return
                await asyncio.wait({future}, timeout=max(0.0, deadline - loop.time()))
                if not future.done():
                    raise ReplayFailed(
                        f"Kafka did not acknowledge event {event_id!r} within {timeout_s:g} s"
                    )
            pending.popleft()
            exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
            if exc is not None:
                raise ReplayFailed(f"Kafka refused event {event_id!r}: {exc!r}") from exc

    try:
        for event in events:
            delay = pacer.delay() if pacer is not None else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = event.conversation_id.encode(), event.to_json()
            try:
                async with asyncio.timeout(timeout_s):  # blocks on metadata or a full buffer
                    future = await producer.send(topic, value=value, key=key)
            except TimeoutError:
                raise ReplayFailed(
                    f"Kafka did not take event {event.event_id!r} within {timeout_s:g} s"
                ) from None
            stats.sent += 1
            future.add_done_callback(acknowledged)
            pending.append((loop.time() + timeout_s, event.event_id, future))
            await settle(max_in_flight - 1)
        await settle(0)
    except KafkaError as exc:
        raise ReplayFailed(f"Kafka refused a write: {exc!r}") from exc
    finally:
        for _, _, future in pending:  # nobody awaits these any more: no "never retrieved"
            future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _aiokafka_producer(bootstrap: str, timeout_s: float, security: KafkaSecurity) -> Producer:
    producer: Producer = AIOKafkaProducer(
        **security.aiokafka_options(),
        bootstrap_servers=bootstrap,
        client_id="msgkpi-replay",
        enable_idempotence=True,
        acks="all",
        linger_ms=10,
        max_batch_size=256 * 1024,
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
    )
    return producer


async def _start(producer: Producer, bootstrap: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
    except TimeoutError:
        raise ReplayFailed(f"Kafka at {bootstrap} did not answer within {timeout_s:g} s") from None
    except (KafkaError, OSError) as exc:
        raise ReplayFailed(f"Kafka at {bootstrap} is not reachable: {exc}") from exc


async def _check_topic(producer: Producer, topic: str, bootstrap: str, timeout_s: float) -> None:
    """Fail fast on a missing topic (with auto-creation off, a send would wait for metadata
    until the timeout and say less)."""
    client = getattr(producer, "client", None)
    if client is None:
        return  # not an aiokafka producer
    try:
        async with asyncio.timeout(timeout_s):
            cluster = await client.fetch_all_metadata()
    except (TimeoutError, KafkaError) as exc:
        raise ReplayFailed(f"Kafka at {bootstrap} did not return its topics: {exc!r}") from exc
    if topic not in cluster.topics():
        raise ReplayFailed(f"topic {topic!r} does not exist on {bootstrap}")
    if not cluster.partitions_for_topic(topic):
        raise ReplayFailed(f"topic {topic!r} has no partitions on {bootstrap}")


async def _stop(producer: Producer) -> None:
    """Bounded: aiokafka's stop() can hang while Kafka is down (#1101)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            await producer.stop()


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    bootstrap: str
    topic: str
    timeout_s: float
    rate: float = 0.0
    create_topics: Settings | None = None
    """Create the deployment's topics first (when the topic was not overridden)."""
    max_in_flight: int = MAX_IN_FLIGHT
    security: KafkaSecurity = field(default_factory=KafkaSecurity)


async def replay(
    events: Iterable[ConversationEvent],
    options: ReplayOptions,
    stats: ReplayStats,
    *,
    producer_factory: Callable[[], Producer] | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    progress_every_s: float = 1.0,
) -> None:
    """Connect, write, wait for every acknowledgement; `ReplayFailed` on any Kafka failure."""
    try:
        await check_credentials(options.bootstrap, options.security, options.timeout_s)
        if options.create_topics is not None:
            await ensure_settings_topics(options.create_topics, timeout_s=options.timeout_s)
    except KafkaAuthFailed as exc:
        raise ReplayFailed(str(exc)) from None
    except TopicsUnavailable as exc:
        raise ReplayFailed(f"Kafka at {options.bootstrap} is not usable: {exc}") from exc
    factory = producer_factory or (lambda: _aiokafka_producer(
        options.bootstrap, options.timeout_s, options.security))
    producer = factory()
    reporter: asyncio.Task[None] | None = None
    try:
        await _start(producer, options.bootstrap, options.timeout_s)
        await _check_topic(producer, options.topic, options.bootstrap, options.timeout_s)
        stats.write_started = time.monotonic()
        if progress is not None:
            reporter = asyncio.create_task(_report(progress, stats, progress_every_s))
        await write_events(producer, options.topic, events, stats, timeout_s=options.timeout_s,
                           pacer=Pacer(options.rate), max_in_flight=options.max_in_flight)
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        await _stop(producer)


async def _report(progress: Callable[[ReplayStats], None], stats: ReplayStats,
                  every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        progress(stats)


# --------------------------------------------------------------------------------------------
# Progress and summary
# --------------------------------------------------------------------------------------------

class _LineProgress:
    """A progress line on stderr, at most once a second (no extra dependency)."""

    def __init__(self, total: int, err: IO[str]) -> None:
        self.total = total
        self.err = err

    def __call__(self, stats: ReplayStats) -> None:
        began = stats.write_started or stats.started
        rate = stats.written / max(time.monotonic() - began, 1e-9)
        share = 100.0 * stats.written / self.total if self.total else 100.0
        print(f"{_PROG}: {stats.written}/{self.total} events written ({share:.0f}%), "
              f"{rate:.0f} ev/s", file=self.err, flush=True)

    def close(self, stats: ReplayStats) -> None:
        pass


class _RichProgress:
    """A rich progress bar on stderr, when rich happens to be installed."""

    def __init__(self, total: int, rich_progress: Any, rich_console: Any) -> None:
        console = rich_console.Console(stderr=True)
        self._bar = rich_progress.Progress(
            rich_progress.TextColumn("replay"), rich_progress.BarColumn(),
            rich_progress.MofNCompleteColumn(), rich_progress.TimeRemainingColumn(),
            console=console, transient=False,
        )
        self._task = self._bar.add_task("replay", total=total)
        self._bar.start()

    def __call__(self, stats: ReplayStats) -> None:
        self._bar.update(self._task, completed=stats.written)

    def close(self, stats: ReplayStats) -> None:
        self._bar.update(self._task, completed=stats.written)
        self._bar.stop()


def _progress(total: int, err: IO[str]) -> _LineProgress | _RichProgress:
    try:
        rich_progress = importlib.import_module("rich.progress")
        rich_console = importlib.import_module("rich.console")
    except ImportError:
        return _LineProgress(total, err)
    return _RichProgress(total, rich_progress, rich_console)


def summary(stats: ReplayStats, topic: str, now: float | None = None) -> str:
    """The one-line result: what was read, written, skipped, and how fast."""
    end = stats.finished if stats.finished is not None else (now or time.monotonic())
    elapsed = end - stats.started
    writing = end - stats.write_started if stats.write_started is not None else 0.0
    rate = stats.written / writing if writing > 0 else 0.0
    if stats.stopped_at is not None:
        head = f"stopped at invalid line {stats.stopped_at.line}, nothing written"
    elif stats.failure is not None:
        head = "FAILED"
    elif stats.interrupted:
        head = "interrupted"
    else:
        head = "done"
    parts = [
        f"{stats.lines} lines read",
        f"{stats.written} of {stats.valid} events written to {topic}",
        f"{stats.invalid} invalid lines" + (" skipped" if stats.stopped_at is None
                                              and stats.invalid else ""),
        f"{stats.duplicates} duplicate event ids (written; the worker drops them)",
        f"{stats.blank} blank lines",
        f"{elapsed:.1f} s",
        f"{rate:.0f} ev/s",
    ]
    text = f"{_PROG}: {head}: " + ", ".join(parts)
    if stats.unacknowledged:
        text += (f"; {stats.unacknowledged} sent but not acknowledged (outcome unknown: "
                 "replaying the file again is safe, the worker drops duplicate event ids)")
    return text


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _positive(value: str) -> float:
    number = _non_negative(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `msgkpi replay`."""
    parser.description = (
        "Write a recorded event log (JSONL, one canonical event per line, as written by "
        "`msgkpi simulate --out`) to the events topic, keyed by conversation id. Every line is "
        "validated before anything is written. Exit status: 0 done, 1 Kafka or I/O failure, "
        "2 invalid input with --on-error stop."
    )
    add = parser.add_argument
    add("file", metavar="FILE.jsonl", help="the event log; - reads stdin (to its end first)")
    add("--on-error", choices=("stop", "skip"), default="stop",
        help="an invalid line: stop (default; nothing is written) or skip it (reported with its "
             "line number, the valid lines are written)")
    add("--rate", type=_non_negative, default=0.0, metavar="N",
        help="events per second (default 0 = as fast as possible)")
    add("--topic", default=None,
        help="topic to write to (default: the events topic of MSGKPI_TOPIC_PREFIX, created if "
             "missing; an explicit topic must exist)")
    add("--timeout", type=_positive, default=None, metavar="SECONDS",
        help="longest wait for Kafka to connect or acknowledge an event (default "
             "MSGKPI_PRODUCE_TIMEOUT_S, 10)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True,
        help="progress on stderr (default on)")


Lines = Callable[[], Iterator[bytes]]


@contextlib.contextmanager
def _passes(name: str) -> Iterator[tuple[Lines, Lines]]:
    """(first pass, second pass) line iterators over a file, or over stdin spooled to a
    temporary file by the first pass."""
    if name != "-":
        path = Path(name)

        def read() -> Iterator[bytes]:
            with path.open("rb") as fh:
                yield from fh

        yield read, read
        return
    with tempfile.TemporaryFile() as spool:

        def first() -> Iterator[bytes]:
            for raw in sys.stdin.buffer:
                spool.write(raw)
                yield raw

        def second() -> Iterator[bytes]:
            spool.flush()
            spool.seek(0)
            yield from spool

        yield first, second


def _quiet_kafka_client(level: str) -> None:
    """aiokafka logs every retry (and a missing topic once per metadata poll); the replay
    reports failures itself, so the client speaks only at MSGKPI_LOG_LEVEL=debug."""
    if level != "debug":
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL + 1)


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """`msgkpi replay`: 0 done, 1 Kafka/I/O failure, 2 invalid input (stop), 130 interrupted."""
    err = sys.stderr
    _quiet_kafka_client(settings.log_level)
    topic = args.topic or settings.topics.events
    timeout_s = args.timeout if args.timeout is not None else settings.produce_timeout_s
    stop = args.on_error == "stop"
    where = "stdin" if args.file == "-" else args.file
    stats = ReplayStats()

    def report_invalid(error: LineError) -> None:
        if stats.invalid <= MAX_REPORTED_ERRORS:
            print(f"{_PROG}: {where}:{error.line}: invalid event: {error.field}: "
                  f"{error.message}", file=err, flush=True)
        elif stats.invalid == MAX_REPORTED_ERRORS + 1:
            print(f"{_PROG}: more invalid lines; only counted from here on", file=err)

    bar: _LineProgress | _RichProgress | None = None
    try:
        with _passes(args.file) as (first, second):
            scan(first(), stop_on_error=stop, stats=stats, on_invalid=report_invalid)
            if stats.stopped_at is not None:
                stats.finished = time.monotonic()
                print(summary(stats, topic), file=err)
                print(f"{_PROG}: fix line {stats.stopped_at.line} or rerun with "
                      "--on-error skip to write the valid lines", file=err)
                return 2
            options = ReplayOptions(
                bootstrap=settings.kafka_bootstrap, topic=topic, timeout_s=timeout_s,
                rate=args.rate, create_topics=None if args.topic else settings,
                security=settings.kafka_security,
            )
            print(f"{_PROG}: writing {stats.valid} events from {where} to {topic} on "
                  f"{settings.kafka_bootstrap}" + (f" at {args.rate:g} ev/s" if args.rate else ""),
                  file=err, flush=True)
            bar = _progress(stats.valid, err) if args.progress else None
            asyncio.run(replay(valid_events(second()), options, stats, progress=bar,
                               progress_every_s=1.0 if isinstance(bar, _LineProgress) else 0.1))
    except ReplayFailed as exc:
        stats.failure = str(exc)
    except OSError as exc:
        stats.failure = f"cannot read {where}: {exc.strerror or exc}"
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        if bar is not None:
            bar.close(stats)
    stats.finished = time.monotonic()
    if stats.failure is not None:
        print(f"{_PROG}: error: {stats.failure}", file=err)
    print(summary(stats, topic), file=err, flush=True)
    if stats.failure is not None:
        return 1
    return 130 if stats.interrupted else 0
