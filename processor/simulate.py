"""`msgkpi simulate`: realistic customer-care traffic, posted to the gateway as it happens.

Two halves, kept apart on purpose:

* The **scenario generator** (`generate_events`) is pure: a seed and a start time in, an endless,
  time-ordered stream of `ScheduledEvent(send_at_ms, ConversationEvent)` out. No clock, no I/O, so
  it is reproducible and easy to test. Customers open conversations on several channels; a bot
  sometimes answers first and hands off to a human agent; agents answer with log-normal (skewed)
  delays; customers follow up; cycles get resolved (a few as `no_reply_needed` or `spam`), some are
  reopened, some get a CSAT answer, tags and assignments happen along the way.
* The **transport** turns batches of events into HTTP requests (`Encoder`; the default
  `CanonicalEncoder` posts to `/webhooks/canonical`; `processor.simulate_native.NativeEncoder`
  posts each platform's own signed webhooks, `--transport native`) and `Sender` delivers them
  with bounded retries. `run_live` paces the stream on the wall clock: simulated time runs at
  `speed` x real time from `start_ms`.

Every event is accounted for: generated = delivered + rejected (4xx) + failed (gave up after
retries, or aborted) once a run has finished.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import random
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, Protocol

import aiohttp
import orjson

from processor.config import CHANNELS, Settings
from processor.errors import InvalidEvent
from processor.events import ConversationEvent, Resolution, event_from_dict, parse_occurred_at

__all__ = [
    "CHANNEL_WEIGHTS",
    "CanonicalEncoder",
    "Encoder",
    "HttpRequest",
    "LiveOptions",
    "Scenario",
    "ScheduledEvent",
    "SendStats",
    "Sender",
    "add_arguments",
    "generate_events",
    "run_dry",
    "run_live",
    "run_simulation",
]

# --------------------------------------------------------------------------------------------
# Scenario generator (pure)
# --------------------------------------------------------------------------------------------

CHANNEL_WEIGHTS: Final[Mapping[str, float]] = {
    "whatsapp": 4.0, "messenger": 2.0, "instagram": 2.0, "chatwoot": 2.0,
    "telegram": 1.0, "line": 1.0, "wechat": 1.0, "x": 1.0,
}
"""Relative share of new conversations per channel; channels not listed weigh 1."""

AGENT_NAMES: Final = ("ana", "ben", "chen", "dara", "eli", "fatima", "goran", "hana", "ivo", "jun")
TAGS: Final = (
    "billing", "refund", "shipping", "login", "bug", "pricing", "cancel", "order-status",
    "feedback", "complaint",
)
TEAMS: Final = (("support", 6.0), ("billing", 2.0), ("sales", 1.0))
PRIORITIES: Final = (("normal", 8.0), ("high", 1.5), ("urgent", 0.5))
CSAT_SCORES: Final = ((1, 5.0), (2, 7.0), (3, 13.0), (4, 30.0), (5, 45.0))
CUSTOMERS_PER_CHANNEL: Final = 20_000

SPAM_SHARE: Final = 0.03
NO_REPLY_NEEDED_SHARE: Final = 0.04
BOT_FIRST_SHARE: Final = 0.35
BOT_RESOLVES_SHARE: Final = 0.25
ASSIGN_SHARE: Final = 0.4
TRANSFER_SHARE: Final = 0.06
PRIVATE_NOTE_SHARE: Final = 0.05
TAG_SHARE: Final = 0.3
LEFT_OPEN_SHARE: Final = 0.1
CSAT_SHARE: Final = 0.4
REOPEN_SHARE: Final = 0.15
EXPLICIT_REOPEN_SHARE: Final = 0.35
SAME_AGENT_AFTER_REOPEN: Final = 0.7
MAX_CYCLES: Final = 3


class ScheduledEvent(NamedTuple):
    send_at_ms: int
    """Simulated time at which the event is to be sent (its occurred_at)."""
    event: ConversationEvent


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything the generator needs; the same Scenario always gives the same stream."""

    seed: int
    start_ms: int
    run_id: str = "sim"
    channels: tuple[str, ...] = CHANNELS
    conversations_per_s: float = 2.0
    """New conversations per simulated second (the CLI passes rate / speed)."""
    agent_median_reply_s: float = 75.0
    """Median human reply delay; each agent has its own multiplier around it."""


