"""Settings from the environment: the KPI-shaping settings and their defaults."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from processor.config import Settings
from processor.errors import ConfigError
from processor.worker.app import build_worker


def test_defaults_follow_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.grace_ms == 10 * 60 * 1000
    assert settings.reopen_window_ms == 72 * 3600 * 1000
    assert settings.windows == ("5m", "1h", "24h")


def test_reopen_window_and_grace_are_read_in_seconds() -> None:
    settings = Settings.from_env({"MSGKPI_REOPEN_WINDOW_S": "900", "MSGKPI_GRACE_S": "1.5"})
    assert settings.reopen_window_ms == 900_000
    assert settings.grace_ms == 1_500


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="MSGKPI_REOPEN_WINDOW_S"):
        Settings.from_env({"MSGKPI_REOPEN_WINDOW_S": "three days"})


def test_a_worker_instance_id_turns_on_static_group_membership(tmp_path: object) -> None:
    assert Settings.from_env({}).worker_instance_id is None
    settings = Settings.from_env({"MSGKPI_WORKER_INSTANCE_ID": "msgkpi-worker-0",
                                  "MSGKPI_WORKER_DATA_DIR": str(tmp_path)})
    assert settings.worker_instance_id == "msgkpi-worker-0"
    app = build_worker(settings, CollectorRegistry()).app
    assert app.conf.consumer_group_instance_id == "msgkpi-worker-0"
