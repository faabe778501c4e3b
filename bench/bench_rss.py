"""Resident memory of the server: idle after start, and after a load of requests.

`python bench/run.py rss [--requests N] [--settle-s S]` starts a real server (a subprocess) in
three set-ups — the built-in demo (no `--config`), a small config (one fake model), and that
config with `llamaswap-es: historySink: false` — and reads its VmRSS from /proc/<pid>/status:

* `idle_kib`: `--settle-s` (default 3) after the server says it is listening, nothing asked;
* `after_kib`: after `--requests` (default 2,000) small chat completions at 8 connections
  (the demo: its fast model; the first request loads it), then the same settle time;
* `peak_kib`: VmHWM at the end.

The fake upstreams are children of the server and not counted (the demo's models take free
ports if llama-swap's 5800… are held). Prints progress and a final JSON line.

The package's bytecode is compiled first, as installing a wheel does: a checkout without
`__pycache__` under `PYTHONDONTWRITEBYTECODE=1` compiles every module from source at each start,
and the compiler's leftovers read as ~0.8 MiB more idle RSS than an installed server holds.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bench_proxy import (
    HEADERS,
    chat_body,
    fake_model_yaml,
    machine,
    start_server,
)
from tests.fixtures.net import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


def vm_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


async def load(base: str, model: str, n: int) -> None:
    """`n` small chat completions at 8 connections; every answer must be 200."""
    body = chat_body(stream=False, max_tokens=1, model=model)
    remaining = n
    failures: dict[int, int] = {}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(
                base + "/v1/chat/completions", data=body, headers=HEADERS
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    failures[resp.status] = failures.get(resp.status, 0) + 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(8)))
    if failures:
        raise RuntimeError(f"of {n} requests these failed (HTTP status: count): {failures}")


def measure(name: str, config: str | None, model: str, args: argparse.Namespace) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        server = start_server(Path(tmp), config)
        try:
            time.sleep(args.settle_s)
            idle = vm_kib(server.process.pid, "VmRSS")
            asyncio.run(load(server.url, model, args.requests))
            time.sleep(args.settle_s)
            after = vm_kib(server.process.pid, "VmRSS")
            peak = vm_kib(server.process.pid, "VmHWM")
        finally:
            server.stop()
    figures = {"idle_kib": idle, "after_kib": after, "peak_kib": peak}
    print(f"{name}: {figures}", flush=True)
    return figures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py rss")
    parser.add_argument("--requests", type=int, default=2000, help="requests before `after`")
    parser.add_argument("--settle-s", type=float, default=3.0, help="wait before each reading")
    args = parser.parse_args(argv)
    compileall.compile_dir(REPO_ROOT / "llamaswap_es", quiet=1)
    port = free_port()
    model = fake_model_yaml("bench", port, "--quiet")
    small = f"healthCheckTimeout: 30\nmodels:\n{model}\n"
    no_sink = f"healthCheckTimeout: 30\nllamaswap-es:\n  historySink: false\nmodels:\n{model}\n"
    t0 = time.perf_counter()
    results: dict[str, object] = {
        "demo": measure("demo (no config)", None, "demo-fast", args),
        "small_config": measure("small config", small, "bench", args),
        "small_config_no_history_sink": measure("historySink: false", no_sink, "bench", args),
    }
    results["requests"] = args.requests
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"] = machine()
    idle_mib = results["demo"]["idle_kib"] / 1024  # type: ignore[index]
    results["targets"] = {"demo_idle_rss_mib<=45": idle_mib <= 45}
    print(json.dumps(results))
