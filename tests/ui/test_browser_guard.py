"""A real browser cannot be made to drive the admin surface (issue 13, item 9), while browser
chat clients keep the inference routes.

Chromium resolves `evil.example` and `attacker.example` to 127.0.0.1 (`--host-resolver-rules`),
which is what DNS rebinding achieves: a page whose name points at the user's machine. Against
the real server: the rebound name is refused by the Host check, a foreign page's form-like post
and `<img src=/unload>` unload nothing, and the same page can still list models.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.fixtures.net import free_port
from tests.fixtures.server import config_text, fake_model
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.ui.stub_server import serve_static

pytestmark = pytest.mark.slow

REBINDING = "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP attacker.example 127.0.0.1"


@pytest.fixture(scope="module")
def rebinding_browser() -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, REBINDING], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def _ready_models(base: str) -> list[str]:
    with urllib.request.urlopen(base + "/running", timeout=10) as response:
        running = json.load(response)["running"]
    return [entry["model"] for entry in running if entry["state"] == "ready"]


def _wait_until_ready(base: str, model: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while model not in _ready_models(base):
        if time.monotonic() > deadline:
            pytest.fail(f"{model} was not ready within {timeout_s}s: {_ready_models(base)}")
        time.sleep(0.05)


def test_rebinding_and_foreign_pages_cannot_drive_the_admin_api(
    rebinding_browser, server_factory
) -> None:
    header = "hooks:\n  on_startup:\n    preload: [a]\n"
    server = server_factory(config_text([fake_model("a")], header=header))
    _wait_until_ready(server.url, "a")
    page = rebinding_browser.new_page()
    page.set_default_timeout(10_000)
    try:
        # DNS rebinding: the page's own name now points at our server.
        rebound = page.goto(f"http://evil.example:{server.port}/ui/")
        assert rebound is not None and rebound.status == 403
        assert 'host "evil.example" is not allowed' in page.content()
        status = page.evaluate("fetch('/api/metrics/activity').then(r => r.status)")
        assert status == 403, "the rebound page cannot read the history"

        stub_port = free_port()
        with serve_static(stub_port):
            page.goto(f"http://attacker.example:{stub_port}/nothing-here")
            target = server.url
            page.evaluate(  # a form-like post: no preflight, the page reads nothing back
                """base => fetch(base + '/api/models/unload', {method: 'POST', mode: 'no-cors',
                                  headers: {'Content-Type': 'text/plain'}, body: 'x'})""",
                target,
            )
            assert _ready_models(server.url) == ["a"], "a foreign page's post unloaded the model"
            page.evaluate(  # llama-swap's legacy unload-all is a GET: <img src=/unload>
                """base => new Promise(done => {
                    const img = new Image();
                    img.onload = img.onerror = done;
                    img.src = base + '/unload';
                })""",
                target,
            )
            assert _ready_models(server.url) == ["a"], "a foreign page's <img> unloaded the model"
            listed = page.evaluate(
                "base => fetch(base + '/v1/models').then(r => r.json()).then(d => d.data.length)",
                target,
            )
            assert listed == 1, "browser clients still list models cross-origin"
            blocked = page.evaluate(
                "base => fetch(base + '/running').then(() => 'read', () => 'blocked')", target
            )
            assert blocked == "blocked", "a foreign page cannot read the admin API"
    finally:
        page.close()
