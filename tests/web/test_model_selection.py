"""Finding the requested model (spec/api.md §6.1, §21; §25 items 18, 20, 41)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from llamaswap_es.web.errors import go_mux_errors_middleware
from llamaswap_es.web.model_selection import select_model, split_upstream_path
from tests.web.servers import app_with, serving

LIMIT = 1024


async def _select(request: web.Request) -> web.Response:
    selection = await select_model(request, body_limit=LIMIT)
    return web.json_response(
        {
            "model": selection.model,
            "stream": selection.stream,
            "source": selection.source,
            "body": selection.body.decode("latin-1"),
        }
    )


@pytest.fixture
async def url():
    routes = [web.route("*", "/{tail:.*}", _select)]
    async with serving(app_with(routes, [go_mux_errors_middleware])) as server:
        yield str(server.make_url("/v1/chat/completions"))


async def _ask(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> dict:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.parametrize(
    ("body", "model", "stream"),
    [
        (b'{"model":"llama3","stream":true}', "llama3", True),
        (b'{"messages":[{"model":"inner"}],"model":"outer"}', "outer", False),
        (b'{"model":"m","stream":1}', "m", True),
        (b'{"model":"m","stream":0}', "m", False),
        (b'{"model":"m","stream":"true"}', "m", True),
        (b'{"model":123}', "123", False),
        (b"{}", "", False),
        (b'["model","x"]', "", False),
        (b"", "", False),
    ],
)
async def test_json_body(http, url, body, model, stream):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    got = await _ask(http, "POST", url + "?model=ignored", data=body, headers=headers)
    assert (got["model"], got["stream"]) == (model, stream)
    assert got["body"].encode("latin-1") == body  # the raw bytes come back for forwarding


async def test_json_ignores_the_query(http, url):
    headers = {"Content-Type": "application/json"}
    got = await _ask(http, "POST", url + "?model=q", data=b'{"x":1}', headers=headers)
    assert got["model"] == ""


async def test_multipart_field_beats_query(http, url):
    form = aiohttp.FormData()
    form.add_field("file", b"xx", filename="a.wav", content_type="audio/wav")
    form.add_field("model", "whisper")
    form.add_field("stream", "true")
    got = await _ask(http, "POST", url + "?model=from-query", data=form)
    assert (got["model"], got["stream"], got["source"]) == ("whisper", True, "multipart")


async def test_multipart_without_model_uses_query(http, url):
    form = aiohttp.FormData()
    form.add_field("file", b"model=not-this", filename="model.txt")
    got = await _ask(http, "POST", url + "?model=from-query", data=form)
    assert (got["model"], got["source"]) == ("from-query", "query")


async def test_urlencoded_field_then_query(http, url):
    got = await _ask(http, "POST", url + "?model=q", data={"model": "form-model"})
    assert got["model"] == "form-model"
    got = await _ask(http, "POST", url + "?model=q", data={"other": "1"})
    assert got["model"] == "q"


async def test_get_reads_the_query(http, url):
    got = await _ask(http, "GET", url + "?model=voices&stream=true")
    assert (got["model"], got["stream"], got["source"]) == ("voices", True, "query")


async def test_other_content_types_use_only_the_query(http, url):
    headers = {"Content-Type": "audio/wav"}
    got = await _ask(http, "POST", url + "?model=tts", data=b"RIFF....", headers=headers)
    assert got["model"] == "tts"


async def test_body_at_the_limit_passes_and_one_byte_more_is_413(http, url):
    padding = LIMIT - len(b'{"model":"m","p":""}')
    body = b'{"model":"m","p":"' + b"x" * padding + b'"}'
    assert len(body) == LIMIT
    headers = {"Content-Type": "application/json"}
    got = await _ask(http, "POST", url, data=body, headers=headers)
    assert got["model"] == "m"
    async with http.post(url, data=body + b" ", headers=headers) as resp:
        assert resp.status == 413
        message = (await resp.json())["error"]["message"]
    assert f"limit of {LIMIT} bytes" in message


async def test_chunked_body_over_the_limit_is_413(http, url):
    async def chunks():
        for _ in range(4):
            yield b"x" * 512

    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert str(LIMIT) in (await resp.json())["error"]["message"]


async def test_malformed_json_is_400(http, url):
    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=b'{"model": "m",', headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("invalid JSON in request body:")


KNOWN = {"author", "author/model", "simple", "m1"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("simple/v1/chat", ("simple", "/v1/chat")),
        ("author/model/v1/chat", ("author/model", "/v1/chat")),
        ("author/model", ("author/model", "")),
        ("author/model/", ("author/model", "/")),
        ("author/v1/chat", ("author", "/v1/chat")),
        ("missing/v1", None),
        ("", None),
        (
            "m1/api/userdata/workflows%2Fexample.json",
            ("m1", "/api/userdata/workflows%2Fexample.json"),
        ),
        ("author/model/api/x%2Fy", ("author/model", "/api/x%2Fy")),
        ("author%2Fmodel/api/x%2Fy", ("author/model", "/api/x%2Fy")),
    ],
)
def test_upstream_path_split(raw, expected):
    assert split_upstream_path(raw, KNOWN.__contains__) == expected


async def test_upstream_path_from_a_real_request_keeps_encoding(http):
    seen: dict[str, object] = {}

    async def upstream(request: web.Request) -> web.Response:
        raw_rest = request.raw_path.split("?")[0].removeprefix("/upstream/")
        seen["split"] = split_upstream_path(raw_rest, KNOWN.__contains__)
        return web.Response(text="ok")

    app = app_with([web.get("/upstream/{rest:.*}", upstream)])
    async with serving(app) as server:
        url = server.make_url("/upstream/author%2Fmodel/api/x%2Fy")
        async with http.get(url.with_path("/upstream/author%2Fmodel/api/x%2Fy", encoded=True)):
            pass
    assert seen["split"] == ("author/model", "/api/x%2Fy")
