"""Browser fixtures: one Chromium per test module, a fresh context (own storage) per test.

Playwright's `launch` gives Chromium a fresh temporary user-data-dir of its own, removed on
close; every test then gets a new incognito-like context, so localStorage never leaks between
tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.ui.stub_server import serve_static


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _is_expected_noise(text: str) -> bool:
    """A failed fetch is reported by the page itself (a note naming the endpoint)."""
    return "Failed to load resource" in text


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and not _is_expected_noise(msg.text)
            else None
        ),
    )
    page.errors = errors
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with serve_static(free_port()) as url:
        yield url
