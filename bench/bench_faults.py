"""The fault suite: what a client, a disk or an upstream can do to a running server, and whether the
server survives it and tells the truth (docs/architecture.md, "Failure modes").

`python bench/run.py faults [--kill-rounds N] [--disk-rounds N] [--fuzz-examples N] [--only CASE]`

Cases, each against real servers with fake upstreams:
* `poison`: requests llama-swap users and hostile clients actually sent (bad header bytes, deep
  JSON, huge numbers, NUL in paths, non-ASCII upload names): no answer >= 500 from our own code, the
  loop alive after each (a zombie is `/health` 200 while a model request gets a 5xx).
* `fuzz`: arbitrary bytes in recorded headers, paths and JSON bodies (bench/faults_fuzz.py).
* `disk_full`: the log's disk (a tmpfs) filled up under traffic, then freed: seconds until /health
  turns 503, and seconds from freeing space to serving again (target <= 5 s).
* `hung`: an upstream SIGSTOPped mid-stream (bench/faults_hung.py; target cleared <= 30 s).
* `start_failure`: a model that cannot start, under a steady stream (bench/faults_startfail.py;
  target <= 3 spawns in 10 s).
* `kill9`: kill -9 of the server under mixed load, restarted on the same log, N rounds (>= 100):
  every answered request is in the log, no process is left without its server, and `replay
  verify` finds 0 divergences at the end.
Prints progress and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_proxy import BenchServer, fake_model_yaml, machine, start_server
from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.orphans import find_tagged_processes
from tests.fixtures.net import free_port

CHAT = "/v1/chat/completions"


def _config(*models: str, header: str = "") -> str:
    return "healthCheckTimeout: 20\n" + header + "models:\n" + "\n".join(models) + "\n"


def _two_models() -> str:
    return _config(
        fake_model_yaml("a", free_port(), "--token-delay-ms", "2"),
        fake_model_yaml("b", free_port(), "--token-delay-ms", "2"),
    )


def _chat(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def _health(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def _zombie(http: aiohttp.ClientSession, url: str) -> bool:
    """A zombie says it is healthy while it cannot serve a model request."""
    if await _health(http, url) != 200:
        return False
    async with http.post(url + CHAT, json=_chat("a")) as r:
        return r.status >= 500


# -- poison ---------------------------------------------------------------------------------------


def _raw(port: int, head: bytes, body: bytes = b"") -> int:
    """Send one raw HTTP/1.1 request; the status code (0 when the connection was dropped)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        sock.sendall(body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return 0
            data += chunk
    return int(data.split(b" ", 2)[1])


POISON: list[tuple[str, bytes, bytes]] = [
    (
        "non-UTF-8 X-Session-ID",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nX-Session-ID: \xff\xfe\r\n",
        b'{"model":"a","messages":[]}',
    ),
    (
        "JSON nested 5,000 levels",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n",
        b'{"model":"a","messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ),
    (
        "huge capture id",
        b"GET /api/captures/" + b"9" * 400 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"",
    ),
    (
        "huge since_seq",
        b"GET /api/log/events?since_seq=" + b"9" * 400 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"",
    ),
    ("NUL in a UI path", b"GET /ui/index.html%00.js HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""),
    (
        "non-ASCII upload name",
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=XX\r\n",
        b'--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\na\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="\xc3\xa9t\xc3\xa9.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFF\r\n--XX--\r\n",
    ),
    (
        "model name of 100 KB",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n",
        b'{"model":"' + b"m" * 100_000 + b'","messages":[]}',
    ),
    (
        "lone surrogate in the model name",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n",
        b'{"model":"a\\udcff","messages":[]}',
    ),
]


async def poison_case(workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir, _two_models())
    answers: dict[str, int] = {}
    zombies = 0
    try:
        async with aiohttp.ClientSession() as http:
            for name, head, body in POISON:
                answers[name] = await asyncio.to_thread(_raw, server.port, head, body)
                zombies += await _zombie(http, server.url)
            alive = await _health(http, server.url) == 200
    finally:
        server.stop()
    with open_log(server.db_path) as reader:
        report = verify(reader)
    failures = {name: status for name, status in answers.items() if status >= 500 or status == 0}
    return {"requests": len(answers), "answers": answers, "own_5xx": failures, "zombies": zombies,
            "loop_alive": alive, "verify_divergences": 0 if report.ok else 1}  # fmt: skip


# -- a full disk ----------------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size_mib: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                   check=True)  # fmt: skip


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "ab", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    return None


async def disk_full_case(workdir: Path, rounds: int) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    disk = workdir / "disk"
    _mount_tmpfs(disk, 32)
    results: list[dict[str, Any]] = []
    zombies = 0
    own_5xx = 0
    try:
        server = start_server(disk, _two_models())
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(rounds):
                    async with http.post(server.url + CHAT, json=_chat("a")) as r:
                        assert r.status == 200, r.status
                    filler = _fill(disk)
                    fill_s = time.monotonic()

                    async def refused() -> bool:
                        async with http.post(server.url + CHAT, json=_chat("a")) as r:
                            return r.status == 503 and "Retry-After" in r.headers

                    detected = await _until(refused, 30)
                    unhealthy = await _health(http, server.url) == 503
                    filler.unlink()
                    freed = time.monotonic()

                    async def serving() -> bool:
                        async with http.post(server.url + CHAT, json=_chat("a")) as r:
                            return r.status == 200

                    back = await _until(serving, 60)
                    zombies += await _zombie(http, server.url)
                    results.append({
                        "refused_after_s": detected, "health_503": unhealthy,
                        "serving_again_after_free_s": None if back is None else round(back, 3),
                        "fill_to_free_s": round(freed - fill_s, 3),
                    })  # fmt: skip
                    print(f"disk full round: {results[-1]}", flush=True)
        finally:
            server.stop()
        with open_log(server.db_path) as reader:
            report = verify(reader)
            finished = [e.body for e in reader.iter_envelopes() if e.type == "RequestFinished"]
        own_5xx = sum(1 for f in finished if f.status >= 500 and f.status != 503)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    backs = [r["serving_again_after_free_s"] for r in results]
    return {
        "rounds": rounds,
        "serving_again_after_free_s_max": None if None in backs else max(backs),
        "all_refused_with_503": all(r["refused_after_s"] is not None for r in results),
        "health_503_while_full": all(r["health_503"] for r in results),
        "zombies": zombies,
        "other_5xx_recorded": own_5xx,
        "verify_divergences": 0 if report.ok else 1,
    }


# -- kill -9 under load ---------------------------------------------------------------------------


async def _load(url: str, answered: list[str], stop: asyncio.Event) -> None:
    """Mixed traffic (streams and plain requests to two swapping models) until `stop`."""

    async def client(n: int) -> None:
        async with aiohttp.ClientSession() as http:
            i = 0
            while not stop.is_set():
                i += 1
                model = "ab"[(n + i // 3) % 2]
                try:
                    async with http.post(url + CHAT, json=_chat(model, stream=n % 2 == 1)) as r:
                        await r.read()
                        if r.status == 200:
                            answered.append(r.headers.get("X-Request-ID", ""))
                except (TimeoutError, aiohttp.ClientError):
                    return  # the server was killed

    await asyncio.gather(*(client(n) for n in range(4)))


async def kill9_case(workdir: Path, rounds: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    config = _two_models()
    tag = f"bench-{os.getpid()}"
    answered_total = 0
    dispatched_total = 0
    missing = 0
    orphans_seen = 0
    server: BenchServer | None = None
    for round_no in range(rounds):
        server = start_server(workdir, config)
        answered: list[str] = []
        stop = asyncio.Event()
        load = asyncio.ensure_future(_load(server.url, answered, stop))
        await asyncio.sleep(rng.uniform(0.5, 3.0))  # the fault's moment: random on purpose
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        await load
        # Every answer the clients got was dispatched by a committed decision (write-ahead).
        with open_log(server.db_path) as reader:
            boots = [e for e in reader.iter_envelopes() if e.type == "ServerStarted"]
            this_boot = boots[-1].boot
            dispatched = {
                e.body.request_id
                for e in reader.iter_envelopes()
                if e.type == "Dispatch" and e.boot == this_boot
            }
        ids = [i for i in answered if i]
        missing += (
            sum(1 for i in ids if i not in dispatched)
            if ids
            else max(0, len(answered) - len(dispatched))
        )
        answered_total += len(answered)
        dispatched_total += len(dispatched)
        # The models keep running without their server (adopted at the next start); more than
        # one process per model would be an orphan nobody will adopt or reap.
        alive = [p for p in find_tagged_processes(tag) if p.pid != server.process.pid]
        orphans_seen += max(0, len(alive) - 2)
        if round_no % 10 == 0:
            print(f"kill -9 round {round_no}: answered {len(answered)}, alive {len(alive)}",
                  flush=True)  # fmt: skip
    # A last start settles the last crash; a clean stop must leave nothing behind.
    server = start_server(workdir, config)
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            served_after = r.status == 200
        zombie = await _zombie(http, server.url)
    server.stop()
    leftovers = find_tagged_processes(tag)
    with open_log(server.db_path) as reader:
        report = verify(reader)
    return {
        "rounds": rounds,
        "answered": answered_total,
        "answered_without_a_logged_dispatch": missing,
        "orphans_seen": orphans_seen,
        "leftover_processes_after_stop": len(leftovers),
        "served_after_last_restart": served_after,
        "zombies": int(zombie),
        "verify_divergences": 0 if report.ok else 1,
    }


# -- the cases other modules measure ------------------------------------------------------------


def _module_case(name: str, **kwargs: Any) -> dict[str, Any]:
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        return {"skipped": f"bench/{name}.py is missing ({exc})"}
    result: dict[str, Any] = module.run(**kwargs)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py faults")
    parser.add_argument("--kill-rounds", type=int, default=100)
    parser.add_argument("--disk-rounds", type=int, default=5)
    parser.add_argument("--fuzz-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", choices=("poison", "fuzz", "disk_full", "hung", "start_failure", "kill9")
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine()}

    def wanted(case: str) -> bool:
        return args.only in (None, case)

    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        if wanted("poison"):
            results["poison"] = asyncio.run(poison_case(root / "poison"))
            print(f"poison: {results['poison']}", flush=True)
        if wanted("fuzz"):
            results["fuzz"] = _module_case("faults_fuzz", examples=args.fuzz_examples)
            print(f"fuzz: {results['fuzz']}", flush=True)
        if wanted("disk_full"):
            results["disk_full"] = asyncio.run(disk_full_case(root / "disk", args.disk_rounds))
            print(f"disk full: {results['disk_full']}", flush=True)
        if wanted("hung"):
            results["hung"] = _module_case("faults_hung")
            print(f"hung: {results['hung']}", flush=True)
        if wanted("start_failure"):
            results["start_failure"] = _module_case("faults_startfail")
            print(f"start failure: {results['start_failure']}", flush=True)
        if wanted("kill9"):
            results["kill9"] = asyncio.run(kill9_case(root / "kill9", args.kill_rounds, args.seed))
            print(f"kill -9: {results['kill9']}", flush=True)
    print(json.dumps(results), flush=True)
    return 0
