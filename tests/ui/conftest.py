"""Browser fixtures: one Chromium per test module, a fresh context (and storage) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.ui.stub_server import serve_static


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    profile: Path = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


class PageErrors(list):
    """Console errors and uncaught exceptions seen by a page (ignoring expected 404s)."""


@pytest.fixture
def page(browser) -> Iterator[object]:
    page = browser.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}")
        if msg.type == "error" and "404" not in msg.text and "Failed to load resource" not in msg.text
        else None,
    )
    page.errors = errors
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        page.evaluate("localStorage.clear()") if not page.is_closed() else None
        page.close()


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with serve_static(free_port()) as url:
        yield url
