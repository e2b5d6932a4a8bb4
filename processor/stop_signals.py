"""SIGINT and SIGTERM as an asyncio event, for the long-running asyncio servers (gateway, ui)."""

from __future__ import annotations

import asyncio
import signal
from typing import Final

__all__ = ["remove_stop_handlers", "stop_on_signals"]

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (in the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, event.set)
    return event


def remove_stop_handlers() -> None:
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
