"""`msgkpi simulate`: realistic customer-care traffic, posted to the gateway as it happens.

The command line over the three parts of `processor.traffic`: the pure scenario generator
(`scenario`), the transport and scheduler (`transport`) and the platform-native encoder
(`native`, `--transport native`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Final

from processor.config import CHANNELS, Settings
from processor.errors import InvalidEvent
from processor.events import parse_occurred_at
from processor.traffic.native import NativeEncoder, default_transport
from processor.traffic.scenario import Scenario, ScheduledEvent, generate_events
from processor.traffic.transport import Encoder, LiveOptions, SendStats, run_dry, run_live

__all__ = [
    "add_arguments",
    "run_simulation",
]

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
             "see processor/traffic/native.py); canonical: /webhooks/canonical (default: "
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
