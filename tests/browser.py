"""Headless Chromium over the DevTools protocol (aiohttp's WebSocket client): load a page, collect what the
console and the browser log say at error level, and take screenshots of the page and of elements."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

NAMES = ("chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1300, 1000


def find_chromium() -> str | None:
    return next((found for name in NAMES if (found := shutil.which(name))), None)


@dataclass
class Visit:
    url: str
    errors: list[str] = field(default_factory=list)
    page_png: bytes = b""
    element_pngs: list[bytes] = field(default_factory=list)


class Browser:
    """One headless Chromium in its own session, for a test's lifetime (`with Browser(...) as browser`)."""

    def __init__(self, executable: str, profile: Path):
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        argv = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        self.port = self._port(profile / "DevToolsActivePort")

    def _port(self, path: Path, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"chromium did not open its DevTools port within {timeout_s} s "
                           f"(exit {self.process.returncode})")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """SIGTERM, then SIGKILL, to the browser's own process group (its renderers and helpers)."""
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue

    def visit(self, url: str, element_selector: str | None = None) -> Visit:
        return asyncio.run(self._visit(url, element_selector))

    async def _visit(self, url: str, selector: str | None) -> Visit:
        visit = Visit(url)
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as response:
                target = await response.json()
            try:
                async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                    await _Devtools(socket, visit).load(url, selector)
            finally:
                async with session.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}"):
                    pass
        return visit


class _Devtools:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse, visit: Visit):
        self.socket, self.visit, self.next_id = socket, visit, 0
        self.loaded = False

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30) -> dict:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout_s
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), max(deadline - time.monotonic(), 0.01))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.event(message)

    def event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            self.visit.errors.append(f"console.{params['type']}: " + " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.visit.errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            entry = params["entry"]
            self.visit.errors.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url', '')}".strip())

    async def load(self, url: str, selector: str | None) -> None:
        for domain in ("Page", "Runtime", "Log"):
            await self.call(f"{domain}.enable")
        await self.call("Emulation.setDeviceMetricsOverride",
                        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        await self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while not self.loaded:
            self.event(await asyncio.wait_for(self.socket.receive_json(), max(deadline - time.monotonic(), 0.01)))
        await self.call("Runtime.evaluate", {"expression": "1", "awaitPromise": True})  # drain pending events
        size = (await self.call("Page.getLayoutMetrics"))["cssContentSize"]
        self.visit.page_png = await self.screenshot({"x": 0, "y": 0, "width": size["width"], "height": size["height"]})
        if selector:
            # DevTools' evaluation is not subject to the page's Content-Security-Policy (the page runs no script).
            expression = (f"JSON.stringify([...document.querySelectorAll({json.dumps(selector)})].map(e => {{"
                          f"const r = e.getBoundingClientRect(); return {{x: r.x + scrollX, y: r.y + scrollY, "
                          f"width: r.width, height: r.height}}; }}))")
            found = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
            for rect in json.loads(found["result"]["value"]):
                self.visit.element_pngs.append(await self.screenshot(rect))

    async def screenshot(self, rect: dict[str, float]) -> bytes:
        import base64

        shot = await self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                          "clip": {**rect, "scale": 1}})
        return base64.b64decode(shot["data"])
