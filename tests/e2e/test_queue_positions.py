"""Queue positions reach a waiting client through the real server, read from the committed view
(no QueuePositions decision is logged since core-4): the loading preamble shows a streamed
request's place in the queue and its move up. The fixture replays the log at teardown."""

from __future__ import annotations

import asyncio
import functools

import aiohttp

from tests.e2e.test_keep_alive_and_queue_timeout import CHAT, HI, _events, _reasoning, _until
from tests.fixtures.server import config_text, fake_model


async def test_a_queued_stream_is_told_its_position_and_its_move_up(server_factory) -> None:
    models = [
        fake_model("slow", "--load-delay-ms", "3500"),
        fake_model("b", "--load-delay-ms", "2000"),
        fake_model("c", "--load-delay-ms", "3000"),
    ]
    server = server_factory(config_text(models, header="sendLoadingState: true"))

    def streamed(model: str) -> dict:
        return {"model": model, "messages": HI, "stream": True}

    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(
            http.post(server.url + CHAT, json={"model": "slow", "messages": HI})
        )

        async def received(n: int) -> bool:
            return len(_events(server.db_path, "RequestReceived")) >= n

        await _until(lambda: received(1))  # serial: b's requests queue behind slow's load
        one = asyncio.create_task(http.post(server.url + CHAT, json=streamed("b")))
        await _until(lambda: received(2))
        # for another model, so it cannot join b's swap: it stays queued and moves up to #1
        # while b loads; its preamble goes on through c's load: 5 s in all. The preamble types a
        # new position within ~1.6 s (a remark in progress, a 750 ms tick, the line); #2 has
        # ~3 s before slow is ready, #1 ~5 s before c is.
        two = asyncio.create_task(http.post(server.url + CHAT, json=streamed("c")))
        bodies = []
        for task in (one, two):
            async with await task as r:
                assert r.status == 200
                bodies.append(_reasoning((await r.read()).decode()))
        async with await first as served:
            assert served.status == 200
    assert "Queue position: #1" in bodies[0]
    second = bodies[1]
    assert "Queue position: #2" in second and "Queue position: #1" in second
    assert second.index("Queue position: #2") < second.index("Queue position: #1")
    assert not _events(server.db_path, "QueuePositions")


async def test_the_inflight_view_follows_each_waiting_request_through_the_queue(
    server_factory,
) -> None:
    """`/api/inflight` shows a waiting request's phase and queue position as the commits that
    move it are made (the run loop tells the handler; nothing polls): behind slow's load, b is
    queued #1 and c #2; once b's own load begins, b is loading and c has moved up to #1."""
    models = [
        fake_model("slow", "--load-delay-ms", "1500"),
        fake_model("b", "--load-delay-ms", "1500"),
        fake_model("c"),
    ]
    server = server_factory(config_text(models))

    async def places(http: aiohttp.ClientSession) -> dict[str, tuple[str, int | None]]:
        async with http.get(server.url + "/api/inflight") as r:
            entries = (await r.json())["requests"]
        return {e["model"]: (e["phase"], e.get("queue_position")) for e in entries}

    async with aiohttp.ClientSession() as http:
        sent = [
            asyncio.create_task(
                http.post(server.url + CHAT, json={"model": "slow", "messages": HI})
            )
        ]

        async def received(n: int) -> bool:
            return len(_events(server.db_path, "RequestReceived")) >= n

        await _until(lambda: received(1))
        for model in ("b", "c"):
            sent.append(
                asyncio.create_task(
                    http.post(server.url + CHAT, json={"model": model, "messages": HI})
                )
            )
            await _until(functools.partial(received, len(sent)))

        async def shown(expected: dict[str, tuple[str, int | None]]) -> bool:
            now = await places(http)
            return all(now.get(model) == place for model, place in expected.items())

        await _until(
            lambda: shown({"slow": ("loading", None), "b": ("queued", 1), "c": ("queued", 2)})
        )
        await _until(lambda: shown({"b": ("loading", None), "c": ("queued", 1)}))
        for task in sent:
            async with await task as r:
                assert r.status == 200
