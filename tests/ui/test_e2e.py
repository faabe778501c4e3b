"""The UI against the real server: `llamaswap-es` with its built-in demo models, as a subprocess.

A user's path through the app: load a model from Models and watch it turn ready; chat in the
Playground and watch tokens stream; find the request in Activity and open its capture; see the
swap decision (and why) in Events; follow a request's story; watch a slow load in Queue; unload
everything. Screenshots of every page go to test-artifacts/ui/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path

import pytest

from llamaswap_es.demo import demo_config_yaml
from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.orphans import find_tagged_processes
from tests.fixtures.net import free_port_run
from tests.fixtures.processes import SESSION_TAG_PREFIX
from tests.fixtures.server import config_text, fake_model, start_server
from tests.ui.browser import expect_page_shown, screenshot

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

SHUTDOWN_BUDGET_S = 5
STOP_TIMEOUT_S = SHUTDOWN_BUDGET_S + 15


def http(base: str, path: str, method: str = "GET", body: object = None, timeout: float = 30):
    """(status, text) of a plain HTTP call; errors come back as their status, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def chat(base: str, model: str) -> tuple[int, str]:
    """A one-message, non-streaming chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return http(base, "/v1/chat/completions", "POST", body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module (the suite's `start_server`), on the built-in demo config with
    `startPort` moved off llama-swap's default 5800 (another server on the machine would own the
    demo models' ports) and a 5 s shutdown budget. Its log must replay at the end."""
    tmp: Path = tmp_path_factory.mktemp("llamaswap-es")
    config = (
        f"startPort: {free_port_run(3)}\n"
        + demo_config_yaml(sys.executable)
        + f"llamaswap-es:\n  shutdownTimeoutSeconds: {SHUTDOWN_BUDGET_S}\n"
    )
    tag = f"{SESSION_TAG_PREFIX}.ui-e2e-{os.getpid()}"
    running = start_server(tmp, tag, config)
    try:
        yield running.url
    finally:
        running.stop(timeout_s=STOP_TIMEOUT_S)
        leftovers = find_tagged_processes(tag)
        for child in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(child.pid), signal.SIGKILL)
        assert not leftovers, f"upstreams outlived llamaswap-es: {leftovers}"
        with open_log(running.db_path) as reader:
            report = verify(reader)
        assert report.ok, report.to_text()


def model_row(page, model: str):
    return page.locator(f'li.model-row[data-model="{model}"]')


def test_load_a_model_from_models_and_see_it_ready(page, server) -> None:
    page.goto(f"{server}/ui/#/models")
    row = model_row(page, "demo-fast")
    expect(row).to_have_attribute("data-state", "stopped")
    row.get_by_role("button", name="Load demo-fast").click()
    expect(row).to_have_attribute("data-state", "ready", timeout=15_000)
    expect(row.get_by_role("button", name="Unload demo-fast")).to_be_visible()
    expect(page.get_by_text("1 ready")).to_be_visible()
    screenshot(page, "models")
    # The model's own page: header state, its live log from /logs/stream/<id>.
    row.get_by_role("link").first.click()
    expect(page.locator("h1.section-title")).to_have_text("Models / demo-fast")
    page.get_by_role("tab", name="Logs").click()
    expect(page.get_by_role("region", name="demo-fast logs log").locator("pre")).not_to_be_empty()
    screenshot(page, "model-detail")
    assert page.errors == [], page.errors


def test_chat_in_the_playground_streams_tokens(page, server) -> None:
    page.goto(f"{server}/ui/#/playground")
    page.locator("#chat-model").select_option("demo-chatty")
    page.locator("#chat-input").fill("Tell me a long story")
    page.locator("#chat-input").press("Enter")
    reply = page.locator("li.msg.assistant").last
    # Mid-stream: the loading block and some text are on screen while Cancel is still offered.
    expect(reply.locator(".loading-box")).to_contain_text("loading model: demo-chatty")
    expect(reply.locator(".msg-text")).to_contain_text("alpha", timeout=15_000)
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    partial = len(reply.locator(".msg-text").inner_text())
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=20_000)
    final = reply.locator(".msg-text").inner_text()
    assert len(final) > partial, "the reply should have grown after the first tokens were seen"
    expect(reply.get_by_role("button", name="Regenerate")).to_be_visible()
    screenshot(page, "playground-chat")
    assert page.errors == [], page.errors


