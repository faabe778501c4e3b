"""Page-shape smoke tests against the static files (tests/ui/stub_server.py), no real server.

They check what the UI does on its own: every route renders without a script error, the
double-encoded `/api/events` burst reaches the pages, log text is escaped and coloured, the
missing newer endpoints degrade to a note, the phone layout and the theme switch work.
"""

from __future__ import annotations

import json

import pytest

from tests.ui.browser import expect_page_shown, screenshot

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from playwright.sync_api import expect

# A 1x1 transparent PNG, for a generated image.
PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)

ROUTES = {
    "activity": "Activity",
    "models": "Models",
    "models/alpha": "Models / alpha",
    "logs": "Logs",
    "playground": "Playground / Chat",
    "performance": "Performance",
    "hardware": "Hardware",
    "settings": "Settings",
    "events": "Events",
    "queue": "Queue",
    "story/01JTESTREQUEST000000000007": "Request story",
}


def test_every_route_renders_without_script_errors(page, stub_url) -> None:
    for route, title in ROUTES.items():
        page.goto(f"{stub_url}/ui/#/{route}")
        expect(page.locator("h1.section-title")).to_have_text(title)
        expect_page_shown(page, route)
        screenshot(page, f"stub-{route.split('/')[0]}")
    assert page.errors == [], page.errors


def test_root_redirects_and_unknown_routes_fall_back_to_activity(page, stub_url) -> None:
    page.goto(f"{stub_url}/")
    assert page.url.endswith("/ui/")
    expect(page.locator("h1.section-title")).to_have_text("Activity")
    page.goto(f"{stub_url}/ui/#/no-such-page")
    expect(page.locator("h1.section-title")).to_have_text("Activity")


