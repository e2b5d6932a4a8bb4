"""The Meta signature and handshake scheme (processor/channels/meta.py)."""

from __future__ import annotations

import pytest

from processor.channels._support import SecretSet
from processor.channels.base import SignatureInvalid, WebhookRequest
from processor.channels.meta import meta_handshake, meta_signature, verify_meta_signature
from tests.unit.channels.support import NOW_MS, get

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_HEX = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def post(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {} if signature is None else {"X-Hub-Signature-256": signature}
    return WebhookRequest("POST", "/webhooks/whatsapp", {}, headers, body, NOW_MS)


def test_github_vector_matches_our_hmac_helper() -> None:
    assert meta_signature(GITHUB_SECRET.encode(), GITHUB_BODY) == f"sha256={GITHUB_HEX}"


def test_github_vector_verifies_and_a_changed_body_does_not() -> None:
    secrets = SecretSet(GITHUB_SECRET)
    verify_meta_signature(post(GITHUB_BODY, f"sha256={GITHUB_HEX}"), secrets)
    with pytest.raises(SignatureInvalid):
        verify_meta_signature(post(b"Hello, World?", f"sha256={GITHUB_HEX}"), secrets)


def test_header_name_is_matched_case_insensitively_on_a_plain_dict() -> None:
    request = WebhookRequest("POST", "/", {}, {"x-hub-signature-256": f"sha256={GITHUB_HEX}"},
                             GITHUB_BODY, NOW_MS)
    verify_meta_signature(request, SecretSet(GITHUB_SECRET))


@pytest.mark.parametrize("signature", [
    None,
    "",
    GITHUB_HEX,                          # no sha256= prefix
    f"sha1={GITHUB_HEX}",
    f"sha256={GITHUB_HEX[:-1]}",         # odd length
    f"sha256={GITHUB_HEX[:-2]}",         # too short
    f"sha256={GITHUB_HEX}00",            # too long
    "sha256=" + "zz" * 32,               # not hex
    "sha256=" + "é" * 64,                # non-ASCII
    "sha256=\udcff" + "0" * 63,          # lone surrogate from a bad header decode
    f"sha256={GITHUB_HEX[:32]} {GITHUB_HEX[32:]}",
])
def test_malformed_or_wrong_signatures_raise_signature_invalid_only(
    signature: str | None,
) -> None:
    with pytest.raises(SignatureInvalid):
        verify_meta_signature(post(GITHUB_BODY, signature), SecretSet(GITHUB_SECRET))


def test_rotation_accepts_current_and_previous_secret_only() -> None:
    secrets = SecretSet("new-secret, old-secret")
    for key in ("new-secret", "old-secret"):
        verify_meta_signature(post(b"{}", meta_signature(key.encode(), b"{}")), secrets)
    with pytest.raises(SignatureInvalid):
        verify_meta_signature(post(b"{}", meta_signature(b"other", b"{}")), secrets)


def meta_get(**query: str) -> WebhookRequest:
    return get("whatsapp", query)


def test_handshake_answers_the_challenge_for_the_right_token() -> None:
    reply = meta_handshake(
        meta_get(**{"hub.mode": "subscribe", "hub.verify_token": "tok",
                    "hub.challenge": "1158201444"}),
        SecretSet("tok"),
    )
    assert (reply.status, reply.body) == (200, b"1158201444")


@pytest.mark.parametrize(("query", "status"), [
    ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403),
    ({"hub.mode": "subscribe", "hub.challenge": "1"}, 403),
    ({"hub.mode": "subscribe", "hub.verify_token": "tok\u00e9", "hub.challenge": "1"}, 403),
    ({"hub.mode": "unsubscribe", "hub.verify_token": "tok", "hub.challenge": "1"}, 400),
    ({"hub.mode": "subscribe", "hub.verify_token": "tok"}, 400),
])
def test_handshake_refuses_wrong_token_or_shape(query: dict[str, str], status: int) -> None:
    reply = meta_handshake(meta_get(**query), SecretSet("tok"))
    assert reply.status == status
    assert b"error" in reply.body


def test_handshake_accepts_a_rotated_verify_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "old", "hub.challenge": "42"}
    assert meta_handshake(meta_get(**query), SecretSet("new,old")).body == b"42"
