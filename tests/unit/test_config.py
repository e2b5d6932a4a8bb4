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
    # The web address is part of it (see static_member_id): Faust's assignor checks it.
    assert app.conf.consumer_group_instance_id == "msgkpi-worker-0@127.0.0.1:6066"
    assert str(app.conf.canonical_url) == "http://127.0.0.1:6066"
    assert build_worker(Settings.from_env({}), CollectorRegistry()).app.conf \
        .consumer_group_instance_id is None


def test_topics_are_replicated_once_and_take_the_brokers_min_insync_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.replication_factor == 1
    assert settings.min_insync_replicas is None
    assert settings.topic_configs() == {}
    assert settings.kafka_security.protocol == "PLAINTEXT"


def test_production_replication_sets_min_insync_replicas_on_the_topics() -> None:
    settings = Settings.from_env({"MSGKPI_REPLICATION_FACTOR": "3",
                                  "MSGKPI_MIN_INSYNC_REPLICAS": "2"})
    assert settings.replication_factor == 3
    assert settings.topic_configs() == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(("env", "variable"), [
    ({"MSGKPI_REPLICATION_FACTOR": "0"}, "MSGKPI_REPLICATION_FACTOR"),
    ({"MSGKPI_MIN_INSYNC_REPLICAS": "2"}, "MSGKPI_MIN_INSYNC_REPLICAS"),
    ({"MSGKPI_REPLICATION_FACTOR": "3", "MSGKPI_MIN_INSYNC_REPLICAS": "0"},
     "MSGKPI_MIN_INSYNC_REPLICAS"),
])
def test_impossible_replication_settings_name_the_variable(
        env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert raised.value.key == variable


def test_processes_bind_loopback_unless_told_otherwise() -> None:
    settings = Settings.from_env({})
    assert (settings.gateway_host, settings.worker_host) == ("127.0.0.1", "127.0.0.1")
    settings = Settings.from_env({"MSGKPI_GATEWAY_HOST": "0.0.0.0",
                                  "MSGKPI_WORKER_HOST": "0.0.0.0"})
    assert (settings.gateway_host, settings.worker_host) == ("0.0.0.0", "0.0.0.0")
