"""Property: whatever a signed delivery is mutated into, an adapter either returns events or
raises InvalidEvent (400), never anything else; and a mutated body under the original
signature is refused with SignatureInvalid (401) where the platform signs the body."""

from __future__ import annotations

import base64
import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.channels._support import hmac_sha256
from processor.channels.base import ChannelAdapter, Normalized, SignatureInvalid
from processor.channels.chatwoot import ChatwootAdapter, chatwoot_signature
from processor.channels.instagram import InstagramAdapter
from processor.channels.line import LineAdapter
from processor.channels.messenger import MessengerAdapter
from processor.channels.meta import meta_signature
from processor.channels.telegram import TelegramAdapter
from processor.channels.wechat import WeChatAdapter
from processor.channels.whatsapp import WhatsAppAdapter
from processor.channels.x import XAdapter
from processor.errors import InvalidEvent
from processor.events import ConversationEvent
from processor.traffic import samples
from tests.unit.channels.support import NOW_S, req

SECRET = "prop-secret"


@dataclass(frozen=True)
class Case:
    channel: str
    adapter: ChannelAdapter
    sample: samples.Signed
    resign: Callable[[bytes], samples.Signed]
    body_signed: bool = True
    xml: bool = False


def _meta(body: bytes) -> samples.Signed:
    return {"X-Hub-Signature-256": meta_signature(SECRET.encode(), body)}, body


def _line(body: bytes) -> samples.Signed:
    return {"x-line-signature": base64.b64encode(hmac_sha256(SECRET.encode(), body)).decode()}, body


def _x(body: bytes) -> samples.Signed:
    digest = base64.b64encode(hmac_sha256(SECRET.encode(), body)).decode()
    return {"x-twitter-webhooks-signature": f"sha256={digest}"}, body


def _chatwoot(body: bytes) -> samples.Signed:
    stamp = str(NOW_S)
    return {"X-Chatwoot-Timestamp": stamp,
            "X-Chatwoot-Signature": chatwoot_signature(SECRET.encode(), stamp, body)}, body


def _telegram(body: bytes) -> samples.Signed:
    return {"X-Telegram-Bot-Api-Secret-Token": SECRET}, body


def _wechat(body: bytes) -> samples.Signed:
    return samples.wechat_signed(SECRET, body, timestamp_s=NOW_S)


def _cases() -> Iterator[Case]:
    wa_items = [samples.whatsapp_message_item(wamid=f"wamid.{i}", wa_id="4915112345678",
                                              text="Grüße") for i in range(2)]
    wa_status = [samples.whatsapp_status_item(wamid="wamid.S", recipient_id="4915112345678",
                                              biz_opaque_callback_data="agent:a")]
    yield Case("whatsapp", WhatsAppAdapter(SECRET, "t"),
               samples.whatsapp_batch(SECRET, messages=wa_items, statuses=wa_status), _meta)
    page_items = [
        samples.messenger_message_item(mid="m1", text="héllo"),
        samples.messenger_message_item(mid="m2", echo=True, metadata="agent:z"),
        {"sender": {"id": "6789012345678901"}, "recipient": {"id": samples.PAGE_ID},
         "timestamp": 5, "pass_thread_control": {"new_owner_app_id": "1", "metadata": "x"}},
        {"sender": {"id": "6789012345678901"}, "recipient": {"id": samples.PAGE_ID},
         "timestamp": 5, "read": {"watermark": 1}},
    ]
    yield Case("messenger", MessengerAdapter(SECRET, "t"),
               samples.messenger_batch(SECRET, page_items), _meta)
    ig_items = [samples.messenger_message_item(account_id=samples.IG_ACCOUNT_ID, mid="i1"),
                samples.messenger_message_item(account_id=samples.IG_ACCOUNT_ID, mid="i2",
                                               echo=True)]
    yield Case("instagram", InstagramAdapter(SECRET, "t"),
               samples.instagram_batch(SECRET, ig_items), _meta)
    yield Case("telegram", TelegramAdapter(SECRET),
               samples.telegram_business_message(SECRET, by_bot=False), _telegram,
               body_signed=False)
    line_events = [samples.line_message_event(webhook_event_id=f"01E{i}", text="こんにちは")
                   for i in range(2)]
    yield Case("line", LineAdapter(SECRET), samples.line_batch(SECRET, line_events), _line)
    yield Case("wechat", WeChatAdapter(SECRET), samples.wechat_inbound(SECRET, timestamp_s=NOW_S),
               _wechat, body_signed=False, xml=True)
    x_events = [samples.x_dm_event(event_id="1"),
                samples.x_dm_event(event_id="2", sender_id=samples.X_ACCOUNT,
                                   recipient_id="944480690")]
    yield Case("x", XAdapter(SECRET), samples.x_batch(SECRET, x_events), _x)
    yield Case("chatwoot", ChatwootAdapter(SECRET),
               samples.chatwoot_agent_reply(SECRET, timestamp_s=NOW_S), _chatwoot)
    yield Case("chatwoot", ChatwootAdapter(SECRET),
               samples.chatwoot_assigned(SECRET, labels=["a"], timestamp_s=NOW_S), _chatwoot)


