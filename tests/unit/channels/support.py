"""Shared by the channel tests: a fixed clock and request building."""

from __future__ import annotations

from collections.abc import Mapping

from processor.channels.base import WebhookRequest
from processor.traffic import samples

NOW_S = samples.DEFAULT_TIME_S + 3600
"""Arrival time of every test delivery: one hour after the samples' event time."""
NOW_MS = NOW_S * 1000


def req(signed: samples.Signed, channel: str, *, received_at_ms: int = NOW_MS) -> WebhookRequest:
    return samples.to_request(signed, channel=channel, received_at_ms=received_at_ms)


def with_headers(request: WebhookRequest, **changes: str | None) -> WebhookRequest:
    """A copy with headers replaced (value None removes the header)."""
    headers = dict(request.headers)
    for name, value in changes.items():
        real = name.replace("_", "-")
        for key in [k for k in headers if k.lower() == real.lower()]:
            del headers[key]
        if value is not None:
            headers[real] = value
    return request._replace(headers=headers)


def get(channel: str, query: Mapping[str, str]) -> WebhookRequest:
    return WebhookRequest(method="GET", path=f"/webhooks/{channel}", query=dict(query),
                          headers={}, body=b"", received_at_ms=NOW_MS)
