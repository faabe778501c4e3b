"""CORS preflight (spec/api.md §4, §25 item 7)."""

from __future__ import annotations

import pytest
from aiohttp import web

from llamaswap_es.web.cors import allowed_request_headers, cors_middleware, echo_origin
from tests.web.servers import app_with, serving


async def _models(request: web.Request) -> web.Response:
    response = web.json_response({"data": [], "object": "list"})
    echo_origin(request, response)
    return response


@pytest.fixture
async def base_url():
    app = app_with([web.get("/v1/models", _models)], [cors_middleware])
    async with serving(app) as server:
        yield str(server.make_url(""))


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/no/such/route", "/v1/models"])
async def test_preflight_for_any_path(http, base_url, path):
    async with http.options(f"{base_url}{path}") as resp:
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


def test_absent_request_header_gives_the_default_list():
    assert allowed_request_headers(None).startswith("Content-Type")