def test_event_stream_burst_fills_models_inflight_and_connection(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/models")
    expect(page.get_by_test_id("connection")).to_have_text("connected")
    expect(page).to_have_title("🟢 llamaswap-es")
    alpha = page.locator('li.model-row[data-model="alpha"]')
    expect(alpha).to_contain_text("Alpha 7B")
    expect(alpha.get_by_role("button", name="Unload Alpha 7B")).to_be_visible()
    beta = page.locator('li.model-row[data-model="beta"]')
    expect(beta.get_by_role("button", name="Load beta")).to_be_visible()
    expect(page.locator('li.model-row[data-model="hidden"]')).to_have_count(0)
    page.get_by_role("switch", name="Show unlisted models (1)").check(force=True)
    expect(page.locator('li.model-row[data-model="hidden"]')).to_contain_text("unlisted")
    expect(page.locator('li.model-row[data-model="peer1/gamma"]')).to_be_visible()
    # The in-flight snapshot: our phase and queue position, a cancel button, the session id.
    page.goto(f"{stub_url}/ui/#/activity")
    row = page.locator('tr[data-inflight-id="7"]')
    expect(row).to_contain_text("queued #2")
    expect(row).to_contain_text("lspg-abcde")
    expect(row.get_by_role("button", name="Cancel request 7")).to_be_enabled()
    expect(page.get_by_text("1 active")).to_be_visible()


def test_logs_are_coloured_and_escaped(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/logs")
    proxy = page.get_by_role("region", name="Proxy log")
    green = proxy.locator("span", has_text="proxy started")
    expect(green).to_have_attribute("style", "color:#15803d")  # ANSI 32 in the light palette
    upstream = page.get_by_role("region", name="Upstream log")
    expect(upstream.locator("pre")).to_contain_text("<b>not bold</b>")
    expect(upstream.locator("pre b")).to_have_count(0)
    # Regex filter: an invalid pattern filters nothing; a valid one hides other lines.
    upstream.get_by_role("button", name="Filter").click()
    box = upstream.get_by_role("searchbox")
    box.fill("(")
    expect(upstream.locator("pre")).to_contain_text("upstream line")
    box.fill("^nothing-matches$")
    expect(upstream.locator("pre")).to_have_text("")


def test_newer_endpoints_missing_degrade_to_notes(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/queue")
    expect(page.get_by_text("showing the queue derived from in-flight requests")).to_be_visible()
    expect(page.locator('tr[data-model="beta"] [data-testid="queue-depth"]')).to_have_text("1")
    expect(page.locator('tr[data-request="01JTESTREQUEST000000000007"]')).to_contain_text("#2")
    page.goto(f"{stub_url}/ui/#/events")
    expect(page.get_by_text("does not expose the event log")).to_be_visible()
    page.goto(f"{stub_url}/ui/#/hardware")
    expect(page.get_by_role("alert")).to_have_text("Hardware detection unavailable")
    # Performance is hidden from the menu when /api/performance is not enabled.
    menu = page.get_by_role("navigation", name="Main")
    expect(menu.get_by_role("link", name="Performance")).to_have_count(0)


def test_phone_layout_opens_the_menu_from_the_header(page, stub_url) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{stub_url}/ui/#/models")
    nav_link = page.get_by_role("navigation", name="Main").get_by_role("link", name="Logs")
    expect(nav_link).not_to_be_in_viewport()
    page.get_by_role("button", name="Toggle sidebar").click()
    expect(nav_link).to_be_in_viewport()
    screenshot(page, "stub-phone-menu")
    nav_link.click()
    expect(page.locator("h1.section-title")).to_have_text("Logs")
    expect(nav_link).not_to_be_in_viewport()
    screenshot(page, "stub-phone-logs")
    for route in ("activity", "playground", "events"):
        page.goto(f"{stub_url}/ui/#/{route}")
        expect_page_shown(page, route)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"#/{route} scrolls sideways on a phone ({width}px wide)"
        screenshot(page, f"stub-phone-{route}")


def test_theme_button_cycles_and_persists(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/settings")
    html = page.locator("html")
    button = page.get_by_role("button", name="Theme: system (click to change)")
    button.click()
    expect(html).to_have_attribute("data-mode", "light")
    page.get_by_role("button", name="Theme: light (click to change)").click()
    expect(html).to_have_attribute("data-mode", "dark")
    assert page.evaluate("localStorage.getItem('theme-mode')") == '"dark"'
    page.reload()
    expect(html).to_have_attribute("data-mode", "dark")
    screenshot(page, "stub-settings-dark")
    page.get_by_role("button", name="Theme: dark (click to change)").click()
    expect(html).to_have_attribute("data-mode", "light")  # system, and the browser prefers light


PALETTE_BACKGROUNDS = {  # (light, dark) page background of the whole-scheme palettes
    "Sunset": ("rgb(255, 247, 237)", "rgb(26, 15, 18)"),
    "Green Terminal": ("rgb(240, 253, 244)", "rgb(0, 0, 0)"),
    "Midnight Commander": ("rgb(230, 235, 255)", "rgb(0, 0, 96)"),
    "Solarized": ("rgb(238, 232, 213)", "rgb(0, 43, 54)"),
}


def test_all_eleven_palettes_are_offered_and_the_scheme_ones_recolour_the_page(
    page, stub_url
) -> None:
    page.goto(f"{stub_url}/ui/#/settings")
    palette = page.get_by_label("Theme", exact=True)
    labels = palette.locator("option").all_inner_texts()
    assert len(labels) == 11, labels
    body_bg = "getComputedStyle(document.body).backgroundColor"
    for label, (light, dark) in PALETTE_BACKGROUNDS.items():
        palette.select_option(label=label)
        page.get_by_role("radio", name="Light").click()
        assert page.evaluate(body_bg) == light, label
        page.get_by_role("radio", name="Dark").click()
        assert page.evaluate(body_bg) == dark, label
        slug = label.lower().replace(" ", "-")
        expect(page.locator("html")).to_have_attribute("data-theme", slug)
        page.goto(f"{stub_url}/ui/#/models")
        screenshot(page, f"stub-palette-{slug}-dark")
        page.goto(f"{stub_url}/ui/#/settings")
    # The choice survives a reload (llama-swap's `theme-name` key).
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "solarized")
    assert page.evaluate(body_bg) == PALETTE_BACKGROUNDS["Solarized"][1]
    assert page.errors == [], page.errors


def test_app_title_is_editable_and_persisted(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/activity")
    title = page.get_by_role("textbox", name="App title (editable)")
    title.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("Home Lab")
    page.keyboard.press("Enter")
    expect(page).to_have_title("🟢 Home Lab")
    page.reload()
    expect(title).to_have_text("Home Lab")


def test_model_output_markdown_is_sanitised_in_the_browser(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/playground")
    html = page.evaluate(
        """async () => {
            const { renderMarkdown } = await import("/ui/js/ui/markdown.js");
            return renderMarkdown(
                "# Hi\\n\\n<img src=x onerror=alert(1)><script>alert(2)</script>" +
                "[link](javascript:alert(3))\\n\\n```python\\nprint('x')\\n```"
            ).html;
        }"""
    )
    assert "<h1" in html
    assert "onerror" not in html
    assert "<script" not in html
    assert "javascript:" not in html
    assert 'class="hljs"' in html and "hljs-built_in" in html  # highlighted code survives


def test_math_is_typeset_without_opening_a_way_in(page, stub_url) -> None:
    page.goto(f"{stub_url}/ui/#/playground")
    out = page.evaluate(
        """async () => {
            const { loadMath, renderMarkdown } = await import("/ui/js/ui/markdown.js");
            await loadMath();
            return renderMarkdown(
                "$x^2$ <a href='#' title='<span data-math-slot=\\"0\\"></span>'>t</a> " +
                "$\\\\href{javascript:alert(1)}{y}$ <img src=x onerror=alert(2)>"
            );
        }"""
    )
    html = out["html"]
    assert out["needsMath"] is False
    assert html.count('class="katex"') == 2, html
    assert "href=" not in html.replace("href='#'", "").replace('href="#"', "")  # trust is off
    assert "onerror" not in html
    # A slot written into an attribute by the model stays text: the attribute is not broken open.
    assert 'title="&lt;span data-math-slot=&quot;0&quot;&gt;&lt;/span&gt;"' in html, html


def test_load_test_cards_reorder_by_drag_and_by_keyboard(page, stub_url) -> None:
    page.add_init_script(
        "if (!localStorage.getItem('concurrency-test-list'))"
        ' localStorage.setItem(\'concurrency-test-list\', \'["alpha","beta","gamma"]\')'
    )
    page.goto(f"{stub_url}/ui/#/playground")
    page.get_by_role("tab", name="Load Test").click()
    panel = page.get_by_role("tabpanel", name="Load Test")
    titles = panel.locator("article.result .card-title")
    expect(titles).to_have_text(["1. alpha", "2. beta", "3. gamma"])
    cards = panel.locator("article.result")
    cards.nth(2).drag_to(cards.nth(0))
    expect(titles).to_have_text(["1. gamma", "2. alpha", "3. beta"])
    # The keyboard way: the arrow buttons, reachable with Tab and pressed with Enter.
    down = panel.get_by_role("button", name="Move 1. gamma down")
    down.focus()
    page.keyboard.press("Enter")
    expect(titles).to_have_text(["1. alpha", "2. gamma", "3. beta"])
    expect(panel.get_by_role("button", name="Move 1. alpha up")).to_be_disabled()
    # Focus went with the card, so Enter again moves gamma once more.
    expect(panel.get_by_role("button", name="Move 2. gamma down")).to_be_focused()
    page.keyboard.press("Enter")
    expect(titles).to_have_text(["1. alpha", "2. beta", "3. gamma"])
    expect(panel.get_by_role("button", name="Move 3. gamma up")).to_be_focused()
    page.keyboard.press("Enter")
    screenshot(page, "stub-playground-loadtest-order")
    # The order is the persisted request list (llama-swap's `concurrency-test-list`).
    page.reload()
    page.get_by_role("tab", name="Load Test").click()
    expect(titles).to_have_text(["1. alpha", "2. gamma", "3. beta"])
    assert page.errors == [], page.errors


def test_sdapi_lora_loader_lists_picks_and_sends_loras(page, stub_url) -> None:
    """No SDAPI upstream runs here (the fake upstream has no /sdapi routes), so the browser's own
    requests for the model list, the LoRA list and txt2img are answered in the page."""
    models = {
        "data": [{"id": "sd", "capabilities": {"image_generation": True},
                  "meta": {"llamaswap": {"type": "model"}}}]
    }  # fmt: skip
    loras = [{"name": "detail", "path": "loras/detail.safetensors"}, {"name": "ink", "path": "ink"}]
    sent: list[dict] = []
    asked: list[str] = []

    def answer(route, body) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def txt2img(route) -> None:
        sent.append(route.request.post_data_json)
        answer(route, {"images": [PNG_1PX]})

    def lora_list(route) -> None:
        asked.append(route.request.url)
        answer(route, loras)

    page.route("**/v1/models", lambda route: answer(route, models))
    page.route("**/sdapi/v1/loras?*", lora_list)
    page.route("**/sdapi/v1/txt2img", txt2img)
    page.goto(f"{stub_url}/ui/#/playground")
    page.get_by_role("tab", name="Images").click()
    panel = page.get_by_role("tabpanel", name="Images")
    panel.get_by_role("radio", name="SDAPI").click()
    # The selects show their (persisted or default) choice instead of a blank.
    expect(panel.get_by_label("Size")).to_have_value("1024x1024")
    expect(panel.get_by_label("Sampler")).to_have_value("euler_a")
    panel.get_by_role("button", name="Fetch LoRAs").click()
    panel.get_by_label("LoRA", exact=True).select_option(label="ink")
    panel.get_by_label("Multiplier", exact=True).fill("0.6")
    panel.get_by_role("button", name="Add LoRA").click()
    panel.get_by_label("LoRA", exact=True).select_option(label="detail")
    panel.get_by_role("button", name="Add LoRA").click()
    picked = panel.get_by_role("list", name="Picked LoRAs")
    expect(picked.locator("li")).to_have_count(2)
    panel.get_by_role("button", name="Remove LoRA detail").click()
    expect(picked.locator("li")).to_have_count(1)
    panel.get_by_label("Image prompt").fill("a llama in ink")
    screenshot(page, "stub-playground-images-lora")
    panel.get_by_role("button", name="Generate").click()
    expect(panel.get_by_role("img", name="Generated image 1")).to_be_visible()
    assert asked and asked[0].endswith("/sdapi/v1/loras?model=sd"), asked
    assert len(sent) == 1
    assert sent[0]["lora"] == [{"path": "ink", "multiplier": 0.6}]
    assert sent[0]["prompt"] == "a llama in ink"  # the LoRAs travel beside the prompt, not in it
    assert page.errors == [], page.errors


def test_a_saved_column_order_is_merged_with_the_columns_and_reordered(page, stub_url) -> None:
    # A saved order from another version: an unknown id, and most columns missing.
    page.add_init_script(
        "if (!localStorage.getItem('activity-inflight-column-order'))"
        ' localStorage.setItem(\'activity-inflight-column-order\', \'["gone","model","cancel"]\')'
    )
    page.goto(f"{stub_url}/ui/#/activity")
    table = page.get_by_role("table", name="In-flight requests")
    heads = table.locator("thead th")
    expect(heads).to_have_text(
        ["Model", "Cancel", "Elapsed", "Phase", "Request", "Address", "User Agent", "Session ID",
         "Bytes Received"]
    )  # fmt: skip
    card = page.locator("section.card", has=table)
    card.get_by_role("button", name="Columns").click()
    card.get_by_role("button", name="Move Model down").click()
    expect(heads.nth(0)).to_have_text("Cancel")
    expect(heads.nth(1)).to_have_text("Model")
    saved = page.evaluate("JSON.parse(localStorage.getItem('activity-inflight-column-order'))")
    assert saved[:3] == ["cancel", "model", "elapsed"] and "gone" not in saved, saved
