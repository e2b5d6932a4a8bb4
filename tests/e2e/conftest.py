"""End-to-end tests run against the real broker of deploy/kafka/kafka.sh, like integration."""

from __future__ import annotations

from tests.integration.conftest import kafka_bootstrap

__all__ = ["kafka_bootstrap"]
