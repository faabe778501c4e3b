"""A hung upstream is detected and cleared (ARCHITECTURE §11.6), with real processes and clients.

An upstream SIGSTOPped mid-stream keeps its port and its connections but answers nothing. With
short hang-detection settings its clients get a clear error naming the model (an SSE error
frame for the stream already started, a 504 for a request still waiting), its process group is
killed (no SIGCONT needed), the group is free for another model, and the next request for it is
served by a fresh instance. The log says why (`replay explain`). A busy real llama-server, whose
`/health` answers during a long generation, is not declared hung.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp

from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.explain import explain
from tests.fixtures.net import free_port
from tests.fixtures.processes import pid_gone, wait_until
from tests.fixtures.server import config_text, fake_model

CHAT = "/v1/chat/completions"
FAST_HANG_DETECTION = (
    "llamaswap-es:\n  hangDetection:\n    probeIntervalMs: 200\n    probeTimeoutMs: 300\n"
    "    failuresBeforeHung: 2\n"
)


def _chat(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def _upstream_pid(http: aiohttp.ClientSession, url: str, model: str) -> int:
    async with http.get(f"{url}/upstream/{model}/fake/info") as response:
        assert response.status == 200
        return (await response.json())["pid"]


async def _running_requests(http: aiohttp.ClientSession, url: str, model: str) -> int:
    async with http.get(f"{url}/api/inflight") as response:
        entries = (await response.json())["requests"]
    return sum(1 for e in entries if e["model"] == model and e["phase"] == "running")


async def test_a_frozen_upstream_is_cleared_its_clients_told_and_its_group_freed(
    server_factory, freeze
) -> None:
    slow = ("--tokens", "400", "--token-delay-ms", "50")  # a 20 s answer: frozen long before
    # fifo: two requests served by `a` at once (serial, the default, serves one at a time)
    header = FAST_HANG_DETECTION + "routing:\n  scheduler:\n    use: fifo\n"
    config = config_text([fake_model("a", *slow), fake_model("b")], header=header)
    server = server_factory(config)  # no groups: one swap group, one model at a time
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        pid = await _upstream_pid(http, server.url, "a")
        stream = await http.post(server.url + CHAT, json=_chat("a", stream=True))
        assert stream.status == 200
        first = await stream.content.readuntil(b"\n\n")  # the stream has started
        assert first.startswith(b"data: ")
        waiting = asyncio.create_task(http.post(server.url + CHAT, json=_chat("a")))
        await wait_until_async(lambda: _running_requests(http, server.url, "a"), 2)

        loop = asyncio.get_running_loop()
        frozen_at = loop.time()
        freeze(pid)
        rest = await asyncio.wait_for(stream.content.read(), 15)  # ends: no hang for ever
        cleared_s = loop.time() - frozen_at
        frames = [f for f in rest.split(b"\n\n") if f.strip()]
        assert frames[-1].startswith(b"event: error\ndata: "), frames[-1]
        error = json.loads(frames[-1].split(b"data: ", 1)[1])["error"]
        assert error["code"] == "upstream_hung"
        assert error["message"].startswith('model "a" stopped responding and was declared hung: 2')
        assert cleared_s < 10, cleared_s  # ~1 s with these settings; loosely bounded (load)

        answered = await asyncio.wait_for(waiting, 15)
        assert answered.status == 504
        envelope = await answered.json()
        assert envelope["error"]["code"] == "upstream_hung"
        assert 'model "a"' in envelope["error"]["message"]

        await wait_until(lambda: pid_gone(pid), what="the frozen upstream to be killed")

        async with http.post(server.url + CHAT, json=_chat("b")) as other:
            assert other.status == 200  # the swap group is free again
        async with http.post(server.url + CHAT, json=_chat("a", max_tokens=2)) as again:
            assert again.status == 200
        assert await _upstream_pid(http, server.url, "a") != pid  # a fresh instance

        async with http.get(server.url + "/metrics") as metrics:
            assert 'llamaswap_es_model_hangs_total{model="a"} 1.0' in await metrics.text()

    with open_log(server.db_path) as reader:
        events = list(reader.iter_envelopes())
        hung = [e for e in events if e.type == "ProcessHung"]
        stops = [e for e in events if e.type == "StopProcess" and e.body.reason == "hung"]
        assert len(hung) == 1 and len(stops) == 1
        assert (hung[0].body.model, hung[0].body.instance) == ("a", 1)
        assert stops[0].cause == hung[0].seq and stops[0].body.grace_ms == 0
        why = explain(reader, stops[0].seq).text
    assert "a hung (instance 1): 2 health probes in a row" in why
    assert "declared hung" in why and "serving 2 request(s)" in why
    finished = {e.body.request_id: e.body for e in events if e.type == "RequestFinished"}
    statuses = sorted(body.status for body in finished.values() if body.model == "a")
    assert 504 in statuses  # the waiting request is recorded with the error it got


async def test_a_websocket_tunnel_to_a_frozen_upstream_closes_with_1011_naming_the_model(
    server_factory, freeze
) -> None:
    """Frozen mid-tunnel, the upstream answers no ping: the client gets a close frame saying so,
    and the request is recorded with the same error (the probes are slowed so that the
    tunnel's own ping, not a hang declaration, is what finds it)."""
    header = (
        "llamaswap-es:\n  hangDetection:\n    probeIntervalMs: 60000\n    probeTimeoutMs: 300\n"
    )
    server = server_factory(config_text([fake_model("a")], header=header))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        pid = await _upstream_pid(http, server.url, "a")
        async with http.ws_connect(server.url + "/upstream/a/ws", autoclose=False) as ws:
            await ws.send_str("hi")
            assert await asyncio.wait_for(ws.receive_str(), 10) == "echo: hi"
            freeze(pid)
            closed = await asyncio.wait_for(ws.receive(), 10)
        os.kill(pid, signal.SIGCONT)  # thawed: the server's shutdown stops it as usual
    reason = 'model "a": the upstream stopped answering (no pong within 0.3 s)'
    assert (closed.type, closed.data, closed.extra) == (aiohttp.WSMsgType.CLOSE, 1011, reason)

    def tunnel_errors() -> list[str | None]:
        with open_log(server.db_path) as reader:
            return [
                e.body.error for e in reader.iter_envelopes()
                if e.type == "RequestFinished" and e.body.status == 101
            ]  # fmt: skip

    await wait_until(lambda: bool(tunnel_errors()), what="the tunnel's end in the log")
    assert tunnel_errors() == [f"websocket tunnel ended: {reason}"]


async def wait_until_async(count, want: int, timeout_s: float = 15) -> None:
    """Until `await count()` reaches `want` (bounded)."""
    async with asyncio.timeout(timeout_s):
        while await count() < want:
            await asyncio.sleep(0.02)


async def test_a_busy_llama_server_is_not_declared_hung_but_a_frozen_one_is(
    server_factory, freeze, upstreams_dir
) -> None:
    """Three long generations keep a one-slot llama-server busy for seconds; its `/health`
    answers from the HTTP threads all along, so probes every 0.1 s never fail twice in a row.
    Then it is frozen, which the same watch catches: the quiet first half was not for want of
    probing."""
    port = free_port()
    model = (
        "  tiny:\n"
        f"    cmd: {upstreams_dir / 'llama-server'} --host 127.0.0.1 --port {port} "
        f"-m {upstreams_dir / 'tiny-a.gguf'} -c 2048 -np 1 -t 1\n"
        f"    proxy: http://127.0.0.1:{port}\n"
    )
    header = (
        "llamaswap-es:\n  hangDetection:\n    probeIntervalMs: 100\n    probeTimeoutMs: 500\n"
        "    failuresBeforeHung: 2\n"
    )
    server = server_factory(config_text([model], header=header))
    long = _chat("tiny", max_tokens=1900, ignore_eos=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        loop = asyncio.get_running_loop()
        async with http.post(server.url + CHAT, json=_chat("tiny", max_tokens=1)) as warm:
            assert warm.status == 200  # loaded: the busy part below is generation only
        began = loop.time()
        answers = await asyncio.gather(
            *(_completion_tokens(http, server.url + CHAT, long) for _ in range(3))
        )
        busy_s = loop.time() - began
        assert answers == [1900, 1900, 1900]
        # Long enough that a /health blocked by the generation would have been declared hung
        # (about one interval plus two timeouts): the result is not vacuous.
        assert busy_s > 0.1 + 2 * 0.5, busy_s
        assert _types(server.db_path).count("ProcessHung") == 0

        pid = _spawned_pids(server.db_path)[0]
        freeze(pid)
        await wait_until(lambda: pid_gone(pid), timeout_s=20, what="the frozen server killed")
    assert _types(server.db_path).count("ProcessHung") == 1
    assert len(_spawned_pids(server.db_path)) == 1  # one instance served all three


async def _completion_tokens(http: aiohttp.ClientSession, url: str, body: dict) -> int:
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["usage"]["completion_tokens"]


def _types(db_path) -> list[str]:
    with open_log(db_path) as reader:
        return [e.type for e in reader.iter_envelopes()]


def _spawned_pids(db_path) -> list[int]:
    with open_log(db_path) as reader:
        return [e.body.pid for e in reader.iter_envelopes() if e.type == "ProcessSpawned"]
