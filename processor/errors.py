"""One root error type for msgkpi; subclasses say what the caller can do about them."""

from __future__ import annotations

__all__ = ["ConfigError", "InvalidEvent", "MsgkpiError", "SinkUnavailable"]


class MsgkpiError(Exception):
    """Root of every error msgkpi raises on purpose."""

    retriable: bool = False


class InvalidEvent(MsgkpiError, ValueError):
    """Input that is not a valid canonical event; `field` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class SinkUnavailable(MsgkpiError):
    """Kafka did not acknowledge a write in time; the outcome is unknown, a resend is safe."""

    retriable = True


class ConfigError(MsgkpiError, ValueError):
    """A setting or policy file entry is wrong; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