CASES = list(_cases())
IDS = [f"{case.channel}-{index}" for index, case in enumerate(CASES)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _mutate_json(body: bytes, data: st.DataObject) -> bytes:
    doc = json.loads(body)
    paths = [path for path in _paths(doc) if path]
    path = data.draw(st.sampled_from(paths), label="path")
    mutated = copy.deepcopy(doc)
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans(), label="delete"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values, label="value")
    ascii_only = data.draw(st.booleans(), label="ascii")
    return json.dumps(mutated, ensure_ascii=ascii_only).encode("utf-8")


def _mutate_xml(body: bytes, data: st.DataObject) -> bytes:
    root = ET.fromstring(body)
    children = list(root)
    child = data.draw(st.sampled_from(children), label="element")
    action = data.draw(st.sampled_from(["delete", "text", "rename", "doctype"]), label="action")
    if action == "delete":
        root.remove(child)
    elif action == "text":
        child.text = data.draw(st.text(max_size=30), label="text")
    elif action == "rename":
        child.tag = data.draw(st.sampled_from(["Encrypt", "MsgType", "X", "CreateTime"]))
    out: bytes = ET.tostring(root, encoding="utf-8")
    if action == "doctype":
        out = b'<!DOCTYPE xml [<!ENTITY e "x">]>' + out.split(b"?>", 1)[-1]
    return out


def _mutate(case: Case, data: st.DataObject) -> bytes:
    body = case.sample[1]
    kind = data.draw(st.sampled_from(["flip", "truncate", "structure", "document"]),
                     label="kind")
    if kind == "flip":
        raw = bytearray(body)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            index = data.draw(st.integers(0, len(raw) - 1), label="index")
            raw[index] ^= data.draw(st.integers(1, 255), label="mask")
        return bytes(raw)
    if kind == "truncate":
        return body[: data.draw(st.integers(0, len(body) - 1), label="cut")]
    if kind == "document":  # a whole other JSON document, of any type
        return json.dumps(data.draw(json_values, label="document")).encode("utf-8")
    return _mutate_xml(body, data) if case.xml else _mutate_json(body, data)


def _outcome(case: Case, body: bytes) -> Normalized | InvalidEvent:
    request = req(case.resign(body), case.channel)
    case.adapter.verify(request)  # re-signed: must pass
    try:
        return case.adapter.normalize(request)
    except InvalidEvent as exc:
        return exc


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unmutated_sample_yields_events(case: Case) -> None:
    result = _outcome(case, case.sample[1])
    assert isinstance(result, Normalized)
    assert result.events


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_mutated_body_gives_events_or_invalid_event_only(case: Case, data: st.DataObject) -> None:
    body = _mutate(case, data)
    result = _outcome(case, body)  # any other exception fails the test
    if isinstance(result, Normalized):
        assert all(isinstance(event, ConversationEvent) for event in result.events)
        assert result.ignored >= 0
        assert all(event.channel == case.channel for event in result.events)


@pytest.mark.parametrize("case", [c for c in CASES if c.body_signed],
                         ids=[i for i, c in zip(IDS, CASES, strict=True) if c.body_signed])
@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data())
def test_mutated_body_under_the_original_signature_is_refused(
    case: Case, data: st.DataObject
) -> None:
    body = _mutate(case, data)
    if body == case.sample[1]:
        return
    with pytest.raises(SignatureInvalid):
        case.adapter.verify(req((case.sample[0], body), case.channel))
