"""A selector's choice is a decision in the log: `SelectorChose` names the target and the rule,
the request is served under the same id as a request for that target, the fixture's
`replay verify` finds no divergence, and `replay whatif` re-decides the same choices."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web

from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.explain import explain
from llamaswap_es.replay.traffic import extract_traffic
from llamaswap_es.replay.whatif import simulate
from llamaswap_es.replay.whatif_table import render_table
from tests.fixtures.net import free_port
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
SLOW = ("--tokens", "40", "--token-delay-ms", "50")  # ~2 s of tokens: still in flight
SPILLOVER = """
routing:
  router:
    settings:
      groups:
        pair: {swap: false, exclusive: false, members: [a, b]}
selectors:
  pick:
    strategy: spillover
    targets: [a, b]
"""


def _log(db_path: str, *types: str) -> list:
    with open_log(db_path) as reader:
        return [e for e in reader.iter_envelopes() if e.type in types]


async def _until(check, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.02)


async def _chat(http: aiohttp.ClientSession, url: str, model: str) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + CHAT, json=body) as response:
        return response.status, response.headers.get("X-Request-ID", "")


async def test_spillover_choices_are_logged_replayed_and_re_decided(server_factory) -> None:
    config = config_text([fake_model("a", *SLOW), fake_model("b", *SLOW)], header=SPILLOVER)
    server = server_factory(config)
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(_chat(http, server.url, "pick"))
        await _until(lambda: len(_log(server.db_path, "Dispatch")) == 1)
        second = await _chat(http, server.url, "pick")  # a is busy: spills over to b
        assert (await first)[0] == 200 and second[0] == 200
        third = await _chat(http, server.url, "pick")  # both idle and ready: round-robin
        assert third[0] == 200
        async with http.get(f"{server.url}/api/requests/{second[1]}/story") as response:
            story = await response.json()
        assert story["model"] == "b"  # the chosen model, with b's load for this request
        kinds = [e["type"] for e in story["events"]]
        assert kinds[:3] == ["SelectorRequested", "SelectorChose", "RequestReceived"], kinds
        assert "StartProcess" in kinds and kinds[-1] == "RequestFinished", kinds

    chose = [e.body for e in _log(server.db_path, "SelectorChose")]
    assert [(c.target, c.rule) for c in chose] == [
        ("a", "spillover-idle"),
        ("b", "spillover-cold"),
        ("b", "spillover-below"),
    ]
    assert chose[1].describe().endswith("spillover: a has 1 reserved ≥ spillover 1, b cold"), chose[
        1
    ].describe()
    received = {e.body.request_id: e.body for e in _log(server.db_path, "RequestReceived")}
    for choice in chose:  # served under the choice's id, as a request for the chosen model
        assert received[choice.request_id].model == choice.target
        assert received[choice.request_id].metadata["selector"] == "pick"
    assert second[1] == chose[1].request_id  # the client sees that id

    spilled = _log(server.db_path, "SelectorChose")[1]
    with open_log(server.db_path) as reader:
        why = explain(reader, spilled.seq).text
        traffic = extract_traffic(reader.iter_envelopes())
    assert "Selector pick (spillover) sends request" in why and "a ready, 1 reserved" in why, why
    assert traffic.recorded.choices == {c.request_id: c.target for c in chose}
    simulated = simulate(traffic, {})
    assert simulated.choices == traffic.recorded.choices
    table = render_table(traffic.recorded, simulated).splitlines()
    assert table[-2:] == ["selector choices (rec): a 1, b 2", "selector choices (sim): a 1, b 2"]


async def _held_peer(release: asyncio.Event) -> tuple[web.AppRunner, int]:
    """Another llama-swap, as far as we can tell: it answers once `release` is set."""

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()
        return web.json_response({"choices": [{"message": {"content": "from the peer"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_peer_target_holds_its_reservation_until_the_peer_answered(
    server_factory,
) -> None:
    release = asyncio.Event()
    runner, port = await _held_peer(release)
    header = (
        f"peers:\n  p1:\n    proxy: http://127.0.0.1:{port}\n    models: [remote]\n"
        "selectors:\n  pick:\n    strategy: spillover\n    targets: [p1/remote, a]\n"
    )
    server = server_factory(config_text([fake_model("a")], header=header))
    try:
        async with aiohttp.ClientSession() as http:
            first = asyncio.create_task(_chat(http, server.url, "pick"))  # all cold: the peer
            await _until(lambda: len(_log(server.db_path, "SelectorChose")) == 1)
            second = await _chat(http, server.url, "pick")  # the peer holds 1: spill to a
            assert second[0] == 200
            release.set()
            assert (await first)[0] == 200
            await _until(lambda: len(_log(server.db_path, "SelectionEnded")) == 1)
            # Chosen (a), then refused before it reached the scheduler: the choice is ended.
            bad = {"model": "pick", "ttl": "soon", "messages": []}
            async with http.post(server.url + CHAT, json=bad) as response:
                assert response.status == 400 and "invalid ttl" in await response.text()
            await _until(lambda: len(_log(server.db_path, "SelectionEnded")) == 2)
    finally:
        release.set()
        with contextlib.suppress(Exception):
            await runner.cleanup()

    chose = [e.body for e in _log(server.db_path, "SelectorChose")]
    assert [(c.target, c.model, c.rule) for c in chose] == [
        ("p1/remote", "", "spillover-idle"),
        ("a", "a", "spillover-cold"),
        ("a", "a", "spillover-below"),
    ]
    ended = [(e.body.request_id, e.body.reason) for e in _log(server.db_path, "SelectionEnded")]
    assert ended == [
        (chose[0].request_id, "served_by_peer"),
        (chose[2].request_id, "not_scheduled"),
    ]
    (peer,) = [e.body for e in _log(server.db_path, "PeerRequestFinished")]
    assert peer.request_id == chose[0].request_id and peer.metadata["selector"] == "pick"

    # what-if keeps the refused choice unserved, as it was: the same requests reach `a`
    with open_log(server.db_path) as reader:
        traffic = extract_traffic(reader.iter_envelopes())
    assert [r.request_id for r in traffic.requests if r.refused] == [chose[2].request_id]
    simulated = simulate(traffic, {})
    assert len(simulated.waits_ms["a"]) == len(traffic.recorded.waits_ms["a"]) == 1
