"""The live page in a real browser: Debian's headless Chromium opens `msgkpi ui` on a running
stack (real broker, gateway, worker, ui) fed by the simulator, and sees the channel tiles, the
agent table and the at-risk list appear and change; a conversation at risk counts down and
leaves the list once an agent answers. A screenshot is saved in the test's tmp dir (and, with
MSGKPI_UI_SCREENSHOT=path, copied there: that is how docs/ui.png is made)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.browser import Chromium, Page
from tests.integration.services import MSGKPI, Deployment, Service, free_port, wait_until
from tests.integration.test_sla_live import message, now_ms, post

pytestmark = pytest.mark.e2e

SIM_CHANNELS = ("whatsapp", "telegram", "chatwoot")
SIM_PAST_MS = 35 * 60_000
TARGET_S = 30
POLICY_FILE = f"""\
policies:
  - name: ui-urgent
    match: {{channel: "*", priority: urgent}}
    first_response: {TARGET_S}s
    at_risk: 0.2
    breach_severity: page
    conversation_url: "https://desk.example/conversations/{{conversation_id}}"
  - name: ui-standard
    match: {{channel: "*"}}
    first_response: 15m
"""


@dataclass
class UiStack:
    gateway: Service
    worker: Service
    ui: Service
    simulator: subprocess.Popen[bytes]


@pytest.fixture
def ui_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[UiStack]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_FILE)
    deployment = Deployment(kafka_bootstrap, extra_env={
        "MSGKPI_CONFIG": str(policy), "MSGKPI_EVENTS_PARTITIONS": "3",
        "MSGKPI_SNAPSHOT_INTERVAL_S": "1"})
    services: list[Service] = []
    simulator: subprocess.Popen[bytes] | None = None
    try:
        for command in ("gateway", "worker", "ui"):
            services.append(Service(deployment, command, free_port(), tmp_path))
        gateway, worker, ui = services
        gateway.wait_http("/readyz")
        worker.wait_http("/metrics")
        ui.wait_http("/readyz")
        start_ms = now_ms() - SIM_PAST_MS
        # Warm up in simulated time: an event at the wall clock would carry the windows'
        # watermark 35 minutes past the simulator's events.
        post(gateway, message(f"warmup-{uuid.uuid4().hex[:6]}", "customer", start_ms, "line"))
        wait_until(lambda: worker.sample("msgkpi_worker_events_total") >= 1, 90,
                   what=f"the worker to consume; log:\n{worker.log_tail()}")
        simulator = _simulator(deployment, gateway, tmp_path, start_ms)
        yield UiStack(gateway, worker, ui, simulator)
    finally:
        if simulator is not None and simulator.poll() is None:
            simulator.terminate()
            simulator.wait(timeout=30)
        for service in reversed(services):
            service.stop()


def _simulator(deployment: Deployment, gateway: Service, tmp_path: Path, start: int
               ) -> subprocess.Popen[bytes]:
    """Simulated time runs 30x from `start`, 35 minutes ago: 70 s of traffic that catches up
    with the wall clock as it ends."""
    log = (tmp_path / "simulate.log").open("wb")
    return subprocess.Popen(
        [str(MSGKPI), "simulate", "--rate", "4", "--speed", "30", "--start", str(start),
         "--duration", "70", "--transport", "canonical", "--channels", ",".join(SIM_CHANNELS),
         "--seed", "13", "--progress", "0", "--gateway", gateway.url],
        env=deployment.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    browser = Chromium(tmp_path)
    try:
        yield await browser.new_page()
    finally:
        await browser.stop()


TILES = "[...document.querySelectorAll('#tiles .tile')].map(t => t.dataset.channel)"
TILE_TEXT = "document.querySelector('#tiles').innerText"
AGENT_ROWS = ("[...document.querySelectorAll('#agents tbody tr[data-agent]')]"
              ".map(r => r.innerText)")


def at_risk_cell(conversation: str) -> str:
    return (f"(document.querySelector('#at-risk tr[data-conversation=\"{conversation}\"] "
            f".time-left') || {{}}).textContent || ''")


async def test_live_page_shows_and_updates_tiles_agents_and_at_risk(
    ui_stack: UiStack, page: Page, tmp_path: Path,
) -> None:
    began = time.monotonic()
    await page.goto(ui_stack.ui.url + "/")

    # Tiles for every simulated channel and an agent table appear...
    await page.wait_for(f"{json.dumps(SIM_CHANNELS)}.every(c => {TILES}.includes(c))", 90,
                        "a tile per simulated channel")
    agents = await page.wait_for(f"{AGENT_ROWS}.length > 0 && {AGENT_ROWS}", 60,
                                 "rows in the agent table")
    tiles = await page.evaluate(TILE_TEXT)
    assert "FRT p50 / p90" in tiles and "reply rate" in tiles
    # ... and change as the simulator keeps posting.
    await page.wait_for(f"{TILE_TEXT} !== {tiles!r}", 60, "the tiles to change")
    await page.wait_for(f"JSON.stringify({AGENT_ROWS}) !== {_js(agents)}", 60,
                        "the agent table to change")

    # A conversation of our own goes at risk (6 s into a 30 s target) and counts down.
    conversation = f"ui-e2e-{uuid.uuid4().hex[:8]}"
    post(ui_stack.gateway, message(conversation, "customer", now_ms(), "whatsapp",
                                   priority="urgent"))
    first = await page.wait_for(at_risk_cell(conversation), TARGET_S - 8,
                                f"{conversation} in the at-risk list")
    await page.wait_for(f"{at_risk_cell(conversation)} !== {first!r}", 5,
                        "the time left to count down")
    link = await page.evaluate(
        f"document.querySelector('#at-risk tr[data-conversation=\"{conversation}\"] a').href")
    assert link == f"https://desk.example/conversations/{conversation}"
    await _screenshot(page, tmp_path)

    # The agent answers: the conversation leaves the at-risk list.
    post(ui_stack.gateway, message(conversation, "agent", now_ms(), "whatsapp",
                                   agent_id="ana", priority="urgent"))
    await page.wait_for(f"{at_risk_cell(conversation)} === ''", 15,
                        f"{conversation} to leave the at-risk list")
    assert await page.evaluate("document.body.dataset.updates > 3")
    print(f"\nlive page checks took {time.monotonic() - began:.1f} s; first time left {first}")


def _js(value: object) -> str:
    """A JavaScript string literal holding the JSON of `value`."""
    return json.dumps(json.dumps(value))


async def _screenshot(page: Page, tmp_path: Path) -> None:
    path = tmp_path / "ui.png"
    await page.screenshot(path)
    assert path.stat().st_size > 10_000
    target = os.environ.get("MSGKPI_UI_SCREENSHOT")
    if target:
        shutil.copyfile(path, target)
    print(f"\nscreenshot: {path}")
