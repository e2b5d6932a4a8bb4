"""`msgkpi ui`: the live page for support leads and the per-conversation alert sender.

One process: a Kafka feed (`feed.py`) keeps the view (`view.py`, `alerts.py`) current, the
HTTP app (`web.py`) serves it, and, when MSGKPI_ALERTMANAGER_URL is set, `AlertSender` posts
the conversations' alerts to Alertmanager. They share the alert book: the page's at-risk and
breached lists are exactly the alerts that are active at Alertmanager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Final

from aiohttp import web

from processor.config import Settings
from processor.errors import ConfigError
from processor.export.alertmanager import (
    AlertLinks,
    AlertmanagerClient,
    AlertmanagerUnavailable,
    conversation_link,
    to_alertmanager,
)
from processor.kpi.policy import PolicySet
from processor.policy_file import load_policy_file
from processor.stop_signals import remove_stop_handlers, stop_on_signals
from processor.ui.alerts import AlertBook, SlaEvent
from processor.ui.feed import UiFeed
from processor.ui.settings import UiSettings
from processor.ui.view import KpiBoard, page_json, window_ms
from processor.ui.web import create_app

__all__ = ["AlertSender", "run_ui", "serve"]

log = logging.getLogger("msgkpi.ui")

_KPI_LOOKBACK_MARGIN_MS: Final = 3600_000
_ACTIVE_FOR_RESENDS: Final = 4
_RETRY_S: Final = 5.0
_MIN_GAP_S: Final = 1.0
SUPPORT_DASHBOARD_UID: Final = "msgkpi-support-kpis"


def _now_ms() -> int:
    return int(time.time() * 1000)


class AlertSender:
    """Posts every kept alert to Alertmanager when the book changed (at most once a second),
    and every resend interval; failures are logged and retried 5 s later."""

    def __init__(self, book: AlertBook, policies: PolicySet, links: AlertLinks,
                 client: AlertmanagerClient, resend_s: float) -> None:
        self._book = book
        self._policies = policies
        self._links = links
        self._client = client
        self._resend_s = resend_s
        self._wake = asyncio.Event()
        self.rounds = 0

    def changed(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled; owns the client's HTTP session."""
        async with self._client:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._resend_s)
                self._wake.clear()
                sent = await self.send_once()
                # a failure waits before the retry; a busy book sends at most once a second
                await asyncio.sleep(_MIN_GAP_S if sent else _RETRY_S)

    async def send_once(self) -> bool:
        now = _now_ms()
        self._book.expire(now)
        active_for = int(self._resend_s * 1000 * _ACTIVE_FOR_RESENDS)
        alerts = [to_alertmanager(alert, self._policies, self._links, now, active_for)
                  for alert in self._book.alerts()]
        self.rounds += 1
        if not alerts:
            return True
        try:
            await self._client.post(alerts)
        except AlertmanagerUnavailable as exc:
            log.warning("alerts not delivered, retrying: %s", exc)
            return False
        return True


def _policies(settings: Settings) -> PolicySet:
    return PolicySet() if settings.config_path is None else load_policy_file(settings.config_path)


def run_ui(settings: Settings) -> int:
    """Run `msgkpi ui` in the foreground; the exit status for the command line."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ui = UiSettings.from_env()
        policies = _policies(settings)
    except ConfigError as exc:
        print(f"msgkpi: configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, ui, policies))


async def serve(settings: Settings, ui: UiSettings, policies: PolicySet,
                stop: asyncio.Event | None = None) -> int:
    """Serve until `stop` is set (or, when none is given, until SIGINT/SIGTERM)."""
    stop_event = stop if stop is not None else stop_on_signals()
    board, book = KpiBoard(settings.windows), AlertBook()
    sender = _sender(ui, book, policies)
    feed = UiFeed(settings, f"{settings.app_id}-ui", board, book,
                  kpi_lookback_ms=max(map(window_ms, settings.windows)) + _KPI_LOOKBACK_MARGIN_MS,
                  alerts_changed=sender.changed if sender else _nothing, clock_ms=_now_ms)
    app = _web_app(board, book, feed, ui, policies)
    runner = web.AppRunner(app, access_log=None)  # query strings may carry the token
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            await web.TCPSite(runner, ui.host, ui.port).start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", ui.host, ui.port, exc)
            return 1
        await feed.start()
        if sender is not None:
            tasks.append(asyncio.create_task(sender.run(), name="msgkpi-alerts"))
        log.info("ui on http://%s:%d (token %s); alerts to %s", ui.host, ui.port,
                 "required" if ui.token else "not required",
                 ", ".join(ui.alertmanager_urls) or "nowhere (MSGKPI_ALERTMANAGER_URL unset)")
        await stop_event.wait()
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await feed.stop()
        await runner.cleanup()
        if stop is None:
            remove_stop_handlers()


def _web_app(board: KpiBoard, book: AlertBook, feed: UiFeed, ui: UiSettings,
             policies: PolicySet) -> web.Application:
    def link(event: SlaEvent) -> str | None:
        return conversation_link(_template(policies, event.policy), event)

    def page() -> dict[str, Any]:
        return page_json(board, book, _now_ms(), ready=feed.ready.is_set(), link=link)

    return create_app(page, feed.ready.is_set, ui.token,
                      secure_cookie=(ui.public_url or "").startswith("https://"))


def _nothing() -> None:
    pass


def _template(policies: PolicySet, name: str) -> str | None:
    try:
        return policies.policy(name).conversation_url
    except KeyError:
        return None


def _sender(ui: UiSettings, book: AlertBook, policies: PolicySet) -> AlertSender | None:
    if not ui.alertmanager_urls:
        return None
    links = AlertLinks(ui.docs_url, f"{ui.grafana_url}/d/{SUPPORT_DASHBOARD_UID}", ui.public_url)
    return AlertSender(book, policies, links, AlertmanagerClient(ui.alertmanager_urls),
                       ui.alert_resend_s)
