"""The gateway's HTTP app: webhooks in, canonical events to the sink, health and metrics out.

One middleware (`_edge`) turns domain errors into HTTP answers and records request metrics;
handlers only speak the domain. 200 is answered only after the sink confirmed every event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Final, TypeVar

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processor.channels.base import ChannelAdapter, SignatureInvalid, WebhookReply, WebhookRequest
from processor.channels.registry import META_CHANNELS
from processor.config import CHANNELS, Settings
from processor.errors import InvalidEvent, MsgkpiError, SinkUnavailable
from processor.gateway.metrics import GatewayMetrics, channel_label
from processor.gateway.sink import EventSink, EventTooLarge, ProduceFailed

__all__ = [
    "ADAPTERS_KEY",
    "METRICS_KEY",
    "REGISTRY_KEY",
    "RETRY_AFTER_S",
    "SETTINGS_KEY",
    "SINK_KEY",
    "BodyTooLarge",
    "ChannelNotFound",
    "create_app",
]

log = logging.getLogger(__name__)

SETTINGS_KEY: Final = web.AppKey("settings", Settings)
SINK_KEY: Final = web.AppKey[EventSink]("sink")
ADAPTERS_KEY: Final = web.AppKey[Mapping[str, ChannelAdapter]]("adapters")
METRICS_KEY: Final = web.AppKey("metrics", GatewayMetrics)
REGISTRY_KEY: Final = web.AppKey("registry", CollectorRegistry)

RETRY_AFTER_S: Final = 5
"""Seconds a platform is asked to wait after a 503 before retrying."""
READY_TIMEOUT_S: Final = 3.0
_CHUNK_BYTES: Final = 64 * 1024
_T = TypeVar("_T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyTooLarge(MsgkpiError):
    """The request body is over `max_body_bytes` (HTTP 413)."""


class ChannelNotFound(MsgkpiError):
    """No adapter for this channel name (HTTP 404)."""


def create_app(
    settings: Settings,
    sink: EventSink,
    adapters: Mapping[str, ChannelAdapter],
    registry: CollectorRegistry,
) -> web.Application:
    """The gateway application; `sink` is started and stopped with it."""
    app = web.Application(middlewares=[_edge], client_max_size=settings.max_body_bytes)
    app[SETTINGS_KEY] = settings
    app[SINK_KEY] = sink
    app[ADAPTERS_KEY] = dict(adapters)
    app[REGISTRY_KEY] = registry
    app[METRICS_KEY] = GatewayMetrics.create(registry)
    app.add_routes(_ROUTES)
    app.cleanup_ctx.append(_sink_lifecycle)
    return app


async def _sink_lifecycle(app: web.Application) -> AsyncIterator[None]:
    sink = app[SINK_KEY]
    await sink.start()
    yield
    await sink.stop()


# --- handlers ------------------------------------------------------------------------------


async def post_webhook(request: web.Request) -> web.StreamResponse:
    channel, adapter = _adapter(request)
    body = await _read_capped(request, request.app[SETTINGS_KEY].max_body_bytes)
    hook = _webhook_request(request, body)
    _guarded(channel, "verify", adapter.verify, hook)
    normalized = _guarded(channel, "normalize", adapter.normalize, hook)
    metrics = request.app[METRICS_KEY]
    label = channel_label(channel)
    if normalized.ignored:
        metrics.ignored.labels(label).inc(normalized.ignored)
    if normalized.events:
        await request.app[SINK_KEY].send(normalized.events)
        metrics.events.labels(label).inc(len(normalized.events))
    return _reply(adapter.acknowledge(normalized))


async def get_webhook(request: web.Request) -> web.StreamResponse:
    channel, adapter = _adapter(request)
    hook = _webhook_request(request, b"")
    return _reply(_guarded(channel, "handshake", adapter.handshake, hook))


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def readyz(request: web.Request) -> web.StreamResponse:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            ready = await request.app[SINK_KEY].ready()
    except TimeoutError:
        ready = False
    if ready:
        return web.json_response({"status": "ready"}, dumps=_dumps)
    return web.json_response(
        {"status": "unavailable", "error": "Kafka or the events topic is not available"},
        status=503, dumps=_dumps,
    )


async def metrics_text(request: web.Request) -> web.StreamResponse:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_ROUTES: Final = [
    web.post("/webhooks/{channel}", post_webhook),
    web.get("/webhooks/{channel}", get_webhook, allow_head=False),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics_text),
]


# --- request helpers -----------------------------------------------------------------------


def _adapter(request: web.Request) -> tuple[str, ChannelAdapter]:
    channel = request.match_info["channel"]
    adapters = request.app[ADAPTERS_KEY]
    adapter = adapters.get(channel)
    if adapter is not None:
        return channel, adapter
    shown = channel[:64]
    if channel in CHANNELS or channel == "canonical":
        needed = f"MSGKPI_{channel.upper()}_SECRET"
        if channel in META_CHANNELS:
            needed += f" and MSGKPI_{channel.upper()}_VERIFY_TOKEN"
        raise ChannelNotFound(f"channel '{shown}' is disabled: set {needed} to enable it")
    enabled = ", ".join(sorted(adapters)) or "none"
    raise ChannelNotFound(f"unknown channel '{shown}' (enabled channels: {enabled})")


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes whether or not Content-Length is sent."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body is {declared} bytes, the limit is {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
    return bytes(body)


def _webhook_request(request: web.Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=body,
        received_at_ms=time.time_ns() // 1_000_000,
    )


def _guarded(
    channel: str, step: str, call: Callable[[WebhookRequest], _T], hook: WebhookRequest
) -> _T:
    """Run an adapter step; anything but its documented errors is bad input, never a 500."""
    try:
        return call(hook)
    except (SignatureInvalid, InvalidEvent):
        raise
    except Exception as exc:
        log.warning(
            "%s adapter: %s raised %s at %s", channel, step, type(exc).__name__, _where(exc)
        )
        raise InvalidEvent("body", f"could not be read as a {channel} delivery") from None


def _where(exc: BaseException) -> str:
    """File and line where an exception was raised (its message may quote the body)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _reply(reply: WebhookReply) -> web.Response:
    headers = {"Content-Type": reply.content_type}
    if reply.status == 405:
        headers["Allow"] = "POST"
    return web.Response(status=reply.status, body=reply.body, headers=headers)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