def test_a_saved_conversation_shows_its_math_typeset(page, server) -> None:
    answer = (
        "Energy: $E=mc^2$, and in code `$HOME` stays as typed.\n\n"
        "$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$\n"
    )
    saved = [{"role": "user", "content": "Physics?"}, {"role": "assistant", "content": answer}]
    page.add_init_script(
        f"localStorage.setItem('playground-messages', {json.dumps(json.dumps(saved))})"
    )
    page.goto(f"{server}/ui/#/playground")
    reply = page.locator("li.msg.assistant .msg-text")
    # KaTeX is loaded on first use: the formulas turn from source into typeset math.
    expect(reply.locator(".katex")).to_have_count(2)
    expect(reply.locator(".katex-display")).to_have_count(1)
    expect(reply.locator(".katex annotation").first).to_have_text("E=mc^2")
    expect(reply.locator("code").first).to_have_text("$HOME")
    fonts = (
        "document.fonts.ready.then(() => [...document.fonts]"
        ".filter((f) => f.family.includes('KaTeX') && f.status === 'loaded').length)"
    )
    assert page.evaluate(fonts) > 0, "KaTeX's woff2 fonts did not load"
    screenshot(page, "playground-math")
    assert page.errors == [], page.errors


def test_activity_lists_the_request_and_opens_its_capture(page, server) -> None:
    chat(server, "demo-fast")
    page.goto(f"{server}/ui/#/activity")
    row = page.locator("tr[data-activity-id]").first
    expect(row).to_contain_text("demo-fast")
    screenshot(page, "activity")
    # The markdown export: a summary and the rows on screen, in the visible columns.
    page.get_by_role("button", name="Export as markdown").click()
    export = page.get_by_role("dialog", name="Export as markdown").locator("textarea")
    expect(export).to_have_value(re.compile(r"## Summary[\s\S]*\| ID \| Time \| Model \|"))
    expect(export).to_have_value(re.compile(r"\| demo-fast \| 200 \|"))
    page.keyboard.press("Escape")
    row.get_by_role("button", name="View capture").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Request Body")
    expect(dialog).to_contain_text("/v1/chat/completions")
    screenshot(page, "capture")
    page.keyboard.press("Escape")
    # The row's ID opens that request's story.
    row.get_by_role("link", name=re.compile(r"^\d+$")).click()
    expect(page.locator("h1.section-title")).to_have_text("Request story")
    expect(page.locator('[data-phase="finished"]')).to_have_count(1)


def test_activity_finds_a_request_by_the_clients_own_request_id(page, server) -> None:
    body = json.dumps({"model": "demo-fast", "messages": [{"role": "user", "content": "hi"}]})
    req = urllib.request.Request(
        server + "/v1/chat/completions", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": "ui-trace-7"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as res:
        ours = res.headers["X-Request-ID"]
    chat(server, "demo-fast")  # another request, which the filter must hide
    page.goto(f"{server}/ui/#/activity")
    expect(page.locator("tr[data-activity-id]").first).to_be_visible()
    page.get_by_role("button", name="Filters").click()
    search = page.get_by_label("Request ID")
    search.fill("ui-trace-7")
    search.press("Enter")
    rows = page.locator("tr[data-activity-id]")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name=re.compile(r"^\d+$")).click()
    expect(page).to_have_url(re.compile(f"#/story/{ours}$"))
    page.go_back()
    page.get_by_role("button", name="Clear filters").click()
    assert page.errors == [], page.errors


def test_events_show_the_swap_decision_and_its_story(page, server) -> None:
    # Two models in one swap group: asking for the second forces a swap.
    for model in ("demo-fast", "demo-slow"):
        status, text = chat(server, model)
        assert status == 200, text
    page.goto(f"{server}/ui/#/events?type=SwapPlanned")
    swap = page.locator('tr[data-type="SwapPlanned"]').last
    expect(swap).to_contain_text("swap to demo-slow planned")  # SwapPlanned.describe's words
    expect(swap).to_contain_text("evict demo-fast")
    screenshot(page, "events")
    swap.get_by_role("button", name="Explain decision").click()
    dialog = page.get_by_role("dialog")
    status, body = http(server, "/api/log/explain")
    if status == 404 and "page not found" in body:
        expect(dialog.get_by_role("alert")).to_contain_text("no /api/log/explain yet")
    else:
        explanation = dialog.get_by_test_id("explanation")
        expect(explanation).to_contain_text("demo-fast cannot run beside demo-slow")
        expect(dialog).to_contain_text("Cause")
    screenshot(page, "events-explain")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    # From the full log, a request's key leads to its story.
    page.get_by_role("button", name="Clear").click()
    dispatch = page.locator('tr[data-type="Dispatch"]').last
    dispatch.get_by_role("link").click()
    expect(page.locator("h1.section-title")).to_have_text("Request story")
    phases = page.get_by_role("list", name="Phases")
    expect(phases.locator("[data-phase]").first).to_have_attribute("data-phase", "received")
    expect(phases.locator('[data-phase="dispatched"]')).to_have_count(1)
    expect(phases.locator('[data-phase="finished"]')).to_have_count(1)
    screenshot(page, "story")
    assert page.errors == [], page.errors


