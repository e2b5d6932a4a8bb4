"""The image's HEALTHCHECK: which URL each subcommand is checked on, and the answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from processor.healthcheck import health_url, main, subcommand


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def cmdline(tmp_path: Path, *argv: str) -> Path:
    path = tmp_path / "cmdline"
    path.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return path


@pytest.mark.parametrize(("argv", "command"), [
    (["/opt/msgkpi/bin/python", "/opt/msgkpi/bin/msgkpi", "gateway"], "gateway"),
    (["msgkpi", "worker"], "worker"),
    (["msgkpi", "ui"], "ui"),
    (["msgkpi", "replay", "gateway.jsonl"], "replay"),
    (["msgkpi", "--help"], None),
])
def test_the_subcommand_is_read_from_the_main_process(argv: list[str],
                                                      command: str | None) -> None:
    assert subcommand(argv) == command


def test_servers_are_checked_on_loopback_at_their_port() -> None:
    env = {"MSGKPI_GATEWAY_HOST": "0.0.0.0", "MSGKPI_WORKER_PORT": "7000"}
    assert health_url("gateway", env) == "http://127.0.0.1:8080/healthz"
    assert health_url("worker", env) == "http://127.0.0.1:7000/healthz"
    assert health_url("ui", {"MSGKPI_UI_HOST": "0.0.0.0"}) == "http://127.0.0.1:8070/healthz"
    assert health_url("simulate", env) is None


def test_a_worker_answering_healthz_is_healthy(tmp_path: Path, healthz_port: int) -> None:
    env = {"MSGKPI_WORKER_HOST": "0.0.0.0", "MSGKPI_WORKER_PORT": str(healthz_port)}
    assert main(cmdline(tmp_path, "msgkpi", "worker"), env) == 0


def test_a_gateway_not_answering_is_unhealthy(tmp_path: Path, healthz_port: int) -> None:
    env = {"MSGKPI_WORKER_PORT": str(healthz_port), "MSGKPI_GATEWAY_PORT": "1"}
    assert main(cmdline(tmp_path, "msgkpi", "gateway"), env) == 1


def test_a_running_simulator_is_healthy(tmp_path: Path) -> None:
    assert main(cmdline(tmp_path, "msgkpi", "simulate", "--rate", "2"), {}) == 0
