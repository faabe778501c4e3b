"""API keys (spec/api.md §4, §25 item 41; config.md §6)."""

from __future__ import annotations

import base64
import logging

import pytest
from aiohttp import web

from llamaswap_es.web.auth import (
    api_key_middleware,
    is_public_route,
    presented_key,
)
from llamaswap_es.web.cors import cors_middleware
from tests.web.servers import app_with, serving

KEYS = ("secret", "other-key")


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def base_url():
    routes = [
        web.get("/health", _ok),
        web.get("/wol-health", _ok),
        web.get("/", _ok),
        web.get("/favicon.ico", _ok),
        web.get("/upstream", _ok),
        web.get("/v1/models", _ok),
        web.post("/v1/chat/completions", _ok),
        web.get("/upstream/{rest:.*}", _ok),
    ]
    middlewares = [cors_middleware(), api_key_middleware(KEYS)]
    async with serving(app_with(routes, middlewares)) as server:
        yield str(server.make_url(""))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer secret"},
        {"Authorization": "bearer other-key"},
        {"Authorization": _basic("anyone", "secret")},
        {"Authorization": "BASIC " + base64.b64encode(b":secret").decode()},
        {"x-api-key": "secret"},
        {"Authorization": "Basic !!!notbase64", "x-api-key": "secret"},
        {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode(), "x-api-key": "secret"},
        {"Authorization": _basic("u", "secret"), "x-api-key": "wrong"},
    ],
)
async def test_each_key_form_is_accepted(http, base_url, headers):
    async with http.post(f"{base_url}/v1/chat/completions", headers=headers) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer wrong", "x-api-key": "secret"},  # Bearer hides x-api-key
        {"Authorization": _basic("secret", "wrong")},  # the user part is ignored
        {"Authorization": "Bearer secret2"},
        {"Authorization": "Bearer secre"},
        {"x-api-key": ""},
    ],
)
async def test_missing_or_wrong_key_is_401(http, base_url, headers):
    async with http.post(f"{base_url}/v1/chat/completions", headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
        body = await resp.json()
    assert body["error"]["message"] == "unauthorized: invalid or missing API key"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "unauthorized"


async def test_401_comes_before_404(http, base_url):
    async with http.get(f"{base_url}/nothing-here") as resp:
        assert resp.status == 401


@pytest.mark.parametrize("path", ["/health", "/wol-health", "/", "/favicon.ico", "/upstream"])
async def test_public_routes_need_no_key(http, base_url, path):
    async with http.get(f"{base_url}{path}") as resp:
        assert resp.status == 200


async def test_subpaths_of_public_routes_are_not_public(http, base_url):
    async with http.get(f"{base_url}/upstream/m1/") as resp:
        assert resp.status == 401
    async with http.get(f"{base_url}/v1/models") as resp:
        assert resp.status == 401


async def test_preflight_needs_no_key(http, base_url):
    async with http.options(f"{base_url}/v1/chat/completions") as resp:
        assert resp.status == 204


async def test_no_keys_means_open(http):
    app = app_with([web.post("/v1/chat/completions", _ok)], [api_key_middleware([])])
    async with serving(app) as server, http.post(server.make_url("/v1/chat/completions")) as resp:
        assert resp.status == 200


async def test_key_never_reaches_the_log(http, base_url, caplog):
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": "Bearer wrong-but-secret-looking"}
    async with http.post(f"{base_url}/v1/chat/completions", headers=headers) as resp:
        assert resp.status == 401
    assert "wrong-but-secret-looking" not in caplog.text


def test_presented_key_precedence():
    both = {"Authorization": _basic("u", "from-basic"), "x-api-key": "from-header"}
    assert presented_key(both) == "from-basic"
    assert presented_key({"Authorization": "Bearer b", "x-api-key": "x"}) == "b"
    assert presented_key({"x-api-key": "x"}) == "x"
    assert presented_key({}) is None


def test_exempt_routes_by_method():
    class Fake:
        def __init__(self, method: str, path: str):
            self.method, self.path = method, path

    assert is_public_route(Fake("OPTIONS", "/anything"))  # type: ignore[arg-type]
    assert is_public_route(Fake("HEAD", "/health"))  # type: ignore[arg-type]
    assert not is_public_route(Fake("POST", "/health"))  # type: ignore[arg-type]
