"""WeChat Official Account (plaintext mode): query signature, XML, hostile XML."""

from __future__ import annotations

import hashlib
import time

import pytest

from processor.channels.base import Normalized, SignatureInvalid, WebhookRequest
from processor.channels.wechat import MAX_XML_BYTES, WeChatAdapter, wechat_signature
from processor.errors import InvalidEvent
from processor.events import Author, EventType
from processor.traffic import samples
from tests.unit.channels.support import NOW_MS, NOW_S, get, req

TOKEN = "wechatToken2026"
ACCOUNT = samples.WECHAT_ACCOUNT
OPENID = samples.WECHAT_OPENID


@pytest.fixture
def adapter() -> WeChatAdapter:
    return WeChatAdapter(TOKEN)


def post(body: bytes, *, token: str = TOKEN, timestamp_s: int = NOW_S) -> WebhookRequest:
    return req(samples.wechat_signed(token, body, timestamp_s=timestamp_s), "wechat")


def normalize(adapter: WeChatAdapter, request: WebhookRequest) -> Normalized:
    adapter.verify(request)
    return adapter.normalize(request)


def test_signature_is_sha1_of_sorted_token_timestamp_nonce() -> None:
    parts = sorted(["tok", "1700000000", "nonce1"])
    assert wechat_signature(b"tok", "1700000000", "nonce1") == hashlib.sha1(
        "".join(parts).encode()).hexdigest()


def test_text_message_is_customer(adapter: WeChatAdapter) -> None:
    body = samples.wechat_text_xml(content="你好 我的订单呢", msg_id="6899",
                                   create_time_s=1_700_000_000)
    (event,) = normalize(adapter, post(body)).events
    assert event.author is Author.CUSTOMER
    assert event.event_id == f"wechat:{ACCOUNT}:6899"
    assert event.conversation_id == f"wechat:{ACCOUNT}:{OPENID}"
    assert (event.customer_id, event.account_id) == (OPENID, ACCOUNT)
    assert event.occurred_at_ms == 1_700_000_000_000


@pytest.mark.parametrize(("event_name", "event_type", "agent"), [
    ("kf_create_session", EventType.ASSIGNED, "alice@gh_3a1b2c3d4e5f"),
    ("kf_switch_session", EventType.ASSIGNED, "alice@gh_3a1b2c3d4e5f"),
    ("kf_close_session", EventType.RESOLVED, "alice@gh_3a1b2c3d4e5f"),
])
def test_customer_service_sessions(
    adapter: WeChatAdapter, event_name: str, event_type: EventType, agent: str
) -> None:
    signed = samples.wechat_kf_session(TOKEN, event=event_name, timestamp_s=NOW_S)
    (event,) = normalize(adapter, req(signed, "wechat")).events
    assert (event.type, event.agent_id) == (event_type, agent)
    assert event.conversation_id == f"wechat:{ACCOUNT}:{OPENID}"


def test_subscribe_and_unknown_types_are_ignored(adapter: WeChatAdapter) -> None:
    result = normalize(adapter, req(samples.wechat_subscribe(TOKEN, timestamp_s=NOW_S), "wechat"))
    assert result == Normalized([], 1)
    odd = samples.wechat_text_xml().replace(b"CDATA[text]", b"CDATA[miniprogrampage]")
    assert normalize(adapter, post(odd)) == Normalized([], 1)


def test_acknowledge_says_success(adapter: WeChatAdapter) -> None:
    reply = adapter.acknowledge(Normalized([]))
    assert (reply.status, reply.body) == (200, b"success")


def test_handshake_echoes_only_with_a_valid_signature(adapter: WeChatAdapter) -> None:
    good = samples.wechat_handshake_query(TOKEN, timestamp_s=NOW_S, echostr="8327465")
    assert (adapter.handshake(get("wechat", good)).status,
            adapter.handshake(get("wechat", good)).body) == (200, b"8327465")
    wrong = samples.wechat_handshake_query("not-the-token", timestamp_s=NOW_S, echostr="8327465")
    assert adapter.handshake(get("wechat", wrong)).status == 401
    no_echo = samples.wechat_handshake_query(TOKEN, timestamp_s=NOW_S)
    assert adapter.handshake(get("wechat", no_echo)).status == 400


