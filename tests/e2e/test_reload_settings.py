"""Settings that follow a real reload (`POST /api/config/reload`) on a real server: performance
monitoring stops, starts and is re-timed; the default-scheduler warning is said once per text."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.fixtures.server import config_text, fake_model, wait_json

WARNED = "routing.scheduler.use is not set"


async def _reload(http: aiohttp.ClientSession, url: str) -> None:
    async with http.post(url + "/api/config/reload") as r:
        assert r.status == 200, await r.text()


async def _performance(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url + "/api/performance") as r:
        return r.status, await r.json()


async def _metrics(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


def _samples(doc: dict) -> int:
    return len(doc.get("sys_stats") or [])


async def test_monitoring_follows_a_reload(server_factory) -> None:
    models = [fake_model("a")]

    def config(performance: str) -> str:
        return config_text(models, header=f"performance: {performance}")

    server = server_factory(config("{every: 1h}"))
    assert server.config_path is not None
    url = server.url
    async with aiohttp.ClientSession() as http:
        first = await wait_json(http, url + "/api/performance", lambda d: _samples(d) == 1)
        assert first["enabled"] is True
        assert "llamaswap_cpu_util_percent" in await _metrics(http, url)

        # Re-timed: the next sample comes now, not an hour after the first one.
        server.config_path.write_text(config("{every: 5s}"))
        await _reload(http, url)
        await wait_json(http, url + "/api/performance", lambda d: _samples(d) >= 2, timeout_s=10)

        server.config_path.write_text(config("{disabled: true, every: 5s}"))
        await _reload(http, url)
        assert await _performance(http, url) == (503, {"enabled": False})
        text = await _metrics(http, url)
        assert "llamaswap_cpu_util_percent" not in text and "llamaswap_memory_" not in text
        assert "llamaswap_es_event_log_last_seq" in text  # our own families stay

        server.config_path.write_text(config("{every: 1h}"))
        await _reload(http, url)
        again = await wait_json(http, url + "/api/performance", lambda d: _samples(d) == 1)
        assert again["enabled"] is True  # sampling started afresh (old samples forgotten)
        assert "llamaswap_cpu_util_percent" in await _metrics(http, url)


async def test_the_default_scheduler_warning_is_logged_once_per_text(server_factory) -> None:
    models = [fake_model("a"), fake_model("b")]

    def config(group: str) -> str:
        header = f"groups:\n  {group}:\n    swap: false\n    members: [a, b]"
        return config_text(models, header=header)

    server = server_factory(config("together"))
    assert server.config_path is not None
    async with aiohttp.ClientSession() as http:

        async def logs() -> str:
            async with http.get(server.url + "/logs") as r:
                return await r.text()

        assert (await logs()).count(WARNED) == 1  # at start
        assert 'group "together" has swap: false' in await logs()
        await _reload(http, server.url)
        assert (await logs()).count(WARNED) == 1  # the same config: not said again
        server.config_path.write_text(config("pair"))
        await _reload(http, server.url)
        async with asyncio.timeout(10):
            while (await logs()).count(WARNED) != 2:
                await asyncio.sleep(0.05)
        assert 'group "pair" has swap: false' in await logs()
