"""The platform adapters this deployment runs, built from the settings.

A channel runs only when its secret is configured (`MSGKPI_<CHANNEL>_SECRET`; Meta channels
also need `MSGKPI_<CHANNEL>_VERIFY_TOKEN` for the subscription handshake). Every left-out channel
gets one log line naming the variable that enables it. Secret values are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from processor.channels.base import ChannelAdapter
from processor.channels.chatwoot import ChatwootAdapter
from processor.channels.instagram import InstagramAdapter
from processor.channels.line import LineAdapter
from processor.channels.messenger import MessengerAdapter
from processor.channels.telegram import TelegramAdapter
from processor.channels.wechat import WeChatAdapter
from processor.channels.whatsapp import WhatsAppAdapter
from processor.channels.x import XAdapter
from processor.config import Settings
from processor.errors import ConfigError

__all__ = ["META_CHANNELS", "PLATFORM_CHANNELS", "build_adapters"]

META_CHANNELS: Final = frozenset({"whatsapp", "messenger", "instagram"})
"""Channels whose GET handshake needs a verify token."""

_Factory = Callable[[str, str], ChannelAdapter]
_FACTORIES: Final[dict[str, _Factory]] = {
    "whatsapp": lambda secret, token: WhatsAppAdapter(secret, token),
    "messenger": lambda secret, token: MessengerAdapter(secret, token),
    "instagram": lambda secret, token: InstagramAdapter(secret, token),
    "telegram": lambda secret, _token: TelegramAdapter(secret),
    "line": lambda secret, _token: LineAdapter(secret),
    "wechat": lambda secret, _token: WeChatAdapter(secret),
    "x": lambda secret, _token: XAdapter(secret),
    "chatwoot": lambda secret, _token: ChatwootAdapter(secret),
}
PLATFORM_CHANNELS: Final = tuple(_FACTORIES)


def _missing(settings: Settings, channel: str) -> list[str]:
    prefix = f"MSGKPI_{channel.upper()}"
    missing = [] if settings.secrets.get(channel) else [f"{prefix}_SECRET"]
    if channel in META_CHANNELS and not settings.verify_tokens.get(channel):
        missing.append(f"{prefix}_VERIFY_TOKEN")
    return missing


def build_adapters(settings: Settings, logger: logging.Logger) -> dict[str, ChannelAdapter]:
    """One adapter per configured platform, keyed by channel name.

    Raises `ConfigError` when a secret variable is set but holds no secret (e.g. only commas).
    """
    adapters: dict[str, ChannelAdapter] = {}
    for channel, factory in _FACTORIES.items():
        missing = _missing(settings, channel)
        if missing:
            logger.info("channel %s disabled: set %s to enable it", channel,
                        " and ".join(missing))
            continue
        secret = settings.secrets[channel]
        token = settings.verify_tokens.get(channel, "")
        try:
            adapters[channel] = factory(secret, token)
        except ValueError as exc:
            name = "SECRET" if not secret.replace(",", "").strip() else "VERIFY_TOKEN"
            raise ConfigError(f"MSGKPI_{channel.upper()}_{name}", str(exc)) from None
        logger.info("channel %s enabled", channel)
    return adapters
