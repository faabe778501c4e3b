"""Fault: an upstream SIGSTOPped mid-stream, cleared with the DEFAULT hang-detection settings.

`run()` starts a real server with two fake upstream models in the default swap group (one at a
time) and no `hangDetection` settings (probe every 5 s, 5 s timeout, 3 failures). A streaming
chat to model a is under way, a second (non-streaming) one waits on it; the upstream is then
frozen with SIGSTOP and, at the same moment, a request for model b is sent (it has to wait for
a's group to be free). Measured from the SIGSTOP, on this machine's monotonic clock:

* `hung_cleared_s`: until the streaming client has read the SSE error frame naming the model
  and its stream has ended (target <= 30 s);
* `waiting_client_504_s`: until the waiting client got its 504;
* `group_serving_again_s`: until model b (same group) answered 200;
* `restarted_s`: until a request for model a, sent after b's answer, was served by a fresh
  instance.

Also: whether the frozen process is gone (nothing left behind), the hang as the log records it
and `replay verify` of the log. The frozen process is killed on every way out. `bench/run.py
faults` (the lead's runner) calls `run()`; `python -m bench.faults_hung` prints its JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.bench_proxy import HEADERS, fake_model_yaml, machine, start_server
from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.verify import verify
from tests.fixtures.net import free_port

CHAT = "/v1/chat/completions"
TARGET_S = 30.0
SLOW = ("--tokens", "5000", "--token-delay-ms", "20", "--quiet")
"""Model a's answer takes 100 s: only a hang detection ends it sooner."""


def run() -> dict[str, Any]:
    """One SIGSTOP under the default settings; the figures (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="faults-hung-") as tmp:
        return asyncio.run(_run(Path(tmp)))


async def _run(workdir: Path) -> dict[str, Any]:
    # fifo: the frozen model serves two requests at once (serial, the default, serves one)
    config = "healthCheckTimeout: 30\nrouting:\n  scheduler:\n    use: fifo\nmodels:\n" + "\n".join(
        [
            fake_model_yaml("a", free_port(), *SLOW, extra=("unloadTimeout: 2",)),
            fake_model_yaml("b", free_port(), "--tokens", "2", "--quiet"),
        ]
    )
    server = start_server(workdir, config)
    frozen: psutil.Process | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            pid = await _upstream_pid(http, server.url, "a")
            stream = await http.post(server.url + CHAT, data=_chat("a", True), headers=HEADERS)
            await stream.content.readuntil(b"\n\n")  # streaming has begun
            waiting = asyncio.create_task(_answer(http, server.url, "a"))
            await _until_running(http, server.url, "a", 2)

            frozen = psutil.Process(pid)
            frozen.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            other = asyncio.create_task(_answer(http, server.url, "b"))

            rest = await stream.content.read()
            stream.release()
            hung_cleared_s = time.monotonic() - frozen_at
            waited_status, waited_at = await waiting
            other_status, other_at = await other
            restarted_status, restarted_at = await _answer(http, server.url, "a")
            new_pid = await _upstream_pid(http, server.url, "a")
        gone = _gone(frozen)
    finally:
        if frozen is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                frozen.kill()  # whatever happened above, no stopped process is left behind
        server.stop()
    return {
        "fault": "upstream SIGSTOPped mid-stream",
        "settings": "defaults (hangDetection: probeIntervalMs 5000, probeTimeoutMs 5000, "
        "failuresBeforeHung 3)",
        "hung_cleared_s": round(hung_cleared_s, 3),
        "target_s": TARGET_S,
        "within_target": hung_cleared_s <= TARGET_S,
        "stream_error": _frame_error(rest),
        "waiting_client_status": waited_status,
        "waiting_client_answered_s": round(waited_at - frozen_at, 3),
        "group_serving_again": other_status == 200,
        "group_serving_again_s": round(other_at - frozen_at, 3),
        "restarted": restarted_status == 200 and new_pid != pid,
        "restarted_s": round(restarted_at - frozen_at, 3),
        "frozen_process_gone": gone,
        **_log_facts(server.db_path),
        "machine": machine(),
    }


def _chat(model: str, stream: bool, max_tokens: int | None = None) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    body["stream"] = stream
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


async def _answer(http: aiohttp.ClientSession, url: str, model: str) -> tuple[int, float]:
    """(status, monotonic time the whole answer was read) of one non-streaming chat."""
    async with http.post(url + CHAT, data=_chat(model, False, 2), headers=HEADERS) as response:
        await response.read()
        return response.status, time.monotonic()


async def _upstream_pid(http: aiohttp.ClientSession, url: str, model: str) -> int:
    async with http.get(f"{url}/upstream/{model}/fake/info") as response:
        if response.status != 200:
            raise RuntimeError(f"{model}: /fake/info answered {response.status}")
        return int((await response.json())["pid"])


async def _until_running(http: aiohttp.ClientSession, url: str, model: str, count: int) -> None:
    """Until `count` requests for `model` are being forwarded (`/api/inflight`), 30 s at most."""
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{url}/api/inflight") as response:
                entries = (await response.json())["requests"]
            running = [e for e in entries if e["model"] == model and e["phase"] == "running"]
            if len(running) >= count:
                return
            await asyncio.sleep(0.02)


def _frame_error(body: bytes) -> dict[str, Any] | None:
    """The error object of the stream's last frame if it is an SSE error frame."""
    last = body.rstrip(b"\n").split(b"\n\n")[-1]
    if not last.startswith(b"event: error\ndata: "):
        return None
    return json.loads(last.split(b"data: ", 1)[1])["error"]


def _gone(proc: psutil.Process) -> bool:
    """True once the process has exited (a zombie waiting for its parent counts as gone)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def _log_facts(db_path: Path) -> dict[str, Any]:
    """The hang as the log records it, and `replay verify` of the whole log."""
    with open_log(db_path) as reader:
        events = list(reader.iter_envelopes())
        report = verify(reader)
    hung = [e for e in events if e.type == "ProcessHung"]
    stops = [e for e in events if e.type == "StopProcess" and e.body.reason == "hung"]
    return {
        "log_process_hung": [e.body.error for e in hung],
        "log_hung_stops": len(stops),
        "replay_verify_divergences": 0 if report.ok else 1,
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(run()))
