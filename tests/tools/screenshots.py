"""Screenshots of the playground's UI for ``docs/ui-walkthrough.md``, with Debian's headless Chromium.

Drives Chromium over the DevTools protocol (``websockets``, already a dependency of Airflow's
stack): open a page, optionally click a button by its visible text, wait, save a PNG. Nothing is
downloaded at run time; ``chromium`` must be installed (``apt-get install chromium``).

    python -m tests.tools.screenshots <playground URL> <run id> <out dir>
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.devservices import free_port

__all__ = ["Browser", "main"]

WINDOW = (1400, 900)


class Browser:
    """One headless Chromium page driven over CDP."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result (events in between are skipped)."""
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def open(self, url: str, settle_s: float = 4.0) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(settle_s)

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")

    def click_text(self, text: str, settle_s: float = 3.0) -> bool:
        """Click the last visible button or link whose text is ``text``; return whether one was found."""
        found = self.evaluate(
            "(() => { const els = [...document.querySelectorAll('button, a, [role=button]')]"
            f".filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)} && e.offsetParent !== null);"
            " if (!els.length) return false; els[els.length - 1].click(); return true; })()"
        )
        time.sleep(settle_s)
        return bool(found)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with one page; closed (by its pid) on exit."""
    from websockets.sync.client import connect

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("chromium not found: apt-get install chromium")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="s3stream-chromium-")
    proc = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                page = next(p for p in pages if p.get("type") == "page")
                break
            except (httpx.HTTPError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            browser = Browser(ws)
            browser.call("Page.enable")
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                width=WINDOW[0],
                height=WINDOW[1],
                deviceScaleFactor=1,
                mobile=False,
            )
            yield browser
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str]) -> int:
    base, run_id, out = argv[1], argv[2], Path(argv[3])
    out.mkdir(parents=True, exist_ok=True)
    dag = "s3stream_verify_archive"
    with chromium() as browser:
        browser.open(f"{base}/dags/{dag}")
        browser.screenshot(out / "verify-dag.png")
        if not browser.click_text("Trigger"):
            print("no Trigger button found", file=sys.stderr)
        browser.screenshot(out / "trigger-form.png")
        browser.open(f"{base}/dags/{dag}/runs/{run_id}/tasks/verify", settle_s=5)
        browser.screenshot(out / "verify-run.png")
        browser.open(f"{base}/dags/{dag}/runs/{run_id}/tasks/verify/details", settle_s=6)
        browser.screenshot(out / "verify-extra-link.png")
        browser.open(f"{base}/dags/{dag}/runs/{run_id}/tasks/verify/xcom", settle_s=5)
        browser.screenshot(out / "verify-xcom.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
