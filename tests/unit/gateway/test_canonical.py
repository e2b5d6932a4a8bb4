"""The canonical adapter on its own: bearer authentication, normalization, replies."""

from __future__ import annotations

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from processor.channels.base import ChannelAdapter, SignatureInvalid, WebhookRequest
from processor.channels.canonical import CanonicalAdapter
from processor.errors import InvalidEvent
from tests.unit.gateway.conftest import event


def request(body: bytes = b"", headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path="/webhooks/canonical",
        query={},
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),
        body=body,
        received_at_ms=0,
    )


def test_is_a_channel_adapter() -> None:
    adapter: ChannelAdapter = CanonicalAdapter()
    assert adapter.name == "canonical"


def test_open_without_secret() -> None:
    CanonicalAdapter().verify(request())
    CanonicalAdapter("").verify(request())


@pytest.mark.parametrize(
    "header", ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret  ", "  Bearer s3cret"]
)
def test_right_bearer_passes(header: str) -> None:
    CanonicalAdapter("s3cret").verify(request(headers={"Authorization": header}))


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "s3cret", "Basic s3cret", "Bearer s3cre",
     "Bearer s3cret2", "Bearer S3CRET", "Bearer s3crét", "Bearer \udcff"],
)
def test_wrong_or_missing_bearer_is_refused(header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    with pytest.raises(SignatureInvalid) as caught:
        CanonicalAdapter("s3cret").verify(request(headers=headers))
    assert "s3cret" not in str(caught.value)


def test_secret_is_not_in_repr() -> None:
    assert "s3cret" not in repr(CanonicalAdapter("s3cret"))


def test_normalize_one_and_many() -> None:
    adapter = CanonicalAdapter()
    one = adapter.normalize(request(orjson.dumps(event())))
    assert [e.event_id for e in one.events] == ["evt-1"]
    assert one.ignored == 0
    many = adapter.normalize(request(orjson.dumps([event(event_id=str(i)) for i in range(3)])))
    assert [e.event_id for e in many.events] == ["0", "1", "2"]


def test_normalize_names_the_bad_field() -> None:
    with pytest.raises(InvalidEvent) as caught:
        CanonicalAdapter().normalize(request(orjson.dumps([event(), event(channel="")])))
    assert caught.value.field == "[1].channel"


def test_acknowledge_and_handshake() -> None:
    adapter = CanonicalAdapter()
    normalized = adapter.normalize(request(orjson.dumps([event(), event(event_id="2")])))
    ack = adapter.acknowledge(normalized)
    assert (ack.status, orjson.loads(ack.body)) == (200, {"accepted": 2})
    assert ack.content_type == "application/json"
    assert adapter.handshake(request()).status == 405
