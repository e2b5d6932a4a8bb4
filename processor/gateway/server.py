"""`msgkpi gateway`: build the registry, sink and adapters, serve HTTP until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from processor.channels.base import ChannelAdapter
from processor.channels.canonical import CanonicalAdapter
from processor.channels.registry import build_adapters as build_platform_adapters
from processor.config import Settings
from processor.errors import ConfigError
from processor.gateway.app import create_app
from processor.gateway.sink import KafkaEventSink
from processor.kafka_security import EXIT_KAFKA_AUTH, KafkaAuthFailed, check_credentials
from processor.stop_signals import remove_stop_handlers, stop_on_signals
from processor.topics import TopicsUnavailable, ensure_settings_topics

__all__ = ["build_adapters", "run_gateway", "serve"]

log = logging.getLogger(__name__)

_TOPICS_RETRY_S: Final = 5.0


def build_adapters(settings: Settings) -> dict[str, ChannelAdapter]:
    """The enabled channel adapters by name: every platform whose secret is configured, and
    `canonical`, always on (bearer auth when it has a secret). Raises `ConfigError`."""
    adapters = build_platform_adapters(settings, log)
    adapters["canonical"] = CanonicalAdapter(settings.secrets.get("canonical"))
    return adapters


def run_gateway(settings: Settings) -> int:
    """Run the gateway in the foreground; the exit status for the command line."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        asyncio.run(check_credentials(settings.kafka_bootstrap, settings.kafka_security))
        return asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"msgkpi: configuration error: {exc}", file=sys.stderr)
        return 2
    except KafkaAuthFailed as exc:
        print(f"msgkpi gateway: {exc}", file=sys.stderr)
        return EXIT_KAFKA_AUTH


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Serve until `stop` is set (or, when none is given, until SIGINT/SIGTERM)."""
    stop_event = stop if stop is not None else stop_on_signals()
    adapters = build_adapters(settings)
    sink = KafkaEventSink.from_settings(settings)
    app = create_app(settings, sink, adapters, CollectorRegistry())
    # No access log: query strings can carry verify tokens.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=settings.produce_timeout_s + 5.0
    )
    await runner.setup()
    topics = asyncio.create_task(_ensure_topics_until_done(settings), name="msgkpi-topics")
    try:
        try:
            await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s",
                      settings.gateway_host, settings.gateway_port, exc)
            return 1
        _log_started(settings, sorted(adapters))
        await stop_event.wait()
        log.info("stopping: finishing requests in flight")
        return 0
    finally:
        topics.cancel()
        await asyncio.wait({topics})  # unlike awaiting it, never swallows our own cancel
        await runner.cleanup()
        if stop is None:
            remove_stop_handlers()


async def _ensure_topics_until_done(settings: Settings) -> None:
    """Create missing topics (auto-creation is off); Kafka may come up after the gateway."""
    while True:
        try:
            await ensure_settings_topics(settings)
            return
        except KafkaAuthFailed as exc:  # Kafka came up after the gateway and refused it
            log.error("%s; /readyz stays 503 until the credentials are fixed", exc)
            return
        except TopicsUnavailable as exc:
            log.warning("topics not ensured yet, retrying in %ss: %s", _TOPICS_RETRY_S, exc)
        except Exception:
            log.exception("ensuring the Kafka topics failed; not retrying")
            return
        await asyncio.sleep(_TOPICS_RETRY_S)


def _log_started(settings: Settings, channels: list[str]) -> None:
    log.info(
        "gateway listening on http://%s:%d; Kafka %s (%s), topic %s; channels: %s",
        settings.gateway_host, settings.gateway_port, settings.kafka_bootstrap,
        settings.kafka_security.describe(), settings.topics.events, ", ".join(channels),
    )
