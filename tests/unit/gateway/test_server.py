"""The gateway process with Kafka down: it still starts, says 503, and stops cleanly."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson
import pytest

from processor.config import Settings
from processor.gateway.server import build_adapters, run_gateway, serve
from tests.unit.gateway.conftest import event


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_canonical_is_always_enabled_and_takes_its_secret() -> None:
    adapters = build_adapters(Settings(secrets={"canonical": "s3cret"}))
    assert set(adapters) == {"canonical"}
    assert "bearer" in repr(adapters["canonical"])


def test_platforms_are_enabled_by_their_secrets() -> None:
    adapters = build_adapters(Settings(secrets={"telegram": "t0ken"}))
    assert set(adapters) == {"canonical", "telegram"}
    assert "open" in repr(adapters["canonical"])


def test_a_blank_platform_secret_exits_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_gateway(Settings(secrets={"telegram": ","})) == 2
    assert "MSGKPI_TELEGRAM_SECRET" in capsys.readouterr().err


async def test_starts_with_kafka_down_answers_503_and_stops() -> None:
    port = free_port()
    settings = Settings(kafka_bootstrap="127.0.0.1:1", gateway_port=port, produce_timeout_s=1.0)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
    base = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(20), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{base}/healthz") as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 503
        async with http.post(f"{base}/webhooks/canonical", data=orjson.dumps(event())) as r:
            assert r.status == 503
            assert "Retry-After" in r.headers
        async with http.get(f"{base}/metrics") as response:
            assert 'msgkpi_gateway_produce_errors_total{reason="not_connected"} 1.0' in (
                await response.text()
            )
        stop.set()
        assert await server == 0


async def test_port_in_use_exits_with_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(kafka_bootstrap="127.0.0.1:1", gateway_port=port)
        async with asyncio.timeout(5):  # fails at once, not after Kafka retries
            assert await serve(settings, asyncio.Event()) == 1
