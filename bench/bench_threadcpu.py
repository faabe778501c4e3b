"""Where a proxied request's CPU goes, thread by thread: the event loop, the log's writer, the
projections' writer, the rest.

`python bench/run.py threadcpu [--requests N] [--connections N ...]` starts a real server in
front of one fake upstream (bench_proxy's set-up), sends `--requests` small non-streaming chats at
each of the `--connections` levels (default 8, then 1), and reads each thread's user and system
CPU from `/proc/<pid>/task/<tid>/stat` before and after (once the process has gone quiet, as the
proxy bench does). Threads are reported by the name the kernel has for them: the server's worker
threads name themselves (`eventlog-write`, `projections-write`, … in /proc/<pid>/task/*/comm),
the event loop's thread is the process's first. The final JSON line has microseconds per
request per thread, user and system apart: the system share is what thread hand-offs (futex),
SQLite's WAL writes and locks and socket writes cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

import aiohttp

import bench.bench_proxy as bp
from tests.fixtures.net import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[str, tuple[float, float]]:
    """Thread name → (user, system) CPU seconds of the live threads of `pid` (threads of one
    name added up; the process's own thread is `event_loop`)."""
    out: dict[str, tuple[float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = "event_loop" if int(tid) == pid else raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        user, system = out.get(name, (0.0, 0.0))
        out[name] = (user + int(fields[11]) / CLOCK_TICKS, system + int(fields[12]) / CLOCK_TICKS)
    return out


async def _round(server: bp.BenchServer, connections: int, requests: int) -> dict[str, float]:
    pid = server.process.pid
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await bp.concurrent(session, server.url, connections, 200)  # warm: pools, caches
        await bp.quiet_cpu_s(pid)
        before = thread_cpu_s(pid)
        latencies, _ = await bp.concurrent(session, server.url, connections, requests)
        await bp.quiet_cpu_s(pid)
        after = thread_cpu_s(pid)
    out: dict[str, float] = {}
    for name, (user, system) in after.items():
        user0, system0 = before.get(name, (0.0, 0.0))
        for part, value in (("user", user - user0), ("system", system - system0)):
            micros = value * 1e6 / len(latencies)
            if micros >= 0.5:
                out[f"{name}.{part}"] = round(micros, 1)
    out["total"] = round(sum(out.values()), 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py threadcpu")
    parser.add_argument("--requests", type=int, default=4000, help="per connection level")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 1])
    args = parser.parse_args(argv)
    port = free_port()
    config = (
        "healthCheckTimeout: 30\nrouting: {scheduler: {use: fifo}}\nmodels:\n"
        + bp.fake_model_yaml(bp.MODEL, port, "--quiet", extra=bp.EXTRA)
        + "\n"
    )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-threadcpu-") as tmp:
        server = bp.start_server(Path(tmp), config)
        try:
            for connections in args.connections:
                results[f"c{connections}_us_per_request"] = asyncio.run(
                    _round(server, connections, args.requests)
                )
        finally:
            server.stop()
    print(json.dumps({**results, "requests": args.requests, "machine": bp.machine()}))