# --- the edge: errors to HTTP, metrics ------------------------------------------------------


@web.middleware
async def _edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route_label(request)
    name = request.match_info.get("channel")
    channel = channel_label(name) if name is not None else ""
    response = await _answer(request, handler, channel)
    metrics = request.app[METRICS_KEY]
    metrics.requests.labels(route, channel, str(response.status)).inc()
    metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
    return response


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


async def _answer(request: web.Request, handler: Handler, channel: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _http_error(exc)
    except MsgkpiError as exc:
        return _domain_error(request, exc, channel)
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, _route_label(request))
        return _json_error(500, "internal error")


def _http_error(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc
    response = _json_error(exc.status, exc.reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _domain_error(request: web.Request, exc: MsgkpiError, channel: str) -> web.Response:
    metrics = request.app[METRICS_KEY]
    if isinstance(exc, SinkUnavailable):
        reason = exc.reason if isinstance(exc, ProduceFailed) else "unavailable"
        metrics.produce_errors.labels(reason).inc()
        log.warning("%s delivery not written (%s): %s", channel, reason, exc)
        response = _json_error(503, f"events not written, retry later: {exc}")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    if isinstance(exc, ChannelNotFound):
        return _json_error(404, str(exc))
    status, reason = _rejection(exc)
    if status == 500:
        log.error("unexpected %s answering %s: %s", type(exc).__name__, channel, exc)
        return _json_error(500, "internal error")
    metrics.rejected.labels(channel, reason).inc()
    response = _json_error(status, str(exc))
    if status == 413:
        response.force_close()  # do not read the rest of an oversized body
    return response


_REJECTIONS: Final[tuple[tuple[type[MsgkpiError], int, str], ...]] = (
    (SignatureInvalid, 401, "bad_signature"),
    (InvalidEvent, 400, "invalid"),
    (BodyTooLarge, 413, "too_large"),
    (EventTooLarge, 413, "too_large"),
)


def _rejection(exc: MsgkpiError) -> tuple[int, str]:
    """HTTP status and `rejected_total` reason for bad input; (500, "") for anything else."""
    for kind, status, reason in _REJECTIONS:
        if isinstance(exc, kind):
            return status, reason
    return 500, ""


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)
