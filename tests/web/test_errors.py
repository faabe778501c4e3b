"""llama-swap's error bodies, negotiated by Accept, and Go-mux 404/405 (spec/api.md §2, §5)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from llamaswap_es.web.errors import (
    RequestError,
    error_response,
    go_mux_errors_middleware,
    too_many_requests_response,
)
from tests.web.servers import app_with, serving


async def _fail(request: web.Request) -> web.Response:
    return error_response(request, int(request.query["status"]), request.query["msg"])


async def _raise(request: web.Request) -> web.Response:
    raise RequestError(400, "bad <thing> & more")


async def _too_many(request: web.Request) -> web.Response:
    return too_many_requests_response()


@pytest.fixture
async def base_url():
    routes = [
        web.get("/fail", _fail),
        web.post("/raise", _raise),
        web.get("/busy", _too_many),
    ]
    async with serving(app_with(routes, [go_mux_errors_middleware])) as server:
        yield str(server.make_url(""))


@pytest.mark.parametrize(
    ("status", "err_type", "code"),
    [
        (400, "invalid_request_error", "bad_request"),
        (401, "authentication_error", "unauthorized"),
        (403, "authentication_error", "forbidden"),
        (404, "invalid_request_error", "not_found"),
        (409, "invalid_request_error", "conflict"),
        (418, "invalid_request_error", "invalid_request"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "server_error", "internal_error"),
        (502, "server_error", "bad_gateway"),
        (503, "server_error", "service_unavailable"),
        (504, "server_error", "gateway_timeout"),
    ],
)
async def test_json_envelope_by_status(http, base_url, status, err_type, code):
    async with http.get(f"{base_url}/fail", params={"status": status, "msg": "boom"}) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        body = await resp.read()
    expected = {
        "src": "llama-swap",
        "error": {"message": "boom", "type": err_type, "param": None, "code": code},
    }
    assert json.loads(body) == expected
    assert not body.endswith(b"\n")


async def test_plain_text_when_accepted(http, base_url):
    headers = {"Accept": "text/plain, */*"}
    params = {"status": "404", "msg": "no model id could be identified"}
    async with http.get(f"{base_url}/fail", params=params, headers=headers) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"
        assert await resp.text() == "llama-swap: no model id could be identified"


async def test_html_page_escapes_the_message(http, base_url):
    headers = {"Accept": "text/html,application/xhtml+xml"}
    async with http.post(f"{base_url}/raise", headers=headers) as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
        assert await resp.text() == (
            "<html><body><h1>llama-swap</h1><p>bad &lt;thing&gt; &amp; more</p></body></html>"
        )


async def test_request_error_becomes_the_envelope(http, base_url):
    async with http.post(f"{base_url}/raise") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"] == "bad <thing> & more"


async def test_429_is_verbatim_whatever_the_accept(http, base_url):
    async with http.get(f"{base_url}/busy", headers={"Accept": "text/plain"}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"] == {
        "message": "Too many requests",
        "type": "rate_limit_error",
        "param": None,
        "code": "concurrency_limit",
    }


async def test_unknown_path_is_gos_plain_404(http, base_url):
    async with http.get(f"{base_url}/does-not-exist", headers={"Accept": "*/*"}) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"
        assert await resp.text() == "404 page not found\n"


async def test_wrong_method_is_405_with_allow(http, base_url):
    async with http.post(f"{base_url}/fail") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD"
        assert await resp.text() == "Method Not Allowed\n"


async def test_error_response_takes_accept_string():
    response = error_response("text/plain", 503, "[m1] process is not ready")
    assert response.body == b"llama-swap: [m1] process is not ready"


async def test_error_response_takes_a_header_mapping():
    response = error_response({"Accept": "application/json"}, 502, "peer proxy error: x")
    assert json.loads(response.body)["error"]["code"] == "bad_gateway"