@dataclass(frozen=True, slots=True)
class _Agent:
    id: str
    pace: float
    """Multiplier on the median reply delay (slow agents > 1)."""


@dataclass(frozen=True, slots=True)
class _Pool:
    channel: str
    weight: float
    accounts: tuple[str, ...]
    agents: tuple[_Agent, ...]
    bots: tuple[str, ...]


def _build_pools(rng: random.Random, scenario: Scenario) -> list[_Pool]:
    pools = []
    for channel in scenario.channels:
        names = rng.sample(AGENT_NAMES, rng.randint(5, 8))
        agents = tuple(
            _Agent(f"{channel}-agent-{name}", round(rng.lognormvariate(0.0, 0.35), 3))
            for name in sorted(names)
        )
        bots = tuple(f"{channel}-bot-{i}" for i in range(1, rng.randint(1, 2) + 1))
        accounts = tuple(f"{channel}-acct-{i}" for i in range(1, rng.randint(1, 2) + 1))
        pools.append(_Pool(channel, CHANNEL_WEIGHTS.get(channel, 1.0), accounts, agents, bots))
    return pools


def _weighted(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([o for o, _ in options], [w for _, w in options])[0]


def _lognormal_ms(rng: random.Random, median_s: float, sigma: float, cap_s: float) -> int:
    """A skewed delay: log-normal with the given median, capped (long tails stay plausible)."""
    return int(min(median_s * rng.lognormvariate(0.0, sigma), cap_s) * 1000)


def _uniform_ms(rng: random.Random, low_s: float, high_s: float) -> int:
    return int(rng.uniform(low_s, high_s) * 1000)


_Cycle = Generator[ConversationEvent, None, Resolution | None]


class _Script:
    """One conversation, told as a generator of events in non-decreasing time."""

    def __init__(
        self, pool: _Pool, rng: random.Random, conversation_id: str, t0_ms: int,
        median_reply_s: float,
    ) -> None:
        self.pool = pool
        self.rng = rng
        self.conversation_id = conversation_id
        self.t = t0_ms
        self.median_reply_s = median_reply_s
        self.n = 0
        self.customer = f"{pool.channel}-cust-{rng.randrange(CUSTOMERS_PER_CHANNEL):05d}"
        self.account = rng.choice(pool.accounts)
        self.team: str = _weighted(rng, TEAMS)
        self.priority: str = _weighted(rng, PRIORITIES)
        self.agent: _Agent | None = None

    # -- building blocks ----------------------------------------------------------------------
    def wait(self, ms: int) -> None:
        self.t += max(0, ms)

    def event(self, etype: str, **fields: Any) -> ConversationEvent:
        self.n += 1
        data: dict[str, Any] = {
            "event_id": f"{self.conversation_id}:{self.n}",
            "type": etype,
            "channel": self.pool.channel,
            "conversation_id": self.conversation_id,
            "occurred_at": self.t,
            "account_id": self.account,
            "customer_id": self.customer,
            "team": self.team,
            "priority": self.priority,
        }
        data.update(fields)
        return event_from_dict(data)

    def customer_message(self, **fields: Any) -> ConversationEvent:
        return self.event("message", author="customer", **fields)

    def pick_agent(self, *, other_than: _Agent | None = None) -> _Agent:
        choices = [a for a in self.pool.agents if a is not other_than] or list(self.pool.agents)
        return self.rng.choice(choices)

    def reply_delay_ms(self, agent: _Agent) -> int:
        return _lognormal_ms(self.rng, self.median_reply_s * agent.pace, 1.0, 4 * 3600)

    def tags(self) -> list[str]:
        return self.rng.sample(TAGS, self.rng.choice((1, 1, 1, 2)))

    # -- the story ----------------------------------------------------------------------------
    def run(self) -> Iterator[ConversationEvent]:
        rng = self.rng
        explicit_reopen = False
        for cycle in range(1, MAX_CYCLES + 1):
            if explicit_reopen:
                agent_id = {"agent_id": self.agent.id} if self.agent else {}
                yield self.event("reopened", **agent_id)
                self.wait(_uniform_ms(rng, 5, 120))
            extra = {"tags": self.tags()} if rng.random() < 0.15 else {}
            yield self.customer_message(**extra)
            outcome = yield from self.cycle()
            if outcome is None or outcome is Resolution.SPAM:
                return
            if outcome is Resolution.RESOLVED and rng.random() < CSAT_SHARE:
                self.wait(_lognormal_ms(rng, 90, 0.8, 3600))
                score = _weighted(rng, CSAT_SCORES)
                agent_id = {"agent_id": self.agent.id} if self.agent else {}
                yield self.event("csat", score=score, scale=5, **agent_id)
            if cycle == MAX_CYCLES or rng.random() >= REOPEN_SHARE:
                return
            self.wait(_lognormal_ms(rng, 300, 0.9, 3 * 3600))
            explicit_reopen = rng.random() < EXPLICIT_REOPEN_SHARE
            if rng.random() >= SAME_AGENT_AFTER_REOPEN:
                self.agent = None

    def cycle(self) -> _Cycle:
        """After the opening customer message: returns how the cycle ended (None = still open)."""
        rng = self.rng
        for _ in range(rng.choice((0, 0, 0, 0, 0, 0, 1, 1, 1, 2))):
            self.wait(_uniform_ms(rng, 4, 45))
            yield self.customer_message()

        triage = rng.random()
        if triage < SPAM_SHARE + NO_REPLY_NEEDED_SHARE:
            resolution = Resolution.SPAM if triage < SPAM_SHARE else Resolution.NO_REPLY_NEEDED
            self.wait(_lognormal_ms(rng, 90, 1.0, 3600))
            yield self.event("resolved", resolution=resolution.value, agent_id=self.pick_agent().id)
            return resolution

        if self.pool.bots and rng.random() < BOT_FIRST_SHARE:
            bot = rng.choice(self.pool.bots)
            self.wait(_lognormal_ms(rng, 2.5, 0.5, 30))
            yield self.event("message", author="bot", agent_id=bot)
            if rng.random() < BOT_RESOLVES_SHARE:
                self.wait(_lognormal_ms(rng, 60, 0.7, 900))
                yield self.event("resolved", agent_id=bot)
                return Resolution.RESOLVED
            self.wait(_lognormal_ms(rng, 25, 0.8, 600))
            yield self.customer_message()
            if rng.random() < 0.5:
                self.wait(_lognormal_ms(rng, 2.5, 0.5, 30))
                yield self.event("message", author="bot", agent_id=bot)
                self.wait(_lognormal_ms(rng, 20, 0.8, 600))
                yield self.customer_message()
            self.wait(_uniform_ms(rng, 1, 8))
            agent = self.agent or self.pick_agent()
            yield self.event("handoff", agent_id=agent.id, from_agent_id=bot)
        else:
            agent = self.agent or self.pick_agent()
            if rng.random() < ASSIGN_SHARE:
                self.wait(_uniform_ms(rng, 2, 40))
                yield self.event("assigned", agent_id=agent.id)
        self.agent = agent

        rounds = 1 + min(int(rng.expovariate(0.9)), 5)
        for i in range(rounds):
            if rng.random() < TRANSFER_SHARE:
                self.wait(_uniform_ms(rng, 10, 120))
                agent = self.agent = self.pick_agent(other_than=agent)
                yield self.event("assigned", agent_id=agent.id)
            delay = self.reply_delay_ms(agent)
            if rng.random() < PRIVATE_NOTE_SHARE:
                self.wait(delay // 2)
                yield self.event("message", author="agent", agent_id=agent.id, private=True)
                delay -= delay // 2
            self.wait(delay)
            yield self.event("message", author="agent", agent_id=agent.id)
            if i == 0 and rng.random() < TAG_SHARE:
                self.wait(_uniform_ms(rng, 5, 90))
                yield self.event("tagged", tags=self.tags(), agent_id=agent.id)
            if i < rounds - 1:
                self.wait(_lognormal_ms(rng, 50, 1.0, 1800))
                yield self.customer_message()
                if rng.random() < 0.2:
                    self.wait(_uniform_ms(rng, 4, 40))
                    yield self.customer_message()

        if rng.random() < LEFT_OPEN_SHARE:
            if rng.random() < 0.5:  # the customer's last word is still waiting for an answer
                self.wait(_lognormal_ms(rng, 60, 1.0, 1800))
                yield self.customer_message()
            return None
        self.wait(_lognormal_ms(rng, 120, 1.0, 4 * 3600))
        extra = {"tags": self.tags()} if rng.random() < 0.2 else {}
        yield self.event("resolved", agent_id=agent.id, **extra)
        return Resolution.RESOLVED


def generate_events(scenario: Scenario) -> Iterator[ScheduledEvent]:
    """The endless, time-ordered event stream of a scenario (pure and deterministic)."""
    if scenario.conversations_per_s <= 0:
        raise ValueError("conversations_per_s must be positive")
    if not scenario.channels:
        raise ValueError("at least one channel is needed")
    master = random.Random(scenario.seed)
    pools = _build_pools(master, scenario)
    weights = [p.weight for p in pools]
    counters = dict.fromkeys((p.channel for p in pools), 0)
    per_ms = scenario.conversations_per_s / 1000.0
    heap: list[tuple[int, int, ConversationEvent, Iterator[ConversationEvent]]] = []
    order = itertools.count()
    next_arrival = scenario.start_ms
    while True:
        if heap and heap[0][0] <= next_arrival:
            at, _, event, rest = heapq.heappop(heap)
            following = next(rest, None)
            if following is not None:
                heapq.heappush(heap, (following.occurred_at_ms, next(order), following, rest))
            yield ScheduledEvent(at, event)
            continue
        pool = master.choices(pools, weights)[0]
        counters[pool.channel] += 1
        conversation_id = f"{scenario.run_id}-{pool.channel}-{counters[pool.channel]:06d}"
        script = _Script(
            pool, random.Random(master.getrandbits(64)), conversation_id, next_arrival,
            scenario.agent_median_reply_s,
        ).run()
        first = next(script)
        heapq.heappush(heap, (first.occurred_at_ms, next(order), first, script))
        next_arrival += max(1, round(master.expovariate(per_ms)))


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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

_CHANNEL_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _positive(kind: Callable[[str], Any], *, allow_zero: bool = False) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"must be {'>= 0' if allow_zero else '> 0'}, got {raw!r}")
        return value
    return parse


def _channels(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(c.strip().lower() for c in raw.split(",") if c.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give at least one channel")
    for name in names:
        if not _CHANNEL_RE.match(name) or len(name) > 64:
            raise argparse.ArgumentTypeError(f"not a valid channel name: {name!r}")
    return names


def _start(raw: str) -> int:
    try:
        return parse_occurred_at(int(raw) if raw.isdigit() else raw)
    except InvalidEvent as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `msgkpi simulate`."""
    parser.description = (
        "Send realistic customer-care traffic (customers, agents, bots on several channels) to "
        "the gateway, paced by simulated time: as canonical events, or as each platform's own "
        "signed webhooks (--transport native)."
    )
    add = parser.add_argument
    add("--rate", type=_positive(float), default=2.0, metavar="N",
        help="conversations started per (wall-clock) second (default 2)")
    add("--duration", type=_positive(float, allow_zero=True), default=None, metavar="SECONDS",
        help="stop after this many wall-clock seconds (default: until Ctrl-C; 0 = forever)")
    add("--gateway", default=None, metavar="URL",
        help="gateway base URL (default http://MSGKPI_GATEWAY_HOST:MSGKPI_GATEWAY_PORT)")
    add("--seed", type=int, default=None, help="random seed for a reproducible scenario")
    add("--run-id", default=None,
        help="prefix of conversation and event ids (default: random; set it with --seed and "
             "--start for byte-identical output)")
    add("--start", type=_start, default=None, metavar="TIME",
        help="simulated start time, RFC 3339 or epoch ms (default: now)")
    add("--batch", type=_positive(int), default=1, metavar="N",
        help="events per POST (default 1; more than 1 posts JSON arrays)")
    add("--speed", type=_positive(float), default=1.0, metavar="X",
        help="simulated time runs at X times the wall clock (default 1; 60 = a minute a second)")
    add("--channels", type=_channels, default=CHANNELS, metavar="LIST",
        help=f"comma-separated channels (default {','.join(CHANNELS)})")
    add("--out", type=Path, default=None, metavar="FILE.jsonl",
        help="also write every delivered event as one JSON line (with --dry-run: every event)")
    add("--dry-run", action="store_true",
        help="write the events to --out (or stdout) at once instead of posting them")
    add("--concurrency", type=_positive(int), default=4, metavar="N",
        help="requests in flight at most (default 4)")
    add("--max-tries", type=_positive(int), default=8, metavar="N",
        help="tries per request on 5xx/429/connection errors before giving up (default 8)")
    add("--progress", type=_positive(float, allow_zero=True), default=5.0, metavar="SECONDS",
        help="seconds between progress lines on stderr (default 5; 0 = none)")
    add("--transport", choices=("native", "canonical"), default=None,
        help="native: each platform's signed webhooks (secrets from MSGKPI_<CHANNEL>_SECRET; "
             "see processor/simulate_native.py); canonical: /webhooks/canonical (default: "
             "native when every chosen channel has its secret)")


def _summary(stats: SendStats, elapsed: float, seed: int, run_id: str) -> str:
    return (
        f"msgkpi simulate: done in {elapsed:.1f} s: {stats.generated} events generated, "
        f"{stats.delivered} delivered, {stats.rejected} rejected (4xx), {stats.failed} failed; "
        f"requests 2xx {stats.status_2xx}, 4xx {stats.status_4xx}, 5xx {stats.status_5xx}, "
        f"connection errors {stats.conn_errors}, retries {stats.retries}, "
        f"{stats.delivered / max(elapsed, 1e-9):.1f} ev/s; seed {seed}, run id {run_id}"
    )


async def _live_main(
    stream: Iterable[ScheduledEvent], start_ms: int, gateway: str, options: LiveOptions,
    out: IO[bytes] | None, encoder: Encoder | None = None,
) -> SendStats:
    loop = asyncio.get_running_loop()
    stop, abort = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if not stop.is_set():
            print("msgkpi simulate: stopping; finishing in-flight requests (again to abort)",
                  file=sys.stderr, flush=True)
            stop.set()
        else:
            abort.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover (non-Unix)
            pass
    try:
        return await run_live(
            stream, start_ms=start_ms, gateway=gateway, options=options, encoder=encoder,
            out=out, stop=stop, abort=abort, err=sys.stderr,
        )
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_simulation(settings: Settings, args: argparse.Namespace) -> int:
    """`msgkpi simulate`: 0 when something was delivered (or written), 1 when nothing was."""
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    run_id = args.run_id or uuid.uuid4().hex[:8]
    start_ms = args.start if args.start is not None else int(time.time() * 1000)
    scenario = Scenario(
        seed=seed, start_ms=start_ms, run_id=run_id, channels=tuple(args.channels),
        conversations_per_s=args.rate / args.speed,
    )
    stream = generate_events(scenario)
    if args.dry_run:
        if args.out is None:
            try:
                count = run_dry(stream, start_ms=start_ms, speed=args.speed,
                                duration_s=args.duration, out=sys.stdout.buffer)
            except BrokenPipeError:  # e.g. piped into `head`
                return 0
            where = "stdout"
        else:
            if not args.duration:
                print("msgkpi simulate: --dry-run --out needs a --duration > 0", file=sys.stderr)
                return 2
            with args.out.open("wb") as fh:
                count = run_dry(stream, start_ms=start_ms, speed=args.speed,
                                duration_s=args.duration, out=fh)
            where = str(args.out)
        print(f"msgkpi simulate: wrote {count} events to {where} (seed {seed}, run id {run_id})",
              file=sys.stderr)
        return 0

    gateway = args.gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
    options = LiveOptions(
        speed=args.speed, duration_s=args.duration, batch=args.batch,
        concurrency=args.concurrency, max_tries=args.max_tries, progress_s=args.progress,
    )
    from processor.simulate_native import NativeEncoder, default_transport

    transport = getattr(args, "transport", None) or default_transport(settings, args.channels)
    encoder: Encoder | None = None
    where = f"{gateway}/webhooks/canonical"
    if transport == "native":
        encoder = NativeEncoder(settings, as_array=args.batch > 1)
        where = f"{gateway}/webhooks/<channel> (native, signed)"
    print(f"msgkpi simulate: posting to {where}, {args.rate:g} conv/s, "
          f"speed {args.speed:g}x, channels {','.join(scenario.channels)}, seed {seed}, "
          f"run id {run_id}", file=sys.stderr, flush=True)
    began = time.monotonic()
    out = args.out.open("wb") if args.out is not None else None
    try:
        stats = asyncio.run(_live_main(stream, start_ms, gateway, options, out, encoder))
    finally:
        if out is not None:
            out.close()
    print(_summary(stats, time.monotonic() - began, seed, run_id), file=sys.stderr, flush=True)
    if stats.first_error:
        print(f"msgkpi simulate: first rejection: {stats.first_error}", file=sys.stderr)
    return 0 if stats.delivered > 0 or stats.generated == 0 else 1

