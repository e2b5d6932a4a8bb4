"""The container image's HEALTHCHECK: `python -m processor.healthcheck`.

One image runs every `msgkpi` subcommand, so the check asks the container's main process
(PID 1) which one it is: the gateway, the worker and the live page are healthy when their
`/healthz` answers 200 on the port they serve; the other subcommands (simulate, replay) have no
HTTP server and are healthy while they run. Exit 0 healthy, 1 unhealthy (Docker's convention).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

__all__ = ["health_url", "main", "subcommand"]

_SERVERS: Final = {
    "gateway": ("MSGKPI_GATEWAY_HOST", "MSGKPI_GATEWAY_PORT", "8080"),
    "worker": ("MSGKPI_WORKER_HOST", "MSGKPI_WORKER_PORT", "6066"),
    "ui": ("MSGKPI_UI_HOST", "MSGKPI_UI_PORT", "8070"),
}
_ANY_ADDRESS: Final = ("", "0.0.0.0", "::", "[::]")
_TIMEOUT_S: Final = 4.0


def subcommand(argv: Sequence[str]) -> str | None:
    """The msgkpi subcommand in a process's argv (`msgkpi gateway`, `python -m ... worker`)."""
    for argument in argv[1:]:
        if argument in _SERVERS or argument in ("simulate", "replay"):
            return argument
    return None


def health_url(command: str | None, env: Mapping[str, str]) -> str | None:
    """Where the subcommand answers `/healthz`; None for one without an HTTP server."""
    if command not in _SERVERS:
        return None
    host_variable, port_variable, default_port = _SERVERS[command]
    host = env.get(host_variable, "127.0.0.1")
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    return f"http://{host}:{env.get(port_variable) or default_port}/healthz"


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(cmdline: Path = Path("/proc/1/cmdline"), env: Mapping[str, str] | None = None) -> int:
    argv = cmdline.read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
    url = health_url(subcommand(argv), os.environ if env is None else env)
    if url is None:
        return 0
    if _answers_200(url):
        return 0
    print(f"unhealthy: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
