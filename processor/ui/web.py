"""The HTTP side of `msgkpi ui`: the live page, `GET /api/kpis`, health, and the token check.

With a token (MSGKPI_UI_TOKEN) every path but /healthz and /readyz needs it, as
`Authorization: Bearer <token>`, as the `msgkpi_ui_token` cookie, or once as `/?token=<token>`:
the page then sets the cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and redirects to
`/`, so the token leaves the address bar and the history. The cookie is Secure over HTTPS, and
always when `secure_cookie` says a TLS proxy is in front.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import orjson
from aiohttp import web

__all__ = ["TOKEN_COOKIE", "create_app"]

TOKEN_COOKIE: Final = "msgkpi_ui_token"
_OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
_STATIC: Final = {"app.js": "text/javascript", "app.css": "text/css"}
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PageJson = Callable[[], dict[str, Any]]
"""Builds the `GET /api/kpis` document."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Sources:
    page: PageJson
    ready: Callable[[], bool]
    token: str
    """Empty: no token needed."""
    assets: dict[str, bytes]
    secure_cookie: bool
    """Mark the token cookie Secure even when the request came over plain HTTP (a TLS proxy
    in front: MSGKPI_UI_PUBLIC_URL is https)."""


_SOURCES: Final = web.AppKey("sources", _Sources)


def _asset(name: str) -> bytes:
    return resources.files("processor.ui").joinpath("static", name).read_bytes()


def _token_given(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):]
    return request.cookies.get(TOKEN_COOKIE) or request.query.get("token")


def _unauthorized(request: web.Request) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": "a valid token is needed (MSGKPI_UI_TOKEN)"},
                                 status=401)
    return web.Response(status=401, content_type="text/plain",
                        text="msgkpi ui: open this page as /?token=<MSGKPI_UI_TOKEN>\n")


def _with_cookie(request: web.Request, token: str) -> web.Response:
    """`/?token=...`: remember the token in a cookie and drop it from the address."""
    response = web.HTTPSeeOther(location="/")
    secure = request.secure or request.app[_SOURCES].secure_cookie
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=secure,
                        path="/")
    return response


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[_SOURCES].token
    if token and request.path not in _OPEN_PATHS:
        given = _token_given(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            return _unauthorized(request)
        if request.path == "/" and "token" in request.query:
            return _with_cookie(request, token)
    response = await handler(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _index(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_SOURCES].assets["index.html"],
                        content_type="text/html", charset="utf-8")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=request.app[_SOURCES].assets[name], content_type=_STATIC[name],
                        charset="utf-8")


async def _kpis(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[_SOURCES].page()),
                        content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[_SOURCES].ready():
        return web.Response(text="ready\n")
    return web.Response(status=503, text="rebuilding the view from Kafka\n")


def create_app(page: PageJson, ready: Callable[[], bool], token: str | None, *,
               secure_cookie: bool = False) -> web.Application:
    """The UI's aiohttp application; `page` builds the API document on each request."""
    app = web.Application(middlewares=[_guard])
    assets = {name: _asset(name) for name in ("index.html", *_STATIC)}
    app[_SOURCES] = _Sources(page, ready, token or "", assets, secure_cookie)
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/kpis", _kpis)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app
