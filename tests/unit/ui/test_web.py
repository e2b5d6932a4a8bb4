"""The UI's HTTP app on the real aiohttp server: page, API, health, the token check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from processor.ui.web import TOKEN_COOKIE, create_app

PAGE: dict[str, Any] = {"now_ms": 1, "ready": True, "windows": ["5m"], "channels": {},
                        "agents": {}, "at_risk": [], "breached": [],
                        "totals": {"at_risk": 0, "breached": 0}}
Client = TestClient[Any, Any]


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(token: str | None = None, ready: bool = True,
                   secure_cookie: bool = False) -> Client:
        app = create_app(lambda: PAGE, lambda: ready, token, secure_cookie=secure_cookie)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_page_assets_and_api(make_client: MakeClient) -> None:
    client = await make_client()
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    for marker in ('id="tiles"', 'id="agents"', 'id="at-risk"', 'id="breached"',
                   "/static/app.js"):
        assert marker in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = await client.get("/static/app.js")
    assert script.status == 200 and "/api/kpis" in await script.text()
    assert (await client.get("/static/app.css")).status == 200
    assert (await client.get("/static/secrets.txt")).status == 404
    api = await client.get("/api/kpis")
    assert api.status == 200 and await api.json() == PAGE


async def test_health_and_readiness(make_client: MakeClient) -> None:
    rebuilding = await make_client(token="t", ready=False)
    assert (await rebuilding.get("/healthz")).status == 200
    assert (await rebuilding.get("/readyz")).status == 503
    ready = await make_client(ready=True)
    assert (await ready.get("/readyz")).status == 200


async def test_token_guards_page_and_api(make_client: MakeClient) -> None:
    client = await make_client(token="s3cret")
    for path in ("/", "/api/kpis", "/static/app.js"):
        assert (await client.get(path)).status == 401, path
    denied = await client.get("/api/kpis", headers={"Authorization": "Bearer wrong"})
    assert denied.status == 401 and "token" in (await denied.json())["error"]
    ok = await client.get("/api/kpis", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200


async def test_token_in_the_address_becomes_a_cookie(make_client: MakeClient) -> None:
    client = await make_client(token="s3cret")
    answer = await client.get("/?token=s3cret", allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/"
    cookie = answer.cookies[TOKEN_COOKIE]
    assert cookie.value == "s3cret" and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP, no TLS proxy declared
    # the client keeps the cookie: the page and the API work without the token in the URL
    assert (await client.get("/")).status == 200
    assert (await client.get("/api/kpis")).status == 200


async def test_cookie_is_secure_behind_a_tls_proxy(make_client: MakeClient) -> None:
    client = await make_client(token="s3cret", secure_cookie=True)
    answer = await client.get("/?token=s3cret", allow_redirects=False)
    assert answer.cookies[TOKEN_COOKIE]["secure"]
