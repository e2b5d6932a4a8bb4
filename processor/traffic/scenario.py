"""The scenario generator: realistic customer-care traffic as a pure, reproducible stream.

`generate_events` takes a seed and a start time and yields an endless, time-ordered stream of
`ScheduledEvent(send_at_ms, ConversationEvent)`. No clock, no I/O, so it is reproducible and easy
to test. Customers open conversations on several channels; a bot sometimes answers first and
hands off to a human agent; agents answer with log-normal (skewed) delays; customers follow up;
cycles get resolved (a few as `no_reply_needed` or `spam`), some are reopened, some get a CSAT
answer, tags and assignments happen along the way.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from processor.config import CHANNELS
from processor.events import ConversationEvent, Resolution, event_from_dict

__all__ = [
    "CHANNEL_WEIGHTS",
    "Scenario",
    "ScheduledEvent",
    "generate_events",
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
