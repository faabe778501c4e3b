"""CORS per route family (spec/api.md §4, §25 item 7; issue 13 item 9): llama-swap's permissive
preflight on the inference routes, listed origins only on the admin surface."""

from __future__ import annotations

import pytest
from aiohttp import web

from llamaswap_es.web.cors import (
    allow_listed_origin,
    allowed_request_headers,
    cors_middleware,
    echo_origin,
)
from llamaswap_es.web.route_family import RouteFamily, family_of
from tests.web.servers import app_with, serving

LISTED = "https://dash.example"
UNLOADS: web.AppKey[list[str]] = web.AppKey("unloads", list)
EVIL = "https://evil.example"


async def _models(request: web.Request) -> web.Response:
    response = web.json_response({"data": [], "object": "list"})
    echo_origin(request, response)
    return response


async def _unload(request: web.Request) -> web.Response:
    request.app[UNLOADS].append(request.path)
    return web.json_response({"msg": "ok"})


async def _ui(_request: web.Request) -> web.Response:
    return web.Response(text="ui")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)  # headers leave before the middleware sees the response
    await response.write(b"data\n")
    return response


@pytest.fixture
async def server():
    app = app_with(
        [
            web.get("/v1/models", _models),
            web.post("/api/models/unload", _unload),
            web.get("/unload", _unload),
            web.get("/api/events", _stream),
            web.get("/ui/{path:.*}", _ui),
        ],
        [cors_middleware(lambda: [LISTED])],
    )
    app[UNLOADS] = []
    app.on_response_prepare.append(allow_listed_origin)
    async with serving(app) as served:
        served.app = app
        yield served


@pytest.fixture
def base_url(server):
    return str(server.make_url(""))


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/no/such/route", "/v1/models", "/upstream/m/x", "/health"]
)
async def test_inference_and_public_routes_answer_any_preflight(http, base_url, path):
    headers = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    async with http.options(f"{base_url}{path}", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Access-Control-Allow-Methods"] == (
            "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        )
        assert resp.headers["Access-Control-Max-Age"] == "86400"
        assert resp.headers["Access-Control-Allow-Headers"] == (
            "Content-Type, Authorization, Accept, X-Requested-With"
        )


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [
        ("  X-Custom ,  Accept ", "X-Custom, Accept"),
        ("Valid, Bad Header", "Valid"),
        ("Bad@Header", ""),
    ],
)
async def test_requested_headers_are_sanitised(http, base_url, requested, allowed):
    headers = {"Access-Control-Request-Headers": requested}
    async with http.options(f"{base_url}/v1/chat/completions", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Headers"] == allowed


async def test_other_responses_get_no_cors_headers_except_the_origin_echo(http, base_url):
    async with http.get(f"{base_url}/v1/models") as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    headers = {"Origin": "http://example.com"}
    async with http.get(f"{base_url}/v1/models", headers=headers) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "http://example.com"


@pytest.mark.parametrize("path", ["/api/models/unload", "/logs", "/running", "/no/such/route"])
async def test_admin_preflight_from_a_foreign_origin_is_refused(http, base_url, path):
    headers = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    async with http.options(f"{base_url}{path}", headers=headers) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
        message = (await resp.json())["error"]["message"]
    assert f'origin "{EVIL}" may not call OPTIONS {path}' in message
    assert f'llamaswap-es: {{allowedOrigins: ["{EVIL}"]}}' in message


async def test_admin_preflight_from_a_listed_origin_allows_it(http, base_url):
    headers = {
        "Origin": LISTED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    async with http.options(f"{base_url}/api/models/unload", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == LISTED
        assert resp.headers["Vary"] == "Origin"
        assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"


async def test_a_listed_origin_reads_admin_answers_streams_included(http, server, base_url):
    async with http.post(f"{base_url}/api/models/unload", headers={"Origin": LISTED}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == LISTED
    async with http.get(f"{base_url}/api/events", headers={"Origin": LISTED}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == LISTED
        assert await resp.read() == b"data\n"
    assert server.app[UNLOADS] == ["/api/models/unload"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL, "Content-Type": "text/plain"},  # a form or no-cors fetch
        {"Origin": "null", "Content-Type": "text/plain"},  # a sandboxed frame, a local file
        {"Sec-Fetch-Site": "cross-site"},  # what a browser says when it sends no Origin
    ],
)
async def test_a_cross_site_simple_write_is_refused_and_does_nothing(
    http, server, base_url, headers
):
    async with http.post(f"{base_url}/api/models/unload", headers=headers, data="x") as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.get(f"{base_url}/unload", headers={"Sec-Fetch-Site": "cross-site"}) as resp:
        assert resp.status == 403  # an <img src=/unload> on any page
        assert "a cross-site request may not call GET /unload" in await resp.text()
    assert server.app[UNLOADS] == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts
        {"Origin": "http://HOST", "Sec-Fetch-Site": "same-origin"},  # the UI under /ui
        {"Origin": "http://HOST"},  # the UI, in a browser without Sec-Fetch-Site
        {"Sec-Fetch-Site": "none"},  # a typed URL or a bookmark
    ],
)
async def test_same_origin_and_non_browser_writes_pass(http, server, base_url, headers):
    host = server.make_url("").authority
    headers = {name: value.replace("HOST", host) for name, value in headers.items()}
    async with http.post(f"{base_url}/api/models/unload", headers=headers) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert server.app[UNLOADS] == ["/api/models/unload"]


async def test_a_link_from_another_site_still_opens_the_ui(http, base_url):
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    async with http.get(f"{base_url}/ui/", headers=headers) as resp:
        assert resp.status == 200 and await resp.text() == "ui"
        assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/chat/completions", RouteFamily.INFERENCE),
        ("/v/messages", RouteFamily.INFERENCE),
        ("/upstream/m/slots", RouteFamily.INFERENCE),
        ("/comfyui", RouteFamily.INFERENCE),
        ("/rerank", RouteFamily.INFERENCE),
        ("/props", RouteFamily.INFERENCE),
        ("/models", RouteFamily.INFERENCE),
        ("/health", RouteFamily.PUBLIC),
        ("/upstream", RouteFamily.PUBLIC),
        ("/api/config/reload", RouteFamily.ADMIN),
        ("/logs/stream/m", RouteFamily.ADMIN),
        ("/running", RouteFamily.ADMIN),
        ("/unload", RouteFamily.ADMIN),
        ("/metrics", RouteFamily.ADMIN),
        ("/ui/index.html", RouteFamily.ADMIN),
        ("/v1", RouteFamily.ADMIN),  # unknown: the strict policy
    ],
)
def test_route_families(path, family):
    assert family_of(path) is family


def test_absent_request_header_gives_the_default_list():
    assert allowed_request_headers(None).startswith("Content-Type")