@pytest.mark.parametrize("query", [
    {},
    {"signature": "0" * 40, "timestamp": str(NOW_S), "nonce": "1"},
    {"signature": "xyz", "timestamp": str(NOW_S), "nonce": "1"},
    {"signature": "0" * 40, "timestamp": "soon", "nonce": "1"},
    {"signature": "é" * 40, "timestamp": str(NOW_S), "nonce": "1"},
])
def test_bad_query_signatures(adapter: WeChatAdapter, query: dict[str, str]) -> None:
    request = WebhookRequest("POST", "/webhooks/wechat", query, {}, samples.wechat_text_xml(),
                             NOW_MS)
    with pytest.raises(SignatureInvalid):
        adapter.verify(request)


@pytest.mark.parametrize("skew_s", [-301, 301, -86_400])
def test_stale_or_future_timestamps_are_refused(adapter: WeChatAdapter, skew_s: int) -> None:
    with pytest.raises(SignatureInvalid):
        adapter.verify(post(samples.wechat_text_xml(), timestamp_s=NOW_S + skew_s))
    inside = NOW_S + (299 if skew_s > 0 else -299)
    adapter.verify(post(samples.wechat_text_xml(), timestamp_s=inside))


def test_rotation() -> None:
    adapter = WeChatAdapter("nextToken," + TOKEN)
    adapter.verify(post(samples.wechat_text_xml()))
    adapter.verify(post(samples.wechat_text_xml(), token="nextToken"))
    with pytest.raises(SignatureInvalid):
        adapter.verify(post(samples.wechat_text_xml(), token="oldToken"))


def test_plaintext_mode_signature_does_not_cover_the_body(adapter: WeChatAdapter) -> None:
    """Documented limitation of WeChat plaintext mode."""
    request = post(samples.wechat_text_xml())
    adapter.verify(request._replace(body=b"<xml>anything</xml>"))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><ToUserName>gh</ToUserName><FromUserName>&lol9;</FromUserName>
<CreateTime>1700000000</CreateTime><MsgType>text</MsgType></xml>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>&xxe;</FromUserName>
<CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<xml><ToUserName>gh</ToUserName></xml>"""

PLAIN_DTD = b"""<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd">
<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>
<CreateTime>1700000000</CreateTime><MsgType>text</MsgType></xml>"""


HARMLESS_DTD = b'<!DOCTYPE xml [<!ELEMENT xml ANY>]>' + samples.wechat_text_xml()


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, PARAMETER_ENTITY, PLAIN_DTD, HARMLESS_DTD],
                         ids=["billion-laughs", "xxe", "parameter-entity", "external-dtd",
                              "any-dtd"])
def test_hostile_xml_is_invalid_and_fast(adapter: WeChatAdapter, body: bytes) -> None:
    request = post(body)
    adapter.verify(request)
    started = time.perf_counter()
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(request)
    assert time.perf_counter() - started < 0.5
    assert caught.value.field == "body"
    assert "passwd" not in str(caught.value)


def test_oversized_body_is_refused_before_parsing(adapter: WeChatAdapter) -> None:
    body = b"<xml>" + b"<a>x</a>" * (MAX_XML_BYTES // 8) + b"</xml>"
    with pytest.raises(InvalidEvent, match="larger than"):
        adapter.normalize(post(body))


def test_safe_mode_bodies_get_a_clear_400(adapter: WeChatAdapter) -> None:
    body = (b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName>"
            b"<Encrypt><![CDATA[q8f3...]]></Encrypt></xml>")
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(post(body))
    assert caught.value.field == "Encrypt"
    assert "plaintext mode" in caught.value.message


@pytest.mark.parametrize(("body", "field"), [
    (b"not xml at all", "body"),
    (b"<xml><ToUserName>gh</ToUserName>", "body"),
    (b"<message><ToUserName>gh</ToUserName></message>", "xml"),
    (b"<xml><ToUserName>gh</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
     "FromUserName"),
    (b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>soon</CreateTime>"
     b"<MsgType>text</MsgType></xml>", "CreateTime"),
])
def test_not_wechat_xml(adapter: WeChatAdapter, body: bytes, field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        adapter.normalize(post(body))
    assert caught.value.field == field