def test_queue_shows_a_request_waiting_for_a_load(page, server) -> None:
    assert http(server, "/api/models/unload", "POST")[0] == 200
    page.goto(f"{server}/ui/#/queue")
    expect(page.get_by_text("No request is waiting")).to_be_visible()
    done = threading.Event()

    def ask_slow() -> None:
        try:
            chat(server, "demo-slow")
        finally:
            done.set()

    threading.Thread(target=ask_slow, daemon=True).start()
    # demo-slow takes 2 s to load: the request waits in Queue meanwhile, then leaves it.
    waiting = page.locator("tr[data-request]", has_text="demo-slow")
    expect(waiting.locator(".tag")).to_have_text("loading", timeout=5_000)
    expect(page.locator('tr[data-model="demo-slow"] [data-testid="queue-depth"]')).to_have_text("1")
    screenshot(page, "queue")
    assert done.wait(30), "the slow request did not finish"
    expect(page.get_by_text("No request is waiting")).to_be_visible()


def test_cancel_an_in_flight_request_from_activity(page, server) -> None:
    page.goto(f"{server}/ui/#/activity")
    outcome: dict[str, object] = {}

    def stream_long_answer() -> None:
        body = {"model": "demo-chatty", "stream": True,
                "messages": [{"role": "user", "content": "a long one"}]}  # fmt: skip
        try:
            outcome["result"] = http(server, "/v1/chat/completions", "POST", body)
        except (OSError, HTTPException) as err:  # the stream is cut mid-way
            outcome["result"] = err

    worker = threading.Thread(target=stream_long_answer, daemon=True)
    worker.start()
    row = page.locator("tr[data-inflight-id]", has_text="demo-chatty")
    expect(row).to_have_count(1, timeout=10_000)
    screenshot(page, "activity-inflight")
    row.get_by_role("button", name=re.compile(r"^Cancel request")).click()
    expect(row).to_have_count(0, timeout=10_000)
    worker.join(30)
    assert not worker.is_alive(), "the cancelled request's client never saw its response end"
    result = outcome["result"]
    if isinstance(result, tuple):
        assert "[DONE]" not in result[1], "the cancelled stream ran to completion"


def test_unload_all_stops_every_model(page, server) -> None:
    assert http(server, "/upstream/demo-fast/", timeout=30)[0] < 500
    page.goto(f"{server}/ui/#/models")
    expect(model_row(page, "demo-fast")).to_have_attribute("data-state", "ready")
    # A pending load can be called off from the same button.
    slow = model_row(page, "demo-slow")
    # demo-slow takes 2 s to load: without a working cancel the button would stay that long, and
    # the load's request would end normally instead of being aborted.
    slow.get_by_role("button", name="Load demo-slow").click()
    cancel = slow.get_by_role("button", name="Cancel loading demo-slow")

    def is_load(request) -> bool:
        return "/upstream/demo-slow/" in request.url

    with page.expect_event("requestfailed", is_load, timeout=1_500) as failed:
        cancel.click()
    assert "ABORTED" in (failed.value.failure or ""), failed.value.failure
    expect(cancel).to_have_count(0, timeout=500)
    page.get_by_role("button", name="Unload All").click()
    for model in ("demo-fast", "demo-slow", "demo-chatty"):
        expect(model_row(page, model)).to_have_attribute("data-state", "stopped", timeout=15_000)
    expect(page.get_by_text("0 ready")).to_be_visible()
    expect(page.get_by_role("button", name="Unload All")).to_be_disabled()


def test_reload_config_from_the_models_page(page, server) -> None:
    page.goto(f"{server}/ui/#/models")
    expect(model_row(page, "demo-fast")).to_be_visible()
    page.get_by_role("button", name="Reload config").click()
    expect(page.get_by_test_id("reload-notice")).to_contain_text("Configuration reloaded")
    status, text = http(server, "/api/log/events?type=ConfigApplied&limit=100")
    assert status == 200 and '"reason": "reload"' in text.replace('":"', '": "')


def test_a_model_that_fails_to_start_shows_why(page, tmp_path) -> None:
    # Its own small server: the demo has no failing model. The reason comes from the event log.
    models = [fake_model("broken", "--fail-at-start"), fake_model("fine")]
    config = config_text(models, header="llamaswap-es:\n  startBackoffSeconds: 600")
    tag = f"{SESSION_TAG_PREFIX}.ui-failure-{os.getpid()}"
    running = start_server(tmp_path, tag, config)
    try:
        page.goto(f"{running.url}/ui/#/models")
        row = model_row(page, "broken")
        row.get_by_role("button", name="Load broken").click()
        failure = row.get_by_test_id("model-failure")
        expect(failure).to_contain_text("start failed:", timeout=15_000)
        # the exit status and the model's own last line, its whole output tail on hover
        expect(failure).to_contain_text("(exited with code 1)")
        expect(failure).to_contain_text("failed to load model (--fail-at-start)")
        expect(failure).to_have_attribute("title", re.compile(r"failed to load model"))
        expect(row).to_have_attribute("data-state", "stopped")  # llama-swap's name for it
        expect(model_row(page, "fine").get_by_test_id("model-failure")).to_have_count(0)
        screenshot(page, "models-failed")
        # A request is refused for the backoff window; the user's Load click retries at once.
        status, text = http(running.url, "/upstream/broken/")
        assert status == 503 and "not started again for" in text, (status, text)
        row.get_by_role("button", name="Load broken").click()
        _wait_for_starts(running.url, "broken", 2)
    finally:
        running.stop(timeout_s=STOP_TIMEOUT_S)


