"""Real msgkpi processes for integration tests: `msgkpi gateway` and `msgkpi worker` as
subprocesses on free ports, each test with its own topics and consumer group."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
MSGKPI = REPO_ROOT / ".venv" / "bin" / "msgkpi"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def http_post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(name, labels): value}."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, raw_labels, value = match.groups()
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', raw_labels or ""))
        samples[(name, labels)] = float(value)
    return samples


@dataclass
class Deployment:
    """Names shared by the processes of one test: topic prefix, consumer group, data dir."""

    bootstrap: str
    tag: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "MSGKPI_KAFKA_BOOTSTRAP": self.bootstrap,
            "MSGKPI_TOPIC_PREFIX": f"msgkpi-test-{self.tag}",
            "MSGKPI_APP_ID": f"msgkpi-test-{self.tag}",
            "MSGKPI_SESSION_TIMEOUT_S": "6",
            "MSGKPI_LOG_LEVEL": "info",
            **self.extra_env,
            **overrides,
        }


class Service:
    """One `msgkpi <command>` subprocess with its log in a file."""

    def __init__(self, deployment: Deployment, command: str, port: int, log_dir: Path,
                 name: str | None = None) -> None:
        self.command = command
        self.port = port
        self.name = name or command
        self.log_path = log_dir / f"{self.name}.log"
        port_var = {"gateway": "MSGKPI_GATEWAY_PORT",
                    "ui": "MSGKPI_UI_PORT"}.get(command, "MSGKPI_WORKER_PORT")
        env = deployment.env(**{
            port_var: str(port),
            "MSGKPI_WORKER_DATA_DIR": str(log_dir / f"{self.name}-data"),
        })
        self._log: IO[bytes] = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(MSGKPI), command], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_http(self, path: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log_tail()}")
            if http_get(self.url + path, timeout=2)[0] == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready on {path}: {self.log_tail()}")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = http_get(self.url + "/metrics")
        return parse_metrics(body.decode()) if status == 200 else {}

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.3, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
