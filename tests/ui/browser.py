"""Headless Debian Chromium driven by Playwright (no browser downloads: the system binary)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def require_browser() -> None:
    """Skip (with the reason) where Playwright or Chromium is not installed."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")


def screenshot(page, name: str) -> None:
    """Save a full-page screenshot under test-artifacts/ui/ for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shown_page(page, route: str):
    """The locator of what `#/route` shows inside <main>.

    The Playground stays mounted (hidden) under every route, so <main> itself is never empty:
    a check on <main> passes even when the route's own page rendered nothing.
    """
    if route.split("/")[0] == "playground":
        return page.locator("main > .page.playground")
    return page.locator("main > .page:not(.playground)")


def expect_page_shown(page, route: str) -> None:
    """The route's page is visible and has content; the Playground is visible only on its own."""
    from playwright.sync_api import expect

    shown = shown_page(page, route)
    expect(shown).to_be_visible()
    expect(shown).not_to_be_empty()
    if route.split("/")[0] != "playground":
        expect(page.locator("main > .page.playground")).to_be_hidden()
