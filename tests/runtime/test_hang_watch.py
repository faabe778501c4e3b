"""The hang watch against a real loopback listener whose answers each test scripts.

Only silence counts: a probe fails when no HTTP answer arrives within the probe timeout (or the
connection is refused), any status is a sign of life, and only failures in a row make a verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from llamaswap_es.runtime.hang_watch import HangDetection, watch_for_hang
from llamaswap_es.runtime.health import probe_session
from tests.fixtures.net import free_port
from tests.fixtures.processes import wait_until

FAST = HangDetection(probe_interval_ms=30, probe_timeout_ms=150, failures_before_hung=3)


class ScriptedHealth:
    """An HTTP listener on 127.0.0.1: probe n gets `script[n]`, "silent" once it runs out.

    "ok" and "503" answer at once with that status, ("slow", s) answers 200 after s seconds,
    "silent" reads the request and never answers (the connection stays open, as with a stopped
    process whose kernel still accepts connections).
    """

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.probes = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/health"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        step = self.script[self.probes] if self.probes < len(self.script) else "silent"
        self.probes += 1
        if step == "silent":
            return
        if isinstance(step, tuple):
            await asyncio.sleep(step[1])
            step = "ok"
        status = "200 OK" if step == "ok" else "503 Service Unavailable"
        head = f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        writer.write(head.encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with probe_session() as client:
        yield client


async def _scripted(script: list[object]) -> ScriptedHealth:
    server = ScriptedHealth(script)
    await server.start()
    return server


async def test_silence_is_declared_after_the_configured_failures_in_a_row(session) -> None:
    server = await _scripted(["ok"])
    try:
        verdict = await asyncio.wait_for(
            watch_for_hang(server.url, lambda: session, lambda: FAST, name="m#1"), 10
        )
    finally:
        await server.close()
    assert verdict.failures == 3
    assert verdict.error == (
        f"3 health probes in a row to {server.url} failed: no answer within 0.15 s (x3)"
    )
    assert server.probes == 4  # one answered, then three in a row did not


async def test_any_answer_resets_the_count_and_an_error_status_counts_as_alive(session) -> None:
    """A busy server that answers 503, or slowly but within the timeout, is not hung."""
    script: list[object] = ["silent", "silent", "503", "silent", "silent", ("slow", 0.05)]
    server = await _scripted(script)
    try:
        verdict = await asyncio.wait_for(
            watch_for_hang(server.url, lambda: session, lambda: FAST, name="m#1"), 10
        )
    finally:
        await server.close()
    assert verdict.failures == 3
    assert server.probes == len(script) + 3


async def test_a_refused_connection_is_a_failure_and_is_named(session) -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    settings = replace(FAST, failures_before_hung=2)
    verdict = await asyncio.wait_for(
        watch_for_hang(url, lambda: session, lambda: settings, name="m#1"), 10
    )
    assert verdict.error == (
        f"2 health probes in a row to {url} failed: cannot connect: Connection refused (x2)"
    )


async def test_turned_off_it_probes_nothing_and_settings_apply_at_the_next_probe(
    session,
) -> None:
    server = await _scripted([])
    current = replace(FAST, enabled=False)
    reads = 0

    def settings() -> HangDetection:
        nonlocal reads
        reads += 1
        return current

    watch = asyncio.ensure_future(watch_for_hang(server.url, lambda: session, settings))
    try:
        await wait_until(lambda: reads >= 6, what="the watch to look at its settings 6 times")
        assert server.probes == 0 and not watch.done()
        current = replace(FAST, enabled=True)  # a reload turns it on: the next probe counts
        verdict = await asyncio.wait_for(watch, 10)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await server.close()
    assert verdict.failures == 3 and server.probes == 3
