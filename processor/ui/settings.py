"""Settings of `msgkpi ui` from the environment (the rest comes from `processor.config`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from processor.errors import ConfigError

__all__ = ["DEFAULT_DOCS_URL", "DEFAULT_GRAFANA_URL", "UiSettings"]

DEFAULT_DOCS_URL: Final = "https://msgkpi-docs.invalid"
"""Where the runbooks (docs/) are published unless MSGKPI_DOCS_URL says otherwise."""
DEFAULT_GRAFANA_URL: Final = "http://127.0.0.1:3000"
"""A local Grafana with the provisioned dashboards (deploy/grafana)."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(name, f"must be a port number, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be more than 0, got {raw!r}")
    return value


def _absolute_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = (env.get(name) or "").strip() or default
    if raw is not None and not raw.startswith(("http://", "https://")):
        raise ConfigError(name, f"must be an absolute http(s) URL, got {raw!r}")
    return None if raw is None else raw.rstrip("/")


def _urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    urls = tuple(part.strip().rstrip("/") for part in env.get(name, "").split(",")
                 if part.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(name, f"{url!r} is not an http(s) URL")
    return urls


@dataclass(frozen=True, slots=True)
class UiSettings:
    """Where the page listens, who may read it, where alerts go and what they link to."""

    host: str = "127.0.0.1"
    port: int = 8070
    token: str | None = field(default=None, repr=False)
    """MSGKPI_UI_TOKEN: when set, the page and the API need it; never logged."""
    alertmanager_urls: tuple[str, ...] = ()
    """MSGKPI_ALERTMANAGER_URL (comma-separated): per-conversation alerts go there; empty =
    no alerts are sent."""
    docs_url: str = DEFAULT_DOCS_URL
    """MSGKPI_DOCS_URL: where docs/ is published; alerts link to their runbook there."""
    grafana_url: str = DEFAULT_GRAFANA_URL
    """MSGKPI_GRAFANA_URL: alerts link to <grafana_url>/d/msgkpi-support-kpis."""
    public_url: str | None = None
    """MSGKPI_UI_PUBLIC_URL: the page's address as users reach it (alerts link to it)."""
    alert_resend_s: float = 60.0
    """Active alerts are sent again this often; they end by themselves after 4 intervals
    without a resend."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UiSettings:
        env = os.environ if env is None else env
        host = env.get("MSGKPI_UI_HOST") or "127.0.0.1"
        port = _port(env, "MSGKPI_UI_PORT", 8070)
        return cls(
            host=host,
            port=port,
            token=env.get("MSGKPI_UI_TOKEN") or None,
            alertmanager_urls=_urls(env, "MSGKPI_ALERTMANAGER_URL"),
            docs_url=_absolute_url(env, "MSGKPI_DOCS_URL", DEFAULT_DOCS_URL) or DEFAULT_DOCS_URL,
            grafana_url=(_absolute_url(env, "MSGKPI_GRAFANA_URL", DEFAULT_GRAFANA_URL)
                         or DEFAULT_GRAFANA_URL),
            public_url=_absolute_url(env, "MSGKPI_UI_PUBLIC_URL", f"http://{host}:{port}"),
            alert_resend_s=_seconds(env, "MSGKPI_ALERT_RESEND_S", 60.0),
        )
