"""What the adapters share (processor/channels/_support.py): secrets with rotation, platform
timestamps, and the agent/bot marker."""

from __future__ import annotations

import pytest

from processor.channels._support import SecretSet, epoch_ms, parse_marker
from processor.errors import InvalidEvent
from processor.events import Author


def test_secret_set_parses_rotation_and_hides_values() -> None:
    secrets = SecretSet(" current ,previous,")
    assert secrets.keys == (b"current", b"previous")
    assert secrets.current == b"current"
    assert "current" not in repr(secrets)
    with pytest.raises(ValueError):
        SecretSet(" , ")


@pytest.mark.parametrize(("value", "unit", "expected"), [
    ("1767225600", "s", 1_767_225_600_000),
    (1767225600, "s", 1_767_225_600_000),
    (1767225600.5, "s", 1_767_225_600_500),
    (1767225600123, "ms", 1_767_225_600_123),
    ("1767225600123", "ms", 1_767_225_600_123),
])
def test_epoch_ms_converts_platform_units(value: object, unit: str, expected: int) -> None:
    assert epoch_ms(value, "t", unit=unit) == expected


@pytest.mark.parametrize("value", [None, True, "", "12a", "\u00b2", -1, "-5", 10**17, "1e9", []])
def test_epoch_ms_rejects_non_times(value: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        epoch_ms(value, "entry[0].timestamp", unit="s")
    assert caught.value.field == "entry[0].timestamp"


@pytest.mark.parametrize(("marker", "expected"), [
    ("agent:alice", (Author.AGENT, "alice")),
    ("bot:faq-bot", (Author.BOT, "faq-bot")),
    ("Agent: 42 ", (Author.AGENT, "42")),
    ("agent:", (Author.AGENT, "unknown")),
    ("campaign:7", None),
    ("alice", None),
    ('{"source":"api"}', None),
    (None, None),
])
def test_parse_marker(marker: str | None, expected: tuple[Author, str] | None) -> None:
    assert parse_marker(marker) == expected
