"""build_adapters: which channels run, what the log says, and that secrets stay out of it."""

from __future__ import annotations

import logging

import pytest

from processor.channels.registry import META_CHANNELS, PLATFORM_CHANNELS, build_adapters
from processor.config import CHANNELS, Settings
from processor.errors import ConfigError

SECRET_VALUE = "s3cr3t-value-never-logged"


def env_for(channels: tuple[str, ...], *, tokens: bool = True) -> dict[str, str]:
    env = {f"MSGKPI_{ch.upper()}_SECRET": f"{SECRET_VALUE}-{ch}" for ch in channels}
    if tokens:
        env.update({f"MSGKPI_{ch.upper()}_VERIFY_TOKEN": f"tok-{SECRET_VALUE}"
                    for ch in channels if ch in META_CHANNELS})
    return env


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger("msgkpi.test.registry")


def test_registry_covers_every_platform_channel() -> None:
    assert set(PLATFORM_CHANNELS) == set(CHANNELS)


def test_all_configured_channels_are_built(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    adapters = build_adapters(Settings.from_env(env_for(CHANNELS)), logger)
    assert sorted(adapters) == sorted(CHANNELS)
    assert all(adapter.name == channel for channel, adapter in adapters.items())
    assert SECRET_VALUE not in caplog.text
    assert all(SECRET_VALUE not in repr(adapter) for adapter in adapters.values())


def test_missing_secrets_disable_channels_with_a_hint(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    adapters = build_adapters(Settings.from_env(env_for(("telegram", "chatwoot"))), logger)
    assert sorted(adapters) == ["chatwoot", "telegram"]
    disabled = [r.getMessage() for r in caplog.records if "disabled" in r.getMessage()]
    assert len(disabled) == len(CHANNELS) - 2
    assert "channel line disabled: set MSGKPI_LINE_SECRET to enable it" in disabled
    assert ("channel whatsapp disabled: set MSGKPI_WHATSAPP_SECRET and "
            "MSGKPI_WHATSAPP_VERIFY_TOKEN to enable it") in disabled
    assert SECRET_VALUE not in caplog.text


def test_meta_channel_without_verify_token_is_disabled(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    adapters = build_adapters(Settings.from_env(env_for(("messenger", "x"), tokens=False)), logger)
    assert list(adapters) == ["x"]
    assert "set MSGKPI_MESSENGER_VERIFY_TOKEN to enable it" in caplog.text


def test_a_secret_of_only_commas_is_a_config_error(logger: logging.Logger) -> None:
    with pytest.raises(ConfigError) as caught:
        build_adapters(Settings.from_env({"MSGKPI_LINE_SECRET": " , "}), logger)
    assert caught.value.key == "MSGKPI_LINE_SECRET"


def test_no_secrets_means_no_adapters(logger: logging.Logger) -> None:
    assert build_adapters(Settings(), logger) == {}