def test_models_show_footprints_and_gpu_memory(page, tmp_path) -> None:
    # Its own small server with placement by memory on, the fake NVML driver (two GPUs) told
    # that model `a` uses 3,000 MiB on GPU1, and a GGUF model estimated from its file.
    from tests.e2e.test_gpu_memory_facts import PLACEMENT_ON, fake_nvml_env, gguf_model
    from tests.fixtures.tiny_gguf import tiny_gguf

    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"models": {"a": {"1": 3000}}}))
    models = [fake_model("a"), gguf_model("tiny", tiny_gguf(), 512)]
    tag = f"{SESSION_TAG_PREFIX}.ui-footprints-{os.getpid()}"
    running = start_server(
        tmp_path, tag, config_text(models, header=PLACEMENT_ON), env=fake_nvml_env(state)
    )
    try:
        page.goto(f"{running.url}/ui/#/models")
        tiny = model_row(page, "tiny").get_by_test_id("model-footprint")
        expect(tiny).to_have_text("513 MiB · estimated")
        expect(tiny).to_have_attribute("title", re.compile(r"KV cache .* at ctx 512 .*tiny-a"))
        expect(model_row(page, "a").get_by_test_id("model-footprint")).to_have_count(0)
        gpu1 = page.locator('[data-testid="gpu-memory"][data-gpu="1"]')
        expect(gpu1).to_contain_text("NVIDIA L4")
        expect(gpu1).to_contain_text("23,552 of 24,576 MiB free")
        model_row(page, "a").get_by_role("button", name="Load a").click()
        measured = model_row(page, "a").get_by_test_id("model-footprint")
        expect(measured).to_have_text("3,000 MiB · measured", timeout=15_000)
        expect(measured).to_have_attribute("title", re.compile(r"NVML: pid \d+ on GPU1"))
        expect(gpu1).to_contain_text("20,552 of 24,576 MiB free")
        screenshot(page, "models-footprints")
        assert page.errors == [], page.errors
    finally:
        running.stop(timeout_s=STOP_TIMEOUT_S)
        with open_log(running.db_path) as reader:
            report = verify(reader)
        assert report.ok, report.to_text()


def _wait_for_starts(base: str, model: str, count: int, timeout_s: float = 15) -> None:
    """Until the event log holds `count` StartProcess decisions for `model` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _, text = http(base, "/api/log/events?type=StartProcess&limit=1000")
        starts = [e for e in json.loads(text)["events"] if e["payload"]["model"] == model]
        if len(starts) >= count:
            return
        assert time.monotonic() < deadline, f"{model} was started {len(starts)} times, not {count}"
        time.sleep(0.05)


def test_load_test_timeline_separates_load_from_generation(page, server) -> None:
    assert http(server, "/api/models/unload", "POST")[0] == 200
    page.goto(f"{server}/ui/#/playground")
    page.get_by_role("tab", name="Load Test").click()
    panel = page.get_by_role("tabpanel", name="Load Test")
    for model in ("demo-fast", "demo-slow", "demo-fast"):
        panel.get_by_role("button", name=f"+ {model}").click()
    panel.get_by_role("button", name="Go").click()
    rows = panel.locator(".gantt-row")
    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_have_attribute("data-status", "done", timeout=20_000)
        expect(rows.nth(i).locator('[data-kind="generate"]')).to_have_count(1)
    # Every request had to wait for a model to load, and that wait is drawn apart.
    expect(panel.locator('.gantt-row [data-kind="load"]')).not_to_have_count(0)
    screenshot(page, "playground-loadtest")
    assert page.errors == [], page.errors


def test_screenshots_of_the_remaining_pages(page, server) -> None:
    # llama-swap's /upstream redirects to /ui/models: the path route lands on the Models page.
    page.goto(f"{server}/upstream")
    expect(page.locator("h1.section-title")).to_have_text("Models")
    assert page.url.endswith("/ui/#/models"), page.url
    for route in ("logs", "settings", "hardware", "performance"):
        page.goto(f"{server}/ui/#/{route}")
        expect_page_shown(page, route)
        screenshot(page, route)
    assert page.errors == [], page.errors
