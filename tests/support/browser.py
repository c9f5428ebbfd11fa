"""Headless Chromium under Playwright, for the Swagger page: Debian's `chromium` (installed by
`make test`), not a browser Playwright would download, with every host name but loopback unresolvable
so that the page must render with no internet at all."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from playwright.sync_api import Page, sync_playwright

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
CHROMIUM = shutil.which("chromium")


@contextlib.contextmanager
def chromium_page(timeout_ms: float = 60_000) -> Iterator[Page]:
    """A fresh page in a headless Chromium that is closed on the way out, whatever happened."""
    assert CHROMIUM is not None, "Debian's chromium is installed by `make test`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()
