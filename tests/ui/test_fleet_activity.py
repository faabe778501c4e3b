"""The Activity page of a fleet: two real servers sharing one history database (an SQLite file of
their own here; PostgreSQL is the same code path, tested in tests/e2e/test_fleet.py).

With a shared history the page lists every node's requests with a Node column and a node filter;
a node's own requests link to their story, another node's do not (it lives on that node). A
server without a shared history keeps the plain Activity page (test_e2e.py).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.server import RunningServer, config_text, fake_model, start_server
from tests.ui.browser import screenshot

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def _chat(server: RunningServer, model: str) -> None:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"{server.url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.fixture
def fleet(tmp_path: Path, env_tag: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    shared = f"sqlite:///{tmp_path / 'history.db'}"
    servers: list[RunningServer] = []
    try:
        for node, model in (("node-a", "alpha"), ("node-b", "beta")):
            ours = f"llamaswap-es:\n  nodeName: {node}\n  historyDatabase: {shared}\n"
            config = config_text([fake_model(model)], header=ours)
            servers.append(
                start_server(tmp_path, env_tag, config, db_path=tmp_path / f"{node}.db",
                             name=f"{node}.yaml")
            )  # fmt: skip
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def _fleet_total(server: RunningServer) -> int:
    with urllib.request.urlopen(f"{server.url}/api/history/activity", timeout=10) as response:
        return int(json.load(response)["total"])


def _until(check: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for: {what}")
        time.sleep(0.05)


def test_the_activity_page_lists_the_whole_fleet_by_node(page, fleet) -> None:
    node_a, node_b = fleet
    _chat(node_a, "alpha")
    _chat(node_b, "beta")
    _chat(node_b, "beta")
    _until(lambda: _fleet_total(node_a) == 3, "both nodes' requests in the shared history")
    page.goto(f"{node_a.url}/ui/#/activity")
    expect(page.get_by_role("heading", name="Fleet activity")).to_be_visible()
    rows = page.locator("tr[data-activity-id]")
    expect(rows).to_have_count(3)
    table = page.get_by_role("table", name="Activity")
    expect(table.locator("th").first).to_have_text(re.compile("Node"))
    mine = page.locator('tr[data-activity-id^="node-a:"]')
    theirs = page.locator('tr[data-activity-id^="node-b:"]')
    expect(mine).to_have_count(1)
    expect(theirs).to_have_count(2)
    expect(mine.first).to_contain_text("alpha")
    expect(theirs.first).to_contain_text("beta")
    expect(mine.first.get_by_role("link", name=re.compile(r"^node-a:\d+$"))).to_be_visible()
    expect(theirs.first.get_by_role("link", name=re.compile("^node-b:"))).to_have_count(0)
    screenshot(page, "fleet-activity")

    page.get_by_role("button", name="Filters").click()
    page.get_by_role("combobox", name="Node").select_option("node-b")
    expect(rows).to_have_count(2)
    expect(page.locator('tr[data-activity-id^="node-a:"]')).to_have_count(0)
    _chat(node_b, "beta")  # another node's new request: no event here, the page polls for it
    expect(rows).to_have_count(3, timeout=15_000)
    assert page.errors == [], page.errors
