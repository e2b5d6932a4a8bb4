"""Debian's headless Chromium, driven over the Chrome DevTools Protocol (a websocket, with
aiohttp): open a page, evaluate JavaScript in it, take a screenshot. No browser download, no
driver binary: `chromium` from apt (deploy/install-tools.sh installs it)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         "--window-size=1400,1100", "about:blank")


class BrowserError(AssertionError):
    """The browser or the page did not do what the test expected."""


class Page:
    """One tab, over its DevTools websocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        while True:
            reply = await self._socket.receive_json(timeout=30)
            if reply.get("id") != message_id:
                continue  # an event, or the answer to an earlier call
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error']}")
            result: dict[str, Any] = reply.get("result", {})
            return result

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float, what: str) -> Any:
        """Poll until the expression is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.3)
        raise BrowserError(f"timed out after {timeout_s}s waiting for {what} (last: {value!r})")

    async def goto(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", 30, f"{url} to load")

    async def screenshot(self, path: Path, *, full_page: bool = True) -> None:
        """A PNG of the whole page, or of the window only."""
        shot = await self.call("Page.captureScreenshot", format="png",
                               captureBeyondViewport=full_page)
        path.write_bytes(base64.b64decode(shot["data"]))


class Chromium:
    """A headless chromium process with its own profile, stopped by `stop()`."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail("chromium not found: apt-get install -y chromium (make test installs it)")
        self._profile = workdir / "chromium-profile"
        self._log_path = workdir / "chromium.log"
        self._log: IO[bytes] = self._log_path.open("wb")
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}"], stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []

    def _port(self, timeout_s: float = 30) -> int:
        """Chromium writes the DevTools port it picked to DevToolsActivePort."""
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited: {self._log_path.read_text()[-2000:]}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")

    async def new_page(self) -> Page:
        port = self._port()
        self._session = self._session or aiohttp.ClientSession()
        async with self._session.put(f"http://127.0.0.1:{port}/json/new") as answer:
            target = await answer.json()
        socket = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        self._sockets.append(socket)
        return Page(socket)

    async def stop(self) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._session is not None:
            await self._session.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
