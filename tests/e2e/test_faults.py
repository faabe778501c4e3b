"""Faults a real server must survive and tell the truth about (docs/architecture.md, "Failure
modes"): a poisoned header, a full disk (a real tmpfs filled up, then freed), and a stop while the
disk is full. Each test ends with `replay verify` of the log (the server fixture does it)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import psutil

from llamaswap_es.events.open_log import open_log
from tests.fixtures.disk import SmallDisk
from tests.fixtures.processes import pid_gone, wait_until
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
BODY = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}


async def _health(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url + "/health") as response:
        return response.status, await response.text()


async def _until_healthy(http: aiohttp.ClientSession, url: str) -> None:
    """Wait for /health to say 200 again, at most 5 s after the disk was freed."""
    loop = asyncio.get_running_loop()
    freed_at = loop.time()
    while (await _health(http, url))[0] != 200:
        assert loop.time() - freed_at < 5, "not serving again 5 s after space returned"
        await asyncio.sleep(0.05)


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


async def test_a_header_that_cannot_be_recorded_never_stops_the_scheduler(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    async with aiohttp.ClientSession() as http:
        # A raw byte above 0x7f in a header the activity history keeps (X-Session-ID).
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b'{"model": "a", "messages": []}'
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-Session-ID: \xff\xfe\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        status = int(status_line.split()[1])
        assert status < 500, status_line
        for _ in range(2):  # the loop is alive: the next requests are served
            async with http.post(server.url + CHAT, json=BODY) as r:
                assert r.status == 200
        assert await _health(http, server.url) == (200, "OK")


async def test_a_full_disk_refuses_new_work_with_503_and_heals_when_space_returns(
    small_disk: SmallDisk, server_factory
) -> None:
    server = server_factory(config_text([fake_model("a")]), db_path=small_disk.path / "events.db")
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=BODY) as r:
            assert r.status == 200
        small_disk.fill()
        async with http.post(server.url + CHAT, json=BODY) as r:
            assert r.status == 503
            assert "event log cannot be written" in await r.text()
            assert int(r.headers["Retry-After"]) > 0
        status, text = await _health(http, server.url)
        assert status == 503 and "disk holding the event log is full" in text
        assert await _metric(http, server.url, "llamaswap_es_event_log_writable") == 0
        assert await _metric(http, server.url, "llamaswap_es_healthy") == 0

        small_disk.free()
        await _until_healthy(http, server.url)
        async with http.post(server.url + CHAT, json=BODY) as r:
            assert r.status == 200
        assert await _metric(http, server.url, "llamaswap_es_event_log_writable") == 1
    # Every answer is in the history as the client saw it. The request that met the full disk
    # was either refused at the door (the first request's own record had already failed to
    # commit: never admitted, nothing recorded) or admitted in the batch that could not be
    # written, answered 503 after a second and recorded with that 503 once the log healed.
    assert server.stop() == 0  # every record of the answered requests is written by now
    with open_log(server.db_path) as reader:
        finished = [e.body for e in reader.iter_envelopes() if e.type == "RequestFinished"]
    assert [f.status for f in finished] in ([200, 200], [200, 503, 200])
    if len(finished) == 3:
        assert "event log cannot be written" in (finished[1].error or "")


async def test_stopping_while_the_disk_is_full_leaves_no_model_running(
    small_disk: SmallDisk, server_factory
) -> None:
    server = server_factory(config_text([fake_model("a")]), db_path=small_disk.path / "events.db")
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=BODY) as r:
            assert r.status == 200
        async with http.get(f"{server.url}/upstream/a/fake/info") as r:
            upstream = psutil.Process((await r.json())["pid"])
        small_disk.fill()
        async with http.post(server.url + CHAT, json=BODY) as r:
            assert r.status == 503
    assert server.stop(signal.SIGTERM) == 0
    await wait_until(lambda: pid_gone(upstream.pid), 10, "the model's process to be gone")
    small_disk.free()  # the fixture's replay verify reads the log afterwards


async def test_a_loading_stream_gets_the_full_disk_as_an_error_in_its_stream(
    small_disk: SmallDisk, server_factory
) -> None:
    """The 200 of a loading-state stream has gone out when the disk fills during the load: the
    refusal must arrive inside that stream, not as a second HTTP response written into it."""
    config = config_text(
        [fake_model("a", "--load-delay-ms", "20000")], header="sendLoadingState: true"
    )
    server = server_factory(config, db_path=small_disk.path / "events.db")
    body = {**BODY, "stream": True}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=body) as r:
            assert r.status == 200
            await r.content.readuntil(b"\n\n")  # the loading stream has started
            small_disk.fill()
            rest = (await asyncio.wait_for(r.content.read(), 30)).decode()
        assert "event log cannot be written" in rest
        small_disk.free()


SELECTOR = """
selectors:
  pick:
    strategy: spillover
    targets: [a]
"""


async def test_a_selector_request_waiting_on_a_full_disk_is_answered_503_like_any_other(
    small_disk: SmallDisk, server_factory
) -> None:
    """A selector's choice waits for the reducer like a request does: when the log cannot be
    written it is answered 503 after the same second, and its reservation is released."""
    server = server_factory(
        config_text([fake_model("a")], header=SELECTOR), db_path=small_disk.path / "events.db"
    )
    pick = {**BODY, "model": "pick"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=pick) as r:
            assert r.status == 200

        def finished() -> int:
            with open_log(server.db_path) as reader:
                return sum(1 for e in reader.iter_envelopes() if e.type == "RequestFinished")

        await wait_until(lambda: finished() == 1, 10, "the first request's end in the log")
        small_disk.fill()  # the loop is not degraded yet: the choice is asked, its write fails
        async with asyncio.timeout(15), http.post(server.url + CHAT, json=pick) as r:
            assert r.status == 503
            text = await r.text()
            assert "event log cannot be written" in text, text
            refused_id = r.headers.get("X-Request-ID", "")
        small_disk.free()
        await _until_healthy(http, server.url)
        async with http.post(server.url + CHAT, json=pick) as r:
            assert r.status == 200
    assert server.stop() == 0
    with open_log(server.db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    asked = [e.body.request_id for e in envelopes if e.type == "SelectorRequested"]
    ended = {e.body.request_id: e.body.reason for e in envelopes if e.type == "SelectionEnded"}
    # The loop was idle when the disk filled: the choice was asked, waited, was answered 503,
    # and ended, releasing its reservation, once the log was writable again.
    assert refused_id in asked and len(asked) == 3, asked
    assert ended.get(refused_id) == "log_unavailable", ended
