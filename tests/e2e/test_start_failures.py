"""A model that cannot start, end to end: real server, real processes, the real openai SDK.

The answer names the cause (the binary, or the model's own last words and exit status), the SDK
is told whether to retry (`x-should-retry`, `Retry-After`) and obeys, and a burst of requests
inside the backoff window spawns nothing more. Attempts are counted in the event log
(`RequestReceived`), spawns as `StartProcess` decisions.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import anthropic
import openai

from llamaswap_es.events.open_log import open_log
from tests.fixtures.net import free_port
from tests.fixtures.server import config_text

CHAT = "/v1/chat/completions"
MISSING = "/no/such/dir/llama-server"


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def _model(model: str, cmd: str) -> str:
    port = free_port()
    return f"  {model}:\n    cmd: {cmd} --port {port}\n    proxy: http://127.0.0.1:{port}"


def _no_model_file(tmp_path: Path) -> str:
    """A model server that cannot find its model file: says so, exits 1 (every time)."""
    script = tmp_path / "model-server"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('llama_model_load: loading model from /models/x.gguf', flush=True)\n"
        "print('error: model file not found: /models/x.gguf', file=sys.stderr)\nsys.exit(1)\n"
    )
    script.chmod(0o755)
    return str(script)


def _config(*models: str, backoff_s: int) -> str:
    header = f"llamaswap-es:\n  startBackoffSeconds: {backoff_s}\n  startBackoffMaxSeconds: 30"
    return config_text(list(models), header=header)


async def _log_until(db_path: Path, ready, timeout_s: float = 20) -> list:
    """The whole log, read again until `ready(events)` holds (rows commit after the answer)."""
    async with asyncio.timeout(timeout_s):
        while True:
            with open_log(db_path) as reader:
                events = list(reader.iter_envelopes())
            if ready(events):
                return events
            await asyncio.sleep(0.02)


def _of(events: list, kind: str, model: str) -> list:
    return [e.body for e in events if e.type == kind and getattr(e.body, "model", None) == model]


def _answered(events: list, model: str) -> int:
    """Requests for `model` that got their Reject (or Dispatch) in the log."""
    asked = {r.request_id for r in _of(events, "RequestReceived", model)}
    return sum(1 for e in events if e.type == "Reject" and e.body.request_id in asked)


async def test_a_missing_binary_is_named_and_the_sdk_does_not_retry(server_factory) -> None:
    server = server_factory(_config(_model("ghost", MISSING), backoff_s=5))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused")  # 2 retries
    try:
        await client.chat.completions.create(**_chat("ghost"))  # type: ignore[call-overload]
        raise AssertionError("a model whose binary is missing answered")
    except openai.InternalServerError as err:
        assert err.status_code == 500
        assert err.response.headers["x-should-retry"] == "false"
        assert 1 <= int(err.response.headers["Retry-After"]) <= 5
        message = err.body["message"]  # type: ignore[index]
        assert message.startswith(f"unspecific error: failed to start command '{MISSING} --port")
        assert f"binary '{MISSING}': not found" in message
    finally:
        await client.close()
    # The anthropic SDK reads the same header: inside the window, one attempt, answered at once.
    claude = anthropic.AsyncAnthropic(base_url=server.url, api_key="unused")  # 2 retries
    try:
        await claude.messages.create(
            model="ghost", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("a model whose binary is missing answered")
    except anthropic.APIStatusError as err:
        assert err.status_code == 503 and err.response.headers["x-should-retry"] == "false"
        assert f"binary '{MISSING}': not found" in err.message
    finally:
        await claude.close()
    events = await _log_until(server.db_path, lambda ev: _answered(ev, "ghost") >= 2)
    assert len(_of(events, "RequestReceived", "ghost")) == 2, "an SDK retried"
    (failed,) = _of(events, "ProcessStartFailed", "ghost")
    assert failed.kind == "command" and MISSING in failed.error
    async with aiohttp.ClientSession() as http, http.get(server.url + "/logs") as r:
        log_text = await r.text()
    assert "start failed model=ghost" in log_text and "not found" in log_text


async def test_the_models_own_words_and_exit_status_reach_the_client(
    server_factory, tmp_path: Path
) -> None:
    server = server_factory(_config(_model("nofile", _no_model_file(tmp_path)), backoff_s=2))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("nofile")) as first:
            assert first.status == 500
            assert first.headers["Retry-After"] == "2"
            assert "x-should-retry" not in first.headers  # once may be bad luck: retry later
            body = await first.json()
        async with http.post(server.url + CHAT, json=_chat("nofile")) as second:
            assert second.status == 503  # inside the window: answered at once, nothing spawned
            assert second.headers["Retry-After"] == "2"
            again = await second.json()
        async with http.get(server.url + "/logs") as r:
            log_text = await r.text()
    assert body["error"]["message"] == (
        "unspecific error: upstream command exited prematurely (exit code 1); last output:\n"
        "llama_model_load: loading model from /models/x.gguf\n"
        "error: model file not found: /models/x.gguf"
    )
    assert again["error"]["code"] == "start_backoff"
    assert again["error"]["message"].startswith(
        'model "nofile" failed to start (once) and is not started again for 2 s: '
        "upstream command exited prematurely (exit code 1); last output:\n"
    )
    assert "start failed model=nofile" in log_text and "exit='exit code 1'" in log_text
    assert "model file not found" in log_text

    # The SDK honours Retry-After: it waits out the window, the model fails the same way again,
    # which makes the failure permanent, and the SDK stops there (2 attempts, not 3).
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused")
    try:
        await client.chat.completions.create(**_chat("nofile"))  # type: ignore[call-overload]
        raise AssertionError("a model that cannot start answered")
    except openai.InternalServerError as err:
        assert err.status_code == 500 and err.response.headers["x-should-retry"] == "false"
        assert "model file not found" in err.body["message"]  # type: ignore[index]
    # From now on each SDK call is a single attempt, answered at once from the window.
    try:
        await client.chat.completions.create(**_chat("nofile"))  # type: ignore[call-overload]
        raise AssertionError("a model that cannot start answered")
    except openai.InternalServerError as err:
        assert err.status_code == 503 and err.response.headers["x-should-retry"] == "false"
    finally:
        await client.close()
    events = await _log_until(server.db_path, lambda ev: _answered(ev, "nofile") >= 5)
    assert len(_of(events, "RequestReceived", "nofile")) == 5  # 2 by hand, 2 + 1 by the SDK
    assert len(_of(events, "StartProcess", "nofile")) == 2
    failures = _of(events, "ProcessStartFailed", "nofile")
    assert [(f.kind, f.exit_code) for f in failures] == [("exited", 1), ("exited", 1)]
    assert failures[0].output_tail.endswith("error: model file not found: /models/x.gguf")


async def test_a_burst_inside_the_window_spawns_once(server_factory, tmp_path: Path) -> None:
    server = server_factory(_config(_model("nofile", _no_model_file(tmp_path)), backoff_s=30))
    async with aiohttp.ClientSession() as http:

        async def ask() -> tuple[int, str]:
            async with http.post(server.url + CHAT, json=_chat("nofile")) as response:
                return response.status, (await response.json())["error"]["message"]

        answers = await asyncio.gather(*(ask() for _ in range(10)))  # the concurrency limit
        answers += [await ask() for _ in range(20)]
    assert {status for status, _ in answers} <= {500, 503}
    assert all("model file not found" in message for _, message in answers)
    events = await _log_until(server.db_path, lambda ev: _answered(ev, "nofile") >= 30)
    assert len(_of(events, "StartProcess", "nofile")) == 1
