"""Gateway unit tests: the real `create_app` through aiohttp's test client, with an in-memory
sink standing in for Kafka (the integration tests use the real broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from processor.channels.base import ChannelAdapter
from processor.channels.canonical import CanonicalAdapter
from processor.config import Settings
from processor.errors import SinkUnavailable
from processor.events import ConversationEvent
from processor.gateway.app import create_app

WEBHOOK_ROUTE = "/webhooks/{channel}"


def event(**overrides: Any) -> dict[str, Any]:
    """A valid canonical message event as a JSON-ready dict."""
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "message",
        "channel": "whatsapp",
        "conversation_id": "conv-1",
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "author": "customer",
    }
    base.update(overrides)
    return base


@dataclass
class MemorySink:
    """Records what it was asked to write; can be told to fail or to be not ready."""

    batches: list[list[ConversationEvent]] = field(default_factory=list)
    fail_with: SinkUnavailable | None = None
    is_ready: bool = True
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, events: Sequence[ConversationEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(list(events))

    async def ready(self) -> bool:
        return self.is_ready

    @property
    def events(self) -> list[ConversationEvent]:
        return [e for batch in self.batches for e in batch]


@dataclass
class Gateway:
    client: test_utils.TestClient[Any, Any]
    sink: Any
    registry: CollectorRegistry

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample's value, 0.0 when the series does not exist."""
        return self.registry.get_sample_value(name, labels) or 0.0


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[MakeGateway]:
    clients: list[test_utils.TestClient[Any, Any]] = []

    async def make(
        settings: Settings | None = None,
        sink: Any = None,
        adapters: Mapping[str, ChannelAdapter] | None = None,
    ) -> Gateway:
        settings = settings or Settings(max_body_bytes=4096)
        sink = sink if sink is not None else MemorySink()
        if adapters is None:
            adapters = {"canonical": CanonicalAdapter(settings.secrets.get("canonical"))}
        registry = CollectorRegistry()
        app = create_app(settings, sink, adapters, registry)
        client = test_utils.TestClient(test_utils.TestServer(app))
        await client.start_server()
        clients.append(client)
        return Gateway(client, sink, registry)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> Gateway:
    return await make_gateway()
