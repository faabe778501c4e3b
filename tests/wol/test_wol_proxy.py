"""`llamaswap-es wol-proxy` in front of a real server that is not running yet (a sleeping machine).

The proxy's magic packets go to a UDP socket on 127.0.0.1 (never a real broadcast); "waking up"
is the test starting a real llamaswap-es server on the port the proxy points at once the packet
has arrived.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.fixtures.net import free_port
from tests.fixtures.server import config_text, fake_model
from tests.wol.conftest import MAC

EXPECTED_PACKET = b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16
API_KEY = "sk-wol-test-key"
CHAT = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}


async def proxy_status(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.get(f"{url}/status") as response:
        assert response.status == 200
        text = await response.text()
    return dict(line.split(": ", 1) for line in text.splitlines())


async def wait_status(http, url: str, key: str, value: str, timeout_s: float = 15.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (status := await proxy_status(http, url))[key] != value:
        if loop.time() > deadline:
            raise AssertionError(f"/status never said {key}: {value} in {timeout_s}s: {status}")
        await asyncio.sleep(0.05)
    return status


async def test_a_request_wakes_the_server_is_held_and_answered_once_it_is_up(
    wol_proxy_factory, packet_sink, server_factory
) -> None:
    server_port = free_port()
    proxy = wol_proxy_factory(server_port, packet_sink.address, "--api-key", API_KEY)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as http:
        status = await proxy_status(http, proxy.url)
        assert status["status"] == "not ready" and status["wakeups_sent"] == "0"

        async def chat() -> tuple[int, dict]:
            async with http.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=auth) as r:
                return r.status, await r.json()

        held = asyncio.create_task(chat())
        assert await packet_sink.receive() == EXPECTED_PACKET
        assert not held.done(), "answered although nothing listens upstream"

        # The machine "wakes up": a server with apiKeys (the proxy follows it with its key).
        server = server_factory(
            config_text([fake_model("a", "--tokens", "3")], header=f"apiKeys: [{API_KEY}]"),
            port=server_port,
        )
        async with asyncio.timeout(30):
            code, body = await held
        assert code == 200, body
        assert body["usage"]["completion_tokens"] == 3

        status = await proxy_status(http, proxy.url)
        assert status["status"] == "ready" and status["failures"] == "0"
        assert status["wakeups_sent"] == "1"
        assert status["last_wakeup_cause"] == "POST /v1/chat/completions from 127.0.0.1"
        assert "cause=POST /v1/chat/completions from 127.0.0.1" in proxy.log()
        assert API_KEY not in proxy.log()

        # It follows the server's event stream: stopping the server is seen with no request.
        server.stop()
        status = await wait_status(http, proxy.url, "status", "not ready")
        assert int(status["failures"]) >= 1 and "/api/events" in status["last_failure"]
        assert packet_sink.pending() == [], "a server going away is not a reason to wake it"


async def test_skip_paths_never_wake_and_a_server_that_never_comes_up_gets_504(
    wol_proxy_factory, packet_sink
) -> None:
    upstream = f"http://127.0.0.1:{free_port()}"  # nothing will ever listen there
    proxy = wol_proxy_factory(
        int(upstream.rsplit(":", 1)[1]), packet_sink.address,
        "--timeout", "1", "--skip-path", "/metrics", "--skip-path", "/v1/models",
    )  # fmt: skip
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{proxy.url}/api/events") as response:
            assert response.status == 204
        for path in ("/metrics", "/v1/models", "/v1/models/a"):
            async with http.get(f"{proxy.url}{path}") as response:
                assert response.status == 503
                message = (await response.json())["error"]["message"]
            assert message == f"wol-proxy: {upstream} is asleep and {path} does not wake it " + (
                "(a skip path)"
            )
        # A packet would already be in the socket: loopback delivers it within sendto.
        assert packet_sink.pending() == []
        assert (await proxy_status(http, proxy.url))["wakeups_sent"] == "0"

        started = time.monotonic()
        async with http.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as response:
            assert response.status == 504
            message = (await response.json())["error"]["message"]
        waited = time.monotonic() - started
        assert 1.0 <= waited < 10, f"held {waited:.1f}s with --timeout 1"
        assert message.startswith(
            f"wol-proxy: {upstream} did not come up within 1s after a wake-on-LAN packet to "
            f"{MAC} via {packet_sink.address}; last attempt: {upstream}/api/events: "
        )
        assert await packet_sink.receive() == EXPECTED_PACKET

        # A browser gets a page that reloads itself while the server wakes.
        async with http.get(f"{proxy.url}/ui/models", headers={"Accept": "text/html"}) as page:
            assert page.status == 503 and page.headers["Retry-After"] == "2"
            html = await page.text()
        assert '<meta http-equiv="refresh" content="2">' in html and "Waking up" in html

        status = await proxy_status(http, proxy.url)
        assert status["status"] == "not ready" and int(status["failures"]) >= 1
        assert status["held_timeouts"] == "1"
        assert status["last_wakeup_cause"] == "GET /ui/models from 127.0.0.1"
