"""Headless Chromium driven over the Chrome DevTools Protocol, with no pip package.

Chromium is started with `--remote-debugging-pipe`: it reads CDP commands from fd 3 and writes
replies and events to fd 4, each message one JSON document ended by a NUL byte. So no websocket
client is needed; `os.posix_spawn` puts our pipe ends on fds 3 and 4 of the child. The browser
runs in its own process group, which `close()` ends (after a polite `Browser.close`).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import time
from pathlib import Path
from typing import IO, Any

CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get update && apt-get install -y chromium"
# Loopback only: nothing may try to reach the network, update itself or sync.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
]


VISIBLE_TEXT = """(() => {
  const parts = [];
  const walk = (doc) => {
    if (!doc || !doc.body) return;
    parts.push(doc.body.innerText);
    for (const frame of doc.querySelectorAll('iframe')) {
      try { walk(frame.contentDocument); } catch (e) { /* cross-origin: not ours to read */ }
    }
  };
  walk(document);
  return parts.join('\\n');
})()"""


# How tall the page would be without its scrolling: the document, or the main scroll container
# of a single-page app (as tall as the viewport, scrolling more than that).
CONTENT_HEIGHT = """(() => {
  let height = document.scrollingElement.scrollHeight;
  for (const e of document.querySelectorAll('body *')) {
    const overflow = getComputedStyle(e).overflowY;
    if ((overflow === 'auto' || overflow === 'scroll') && e.clientHeight >= innerHeight * 0.8) {
      height = Math.max(height, innerHeight + e.scrollHeight - e.clientHeight);
    }
  }
  return height;
})()"""


def chromium_path() -> str | None:
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One Chromium process with one page (tab) attached in flat-session mode."""

    def __init__(self, profile: Path, log: IO[str], *, width: int = 1600, height: int = 1000) -> None:
        binary = chromium_path()
        if binary is None:
            raise BrowserError(f"Chromium is missing ({CHROMIUM}): {INSTALL}")
        profile.mkdir(parents=True, exist_ok=True)
        self.width, self.height = width, height
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        log.flush()
        try:
            self.pid = os.posix_spawn(
                binary, argv, os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                    (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                ],
                setpgroup=0,
            )
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        self.console: list[str] = []  # the page's console messages and uncaught exceptions
        try:
            self.version = self.send("Browser.getVersion", timeout=30).get("product", "?")
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.send("Runtime.enable")
            self._viewport(height)
        except BaseException:
            self.close()
            raise

    def _viewport(self, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # -- protocol ------------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 20.0) -> dict[str, Any]:
        """One CDP command (to the page's session once attached); its result, or BrowserError."""
        self._next_id += 1
        msg_id = self._next_id
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if self._session and not method.startswith(("Browser.", "Target.")):
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        if event["method"] == "Runtime.consoleAPICalled":
            args = event["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif event["method"] == "Runtime.exceptionThrown":
            self.console.append(str(event["params"].get("exceptionDetails", {}).get("text")))

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no reply to {method} from Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exited?) while waiting for {method}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    # -- page --------------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"navigating to {url}: {reply['errorText']}")

    def evaluate(self, expression: str, *, timeout: float = 20.0) -> Any:
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression[:80]}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def text(self) -> str:
        """The page's visible text (what a reader sees, not hidden DOM), with that of same-origin
        iframes appended (the Temporal UI renders user metadata, e.g. summaries, in iframes)."""
        return self.evaluate(VISIBLE_TEXT) or ""

    def wait_for_text(self, *needles: str, timeout: float = 30.0) -> str:
        """Poll until every needle is in the visible text, whitespace collapsed on both sides (table
        cells and line breaks become single spaces). Returns that text, or fails naming what is
        missing and showing what was there."""
        wanted = [" ".join(n.split()) for n in needles]
        deadline = time.monotonic() + timeout
        while True:
            seen = " ".join(self.text().split())
            missing = [n for n in wanted if n not in seen]
            if not missing:
                return seen
            if time.monotonic() > deadline:
                console = "\n".join(self.console[-20:])
                raise AssertionError(
                    f"not on the page within {timeout}s: {missing}\n--- page text ---\n{seen[:4000]}\n--- console ---\n{console}"
                )
            time.sleep(0.25)

    def click(self, selector: str, *, timeout: float = 20.0) -> None:
        """Click the first element matching a CSS selector, waiting for it to exist."""
        script = f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; e.click(); return true; }})()"
        deadline = time.monotonic() + timeout
        while not self.evaluate(script):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing matches {selector!r} within {timeout}s")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page: the viewport is made as tall as the content first (single-page
        apps scroll an inner container, which a plain full-page capture would cut off)."""
        height = int(self.evaluate(CONTENT_HEIGHT) or self.height)
        height = min(max(height, self.height), 8000)
        self._viewport(height)
        try:
            time.sleep(0.5)  # let the page lay itself out again (charts redraw on resize)
            data = self.send("Page.captureScreenshot", {"format": "png"}, timeout=30)["data"]
        finally:
            self._viewport(self.height)
        path.write_bytes(base64.b64decode(data))
        return path

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        deadline = time.monotonic() + 5
        exited = False
        while not exited and time.monotonic() < deadline:
            try:
                exited = os.waitpid(self.pid, os.WNOHANG) != (0, 0)
            except ChildProcessError:
                exited = True
            if not exited:
                time.sleep(0.05)
        # The browser leads its own process group, with its helpers (zygote, renderers, GPU):
        # none may outlive the test.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not exited:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
