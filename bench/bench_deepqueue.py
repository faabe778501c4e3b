"""A deep queue: many clients at once for one model under the default `serial` scheduler.

`python bench/run.py deepqueue [--clients N] [--rounds N] [--trees A,B]` starts a server (from
this checkout, or from each source tree of `--trees`, as `proxy_ab` does) in front of one fake
upstream, with a concurrency limit above `--clients`, and sends `--clients` small chats at once:
the scheduler serves them one at a time, so all but one wait in its queue and each dispatch moves
every one of them up. It reports the server's CPU per request (utime+stime from /proc once the
process is quiet) and the seconds to drain the queue, the median of `--rounds` (trees in turns).

What it shows is what a queue costs per waiting request and commit: the published view, the
handlers told their new place (the loading stream, `/api/inflight`). Both were quadratic in the
queue's depth (a search of the queue per request, every waiting handler woken per dispatch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

import bench.bench_proxy as bp
from tests.fixtures.net import free_port


def _config(port: int, clients: int) -> str:
    model = bp.fake_model_yaml(
        bp.MODEL, port, "--quiet", extra=(f"concurrencyLimit: {clients + 10}",)
    )
    return f"healthCheckTimeout: 30\nmodels:\n{model}\n"


async def _drain(server: bp.BenchServer, clients: int) -> tuple[float, float]:
    """(server CPU ms per request, seconds) for `clients` requests sent at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await bp.small_request(session, server.url)  # the model loaded, the pool open
        before = await bp.quiet_cpu_s(server.process.pid)
        started = time.perf_counter()
        await asyncio.gather(*(bp.small_request(session, server.url) for _ in range(clients)))
        seconds = time.perf_counter() - started
        after = await bp.quiet_cpu_s(server.process.pid)
    return (after - before) * 1000 / clients, seconds


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py deepqueue")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", default="", help="source trees, comma-separated (default: here)")
    args = parser.parse_args(argv)
    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t] or [str(bp.REPO_ROOT)]
    original_root = bp.REPO_ROOT
    figures: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    try:
        for round_no in range(args.rounds):
            for tree in trees if round_no % 2 == 0 else trees[::-1]:
                bp.REPO_ROOT = Path(tree)
                with tempfile.TemporaryDirectory(prefix="bench-deepqueue-") as tmp:
                    server = bp.start_server(Path(tmp), _config(free_port(), args.clients))
                    try:
                        figures[tree].append(asyncio.run(_drain(server, args.clients)))
                    finally:
                        server.stop()
                cpu, seconds = figures[tree][-1]
                print(f"round {round_no + 1}: {tree} {cpu:.2f} ms CPU per request, "
                      f"drained in {seconds:.2f} s", flush=True)  # fmt: skip
    finally:
        bp.REPO_ROOT = original_root
    result = {
        "clients": args.clients,
        "trees": {
            tree: {
                "cpu_ms_per_request": round(statistics.median(c for c, _ in runs), 3),
                "drain_s": round(statistics.median(s for _, s in runs), 3),
                "rounds": [[round(c, 3), round(s, 3)] for c, s in runs],
            }
            for tree, runs in figures.items()
        },
        "machine": bp.machine(),
    }
    print(json.dumps(result))
