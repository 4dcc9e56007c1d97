"""A real browser for the page tests: Debian's Chromium (``apt-get install chromium``, done by
scripts/bootstrap.sh), driven headless through Playwright's Python client. No browser is downloaded:
Playwright launches the system binary (``executable_path``).

``Tab`` records what a page test must find empty: console errors, uncaught page errors, requests that
failed (network level) and responses with an HTTP error status. ``screenshot`` writes under
``SCREENSHOTS`` (``test-artifacts/screenshots`` in the checkout, or ``$INGEST_SCREENSHOTS_DIR``), which
CI keeps so people can look at the pages the tests saw.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(
    os.environ.get("INGEST_SCREENSHOTS_DIR") or Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
)
# Without the background-networking flags Chromium calls Google's hosts at start, which a closed
# network refuses (noise, and failed requests that are not the page's).
_ARGS = [
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@dataclass
class Tab:
    """One page with the problems it met. ``problems()`` is what a test asserts empty."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"request failed: {m}" for m in self.failed_requests),
            *(f"HTTP error: {m}" for m in self.error_responses),
        ]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for a test module (start it once: about a second)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def tab(browser: Browser, *, viewport: tuple[int, int] = (1280, 900)) -> Iterator[Tab]:
    """A fresh context (no cookies, no cache) and page, recording its problems."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    seen = Tab(page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            seen.console_errors.append(msg.text)

    def on_failed(request: Request) -> None:
        seen.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            seen.error_responses.append(f"{response.request.method} {response.url}: {response.status}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.page_errors.append(str(exc)))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    try:
        yield seen
    finally:
        context.close()
