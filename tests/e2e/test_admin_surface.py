"""The admin surface is not the browser's to drive (issue 13, items 7 and 9), through the real
server over real HTTP: the Host check against DNS rebinding, CORS per route family, cross-site
writes refused, and credentials in URLs kept out of the logs."""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
EVIL = "https://evil.example"
DASHBOARD = "http://dash.lan:3000"
PRELOADED = "hooks:\n  on_startup:\n    preload: [a]\n"
OURS = f'llamaswap-es:\n  allowedHosts: [llm.lan]\n  allowedOrigins: ["{DASHBOARD}"]\n'


async def _ready_models(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(url + "/running") as response:
        running = (await response.json())["running"]
    return [entry["model"] for entry in running if entry["state"] == "ready"]


async def _until_ready(http: aiohttp.ClientSession, url: str, model: str) -> None:
    async with asyncio.timeout(20):
        while model not in await _ready_models(http, url):
            await asyncio.sleep(0.05)


async def test_a_rebinding_page_cannot_read_or_drive_the_admin_api(server_factory) -> None:
    """evil.example resolving to 127.0.0.1: the browser sends `Host: evil.example`."""
    server = server_factory(config_text([fake_model("a")], header=OURS))
    rebound = {"Host": f"evil.example:{server.port}"}
    async with aiohttp.ClientSession() as http:
        for method, path in [("GET", "/api/metrics/activity"), ("GET", "/logs"),
                             ("POST", "/api/models/unload"), ("GET", "/ui/")]:  # fmt: skip
            async with http.request(method, server.url + path, headers=rebound) as response:
                assert response.status == 403, path
                message = (await response.json())["error"]["message"]
            assert message.startswith('host "evil.example" is not allowed'), message
            assert 'llamaswap-es: {allowedHosts: ["evil.example"]}' in message
        async with http.get(server.url + "/logs") as response:
            log = await response.text()
    assert log.count('refused GET /api/metrics/activity: host "evil.example" is not allowed') == 1
    assert log.count('host "evil.example" is not allowed') == 1, "one warning per host"


async def test_loopback_ips_and_listed_hosts_pass(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")], header=OURS))
    async with aiohttp.ClientSession() as http:
        for host in ["localhost", "LLM.lan", "192.168.1.5", "[::1]", "app.localhost"]:
            headers = {"Host": f"{host}:{server.port}"}
            async with http.get(server.url + "/api/version", headers=headers) as response:
                assert response.status == 200, host
        # inference and health routes answer under any name (containers, service names)
        service = {"Host": f"llama-swap:{server.port}"}
        async with http.get(server.url + "/v1/models", headers=service) as response:
            assert response.status == 200
        async with http.get(server.url + "/health", headers=service) as response:
            assert response.status == 200


async def test_admin_preflights_allow_only_listed_origins(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")], header=OURS))
    async with aiohttp.ClientSession() as http:
        for origin, status in [(EVIL, 403), (DASHBOARD, 204)]:
            headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            url = server.url + "/api/models/unload"
            async with http.options(url, headers=headers) as response:
                assert response.status == status, origin
                allowed = response.headers.get("Access-Control-Allow-Origin")
            assert allowed == (DASHBOARD if origin == DASHBOARD else None)
        async with http.get(server.url + "/running", headers={"Origin": DASHBOARD}) as response:
            assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
        # the inference routes keep llama-swap's permissive CORS for browser chat clients
        headers = {"Origin": EVIL, "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
        async with http.options(server.url + CHAT, headers=headers) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"


async def test_cross_site_simple_requests_unload_and_reload_nothing(server_factory) -> None:
    models = [fake_model("a")]
    server = server_factory(config_text(models, header=PRELOADED))
    assert server.config_path is not None
    simple = {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}
    async with aiohttp.ClientSession() as http:
        await _until_ready(http, server.url, "a")
        for path in ["/api/models/unload", "/api/models/unload/a"]:
            async with http.post(server.url + path, headers=simple, data="x") as response:
                assert response.status == 403, path
                message = (await response.json())["error"]["message"]
            assert message.startswith(f'origin "{EVIL}" may not call POST {path}: '), message
        img = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}  # <img src=/unload>
        async with http.get(server.url + "/unload", headers=img) as response:
            assert response.status == 403
        assert await _ready_models(http, server.url) == ["a"], "nothing was unloaded"

        server.config_path.write_text(config_text([*models, fake_model("b")], header=PRELOADED))
        reload = server.url + "/api/config/reload"
        async with http.post(reload, headers=simple, data="x") as response:
            assert response.status == 403
        async with http.get(server.url + "/v1/models") as response:
            listed = [m["id"] for m in (await response.json())["data"]]
        assert listed == ["a"], "the new config was not applied"
        # the same requests from the UI's own origin (or outside a browser) do work
        own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        async with http.post(reload, headers=own) as response:
            assert response.status == 200
        async with http.post(server.url + "/api/models/unload", headers=own) as response:
            assert response.status == 200
        assert await _ready_models(http, server.url) == []


async def test_a_key_in_the_query_never_reaches_the_logs(server_factory) -> None:
    secret = "sk-query-secret-1234"
    server = server_factory(config_text([fake_model("a")], header=f"apiKeys: [{secret}]"))
    auth = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession() as http:
        for path in [f"/v1/models?api_key={secret}", f"/api/version?key={secret}&x=1",
                     f"/running?access_token={secret}", f"/logs?token={secret}"]:  # fmt: skip
            async with http.get(server.url + path) as response:
                assert response.status == 401, path  # a query key is refused, as in llama-swap
        async with http.get(server.url + "/logs", headers=auth) as response:
            log = await response.text()
        async with (
            http.get(server.url + "/logs/stream/proxy", headers=auth) as response,
            asyncio.timeout(10),  # the history is sent at once: the line is in it
        ):
            streamed = (await response.content.readuntil(b"/logs?token=")).decode()
            streamed += (await response.content.readuntil(b"\n")).decode()
    assert '"GET /v1/models?api_key=[REDACTED] HTTP/1.1" 401' in log
    assert '"GET /api/version?key=[REDACTED]&x=1 HTTP/1.1" 401' in log
    assert '"GET /running?access_token=[REDACTED] HTTP/1.1" 401' in log
    for text in (log, streamed, server.output()):
        assert secret not in text


async def test_an_encoded_newline_in_a_path_cannot_forge_a_log_line(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    async with aiohttp.ClientSession() as http:
        forged = "/v1/models%0A[INFO]%20forged%20line"
        async with http.get(URL(server.url + forged, encoded=True)) as response:
            assert response.status == 404
        async with http.get(server.url + "/logs") as response:
            log = await response.text()
    assert f'"GET {forged} HTTP/1.1" 404' in log
    assert not any(line.startswith("[INFO] forged") for line in log.splitlines())
