"""The server's life cycle with real processes: a crash of llamaswap-es does not lose loaded
models (they are adopted, or reaped when their config changed), reloads restart only what
changed, preload works, and a graceful stop leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiohttp
import psutil

from llamaswap_es.events.open_log import open_log
from tests.fixtures.net import free_port
from tests.fixtures.processes import pid_gone, wait_until
from tests.fixtures.server import FIFO, config_text, fake_model

CHAT = "/v1/chat/completions"


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def _upstream_pid(http: aiohttp.ClientSession, url: str, model: str) -> int:
    async with http.get(f"{url}/upstream/{model}/fake/info") as response:
        assert response.status == 200
        return (await response.json())["pid"]


def _types(db_path) -> list[str]:
    with open_log(db_path) as reader:
        return [e.type for e in reader.iter_envelopes()]


async def test_a_crashed_server_adopts_its_loaded_model_on_restart(server_factory) -> None:
    config = config_text([fake_model("a", port=free_port())])
    first = server_factory(config)
    async with aiohttp.ClientSession() as http:
        async with http.post(first.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        pid = await _upstream_pid(http, first.url, "a")
        first.stop(signal.SIGKILL)
        assert psutil.pid_exists(pid), "the upstream must outlive the crashed server"

        second = server_factory(config, db_path=first.db_path, name="config2.yaml")
        async with http.post(second.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        assert await _upstream_pid(http, second.url, "a") == pid
        # The adopted upstream's own output (its access log) reaches the new server's log
        # stream; a line may still be lost while the adoption takes over the pipe: ask again.
        marker = "log_server_r: request: GET /fake/info"
        async with http.get(second.url + "/logs/stream/a") as stream:
            seen = asyncio.Event()

            async def read() -> None:
                text = ""
                async for chunk in stream.content.iter_any():
                    text += chunk.decode()
                    if marker in text:
                        seen.set()
                        return

            reader = asyncio.create_task(read())
            async with asyncio.timeout(10):
                while not seen.is_set():
                    await _upstream_pid(http, second.url, "a")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(seen.wait(), 0.5)
            reader.cancel()
    second.stop()
    types = _types(first.db_path)
    assert types.count("StartProcess") == 1, "adopted, not reloaded"
    assert "ProcessAdopted" in types and "RecoveryStarted" in types
    assert pid_gone(pid)
    with open_log(first.db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    [adopted] = [e.body for e in envelopes if e.type == "ProcessAdopted"]
    dispatches = [e.body for e in envelopes if e.type == "Dispatch"]
    # the adopted instance is served at the address recovery recorded, as the first one was
    assert adopted.address and dispatches[-1].address == adopted.address == dispatches[0].address


async def test_a_changed_config_reaps_the_old_process_instead(server_factory) -> None:
    port = free_port()
    first = server_factory(config_text([fake_model("a", port=port)]))
    async with aiohttp.ClientSession() as http:
        async with http.post(first.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        old_pid = await _upstream_pid(http, first.url, "a")
        first.stop(signal.SIGKILL)

        changed = config_text([fake_model("a", "--tokens", "3", port=port)])
        second = server_factory(changed, db_path=first.db_path, name="config2.yaml")
        assert pid_gone(old_pid)
        async with http.post(second.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        assert await _upstream_pid(http, second.url, "a") != old_pid
    with open_log(first.db_path) as reader:
        reaped = [e.body for e in reader.iter_envelopes() if e.type == "OrphanReaped"]
    assert [r.reason for r in reaped] == ["its configuration changed"]


async def test_a_reload_restarts_only_the_model_whose_config_changed(server_factory) -> None:
    ports = {"a": free_port(), "b": free_port()}
    together = f"{FIFO}\ngroups:\n  both:\n    swap: false\n    members: [a, b]"

    def config(b_flags: tuple[str, ...]) -> str:
        models = [fake_model("a", port=ports["a"]), fake_model("b", *b_flags, port=ports["b"])]
        return config_text(models, header=together)

    server = server_factory(config(()))
    async with aiohttp.ClientSession() as http:
        for model in "ab":
            async with http.post(server.url + CHAT, json=_chat(model)) as r:
                assert r.status == 200
        pid_a = await _upstream_pid(http, server.url, "a")
        pid_b = await _upstream_pid(http, server.url, "b")
        assert server.config_path is not None
        server.config_path.write_text(config(("--tokens", "4")))
        server.process.send_signal(signal.SIGHUP)
        await wait_until(  # the reload applied, and b (whose flags changed) stopped for it
            lambda: (
                _types(server.db_path).count("ConfigApplied") == 2
                and "StopProcess" in _types(server.db_path)
            ),
            timeout_s=20,
            what="the reload to restart b",
        )
        async with http.post(server.url + CHAT, json=_chat("b")) as r:
            assert r.status == 200
            assert (await r.json())["usage"]["completion_tokens"] == 4
        assert await _upstream_pid(http, server.url, "a") == pid_a
        assert await _upstream_pid(http, server.url, "b") != pid_b


async def test_a_reload_that_changes_a_model_serves_its_waiting_request_with_the_new_one(
    server_factory,
) -> None:
    """llama-swap answers a changed model's waiting requests 500 "shutting down"; ours are served
    by the new instance (the old one, still loading, is stopped for the reload)."""
    port = free_port()

    def config(*flags: str) -> str:
        return config_text([fake_model("a", *flags, port=port)])

    server = server_factory(config("--load-delay-ms", "20000"))
    assert server.config_path is not None
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.ensure_future(http.post(server.url + CHAT, json=_chat("a")))
        await wait_until(
            lambda: "StartProcess" in _types(server.db_path), 20, "the old instance to start"
        )
        server.config_path.write_text(config("--tokens", "4"))
        async with http.post(server.url + "/api/config/reload") as r:
            assert r.status == 200, await r.text()
        async with await asyncio.wait_for(waiting, 30) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["usage"]["completion_tokens"] == 4
    types = _types(server.db_path)
    assert types.count("StartProcess") == 2 and "Reject" not in types


async def test_an_invalid_reload_keeps_the_old_config(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    assert server.config_path is not None
    server.config_path.write_text("models:\n  a:\n    ttl: -7\n    cmd: x\n    proxy: http://x\n")
    server.process.send_signal(signal.SIGHUP)
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(20):
            while True:
                async with http.get(server.url + "/logs") as r:
                    logs = await r.text()
                if "configuration reload failed" in logs:
                    break
                await asyncio.sleep(0.05)
        assert "invalid TTL value -7" in logs
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200


async def test_preload_starts_the_listed_models(server_factory) -> None:
    header = "hooks:\n  on_startup:\n    preload: [a]"
    server = server_factory(config_text([fake_model("a"), fake_model("b")], header=header))
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            async with http.get(server.url + "/running") as r:
                running = (await r.json())["running"]
            if [m["model"] for m in running if m["state"] == "ready"] == ["a"]:
                break
            await asyncio.sleep(0.05)


async def test_sigterm_stops_every_process_and_flushes_the_log(server_factory) -> None:
    server = server_factory(config_text([fake_model("a", "--fork-child")]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        pid = await _upstream_pid(http, server.url, "a")
    assert server.stop(signal.SIGTERM) == 0
    assert pid_gone(pid)
    types = _types(server.db_path)
    assert types[-2:] == ["StopProcess", "ProcessStopped"]
    assert "ShutdownRequested" in types


async def test_watch_config_reloads_when_the_file_changes(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]), args=("--watch-config",))
    assert server.config_path is not None
    server.config_path.write_text(config_text([fake_model("a"), fake_model("b")]))
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:  # the watcher polls every 2 s, as llama-swap's does
            async with http.get(server.url + "/v1/models") as r:
                ids = [m["id"] for m in (await r.json())["data"]]
            # The new config is served a moment before its ConfigApplied is committed: wait
            # for both, not for the first alone.
            if ids == ["a", "b"] and "reload" in _reasons(server.db_path):
                break
            await asyncio.sleep(0.1)
    assert _reasons(server.db_path) == ["startup", "reload"]


def _reasons(db_path) -> list[str]:
    with open_log(db_path) as reader:
        return [e.body.reason for e in reader.iter_envelopes() if e.type == "ConfigApplied"]


async def test_a_second_signal_exits_at_once_and_leaves_no_model_running(server_factory) -> None:
    stubborn = fake_model("a", "--ignore-sigterm", extra="unloadTimeout: 60")
    server = server_factory(config_text([stubborn]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        pid = await _upstream_pid(http, server.url, "a")
        server.process.send_signal(signal.SIGTERM)  # the stop now waits out a's long grace
        async with asyncio.timeout(20):
            while "StopProcess" not in _types(server.db_path):
                await asyncio.sleep(0.05)
    assert server.stop(signal.SIGTERM, timeout_s=10) == 1
    await wait_until(lambda: pid_gone(pid), timeout_s=10, what="the upstream to be killed")


async def test_the_reload_endpoint_applies_the_file_or_says_why_not(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")]))
    assert server.config_path is not None
    reload_url = server.url + "/api/config/reload"
    async with aiohttp.ClientSession() as http:
        server.config_path.write_text(config_text([fake_model("a"), fake_model("b")]))
        async with http.post(reload_url) as r:
            assert r.status == 200
            answer = await r.json()
        assert answer["msg"] == "configuration reloaded" and answer["config_hash"]
        async with http.get(server.url + "/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]

        server.config_path.write_text(
            "models:\n  a:\n    ttl: -7\n    cmd: x\n    proxy: http://x\n"
        )
        async with http.post(reload_url) as r:
            assert r.status == 400
            message = (await r.json())["error"]["message"]
        assert "keeping the old one" in message and "invalid TTL value -7" in message
        async with http.get(server.url + "/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]

        # Keys added by a reload protect the very next request, the endpoint itself included.
        keyed = config_text([fake_model("a")], header="apiKeys: [reload-key-1]")
        server.config_path.write_text(keyed)
        async with http.post(reload_url) as r:
            assert r.status == 200
        async with http.get(server.url + "/v1/models") as r:
            assert r.status == 401
        async with http.post(reload_url) as r:
            assert r.status == 401
        bearer = {"Authorization": "Bearer reload-key-1"}
        async with http.get(server.url + "/v1/models", headers=bearer) as r:
            assert r.status == 200
            assert [m["id"] for m in (await r.json())["data"]] == ["a"]
    with open_log(server.db_path) as reader:
        reasons = [e.body.reason for e in reader.iter_envelopes() if e.type == "ConfigApplied"]
    assert reasons == ["startup", "reload", "reload"]


async def test_a_reload_that_turns_captures_on_captures_the_next_request(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")], header="captureBuffer: 0"))
    assert server.config_path is not None
    activity_url = f"{server.url}/api/metrics/activity"
    async with aiohttp.ClientSession() as http:

        async def rows(count: int, captured: bool = False) -> list[dict]:
            """The activity rows once there are `count` (and, with `captured`, once the newest
            one's capture is stored: it is written just after the row)."""
            async with asyncio.timeout(20):
                while True:
                    async with http.get(activity_url) as r:
                        doc = await r.json()
                    if doc["total"] >= count and (not captured or doc["data"][0]["has_capture"]):
                        return doc["data"]
                    await asyncio.sleep(0.05)

        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        assert [row["has_capture"] for row in await rows(1)] == [False]
        server.config_path.write_text(config_text([fake_model("a")], header="captureBuffer: 5"))
        async with http.post(server.url + "/api/config/reload") as r:
            assert r.status == 200
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200
        newest_first = await rows(2, captured=True)  # a timeout here: captures stayed off
        assert [row["has_capture"] for row in newest_first] == [True, False]
