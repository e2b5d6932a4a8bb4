"""Integration tests run against the real single-node Kafka broker of deploy/kafka/kafka.sh."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker's address; starts the project's broker if nothing listens there yet."""
    bootstrap = os.environ.get("MSGKPI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "kafka" / "kafka.sh"), "start"],
        check=True,
        env={**os.environ, "MSGKPI_KAFKA_BOOTSTRAP": bootstrap},
        timeout=900,
    )
    yield bootstrap
