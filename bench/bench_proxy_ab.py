"""Two versions of the server side by side: process CPU per request, rounds interleaved.

`python bench/run.py proxy_ab --trees A,B [--rounds N] [--requests N] [--connections N]
[--idle-models N] [--yardstick]` starts
one server from each source tree (a checkout or `git archive REV | tar -x -C DIR`), each in front
of its own fake upstream, then measures them in turns: a round of `--requests` small chats at
`--connections` connections to each (the order flips every round), the server's utime+stime from
/proc before and after (bench_proxy.quiet_cpu_s). On this shared VM the machine's speed drifts
from one minute to the next; measuring both versions in the same minutes is what makes a change
of a few percent visible at all (the figures in the commit messages of issue 17's branch). The
final JSON line has each tree's median and rounds. With `--yardstick`, bench/yardstick_proxy.py
(the proxy bench's minimal aiohttp pass-through) takes its turn in every round too, in front of
the first tree's upstream, and each tree's median is also given as a ratio to its median: issue
17's "at most twice the yardstick" read off the same minutes as the A/B.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

import aiohttp

import bench.bench_proxy as bp
from tests.fixtures.net import free_port

YARDSTICK = "yardstick"
"""The yardstick's name among the trees in the rounds and in the JSON line."""


def _config(port: int, idle_models: int = 0) -> str:
    flags = (f"--tokens {bp.STREAM_TOKENS}", "--token-delay-ms 0", "--quiet")
    return (
        "healthCheckTimeout: 30\nrouting: {scheduler: {use: fifo}}\nmodels:\n"
        + bp.fake_model_yaml(bp.MODEL, port, *flags, extra=bp.EXTRA)
        + "\n"
        + "".join(_idle_model(i) for i in range(idle_models))
    )


def _idle_model(i: int) -> str:
    """A model that is configured and never started: what a config of many models adds to
    every request (issue 17: the published view was rebuilt for every model on every commit)."""
    return f"  idle{i:03d}:\n    cmd: sleep 3600\n    proxy: http://127.0.0.1:9\n"


async def _measure(
    servers: dict[str, bp.BenchServer | bp.Yardstick], args: argparse.Namespace
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {tree: [] for tree in servers}
    trees = list(servers)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for server in servers.values():  # load the model, open the pools
            await bp.small_request(session, server.url)
            await bp.concurrent(session, server.url, args.connections, 500)
        for round_no in range(args.rounds):
            for tree in trees if round_no % 2 == 0 else trees[::-1]:
                pid = servers[tree].process.pid
                before = await bp.quiet_cpu_s(pid)
                latencies, _ = await bp.concurrent(
                    session, servers[tree].url, args.connections, args.requests
                )
                after = await bp.quiet_cpu_s(pid)
                out[tree].append((after - before) * 1000 / len(latencies))
            print(f"round {round_no + 1}: " + ", ".join(
                f"{tree} {values[-1]:.3f} ms/request" for tree, values in out.items()
            ), flush=True)  # fmt: skip
    return out


async def _latency(
    servers: dict[str, bp.BenchServer | bp.Yardstick], n: int
) -> dict[str, dict[str, float]]:
    """c=1, the trees' requests alternating one by one (`n` each): p50 and p99 per tree."""
    if n <= 0:
        return {}
    targets = [bp.Target(tree, server.url, server.process.pid) for tree, server in servers.items()]
    async with aiohttp.ClientSession() as session:
        for target in targets:
            await bp.small_request(session, target.base)
        samples = await bp.alternating(session, targets, n)
    return {tree: bp.percentiles_ms(values) for tree, values in samples.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py proxy_ab")
    parser.add_argument("--trees", required=True, help="two or more source trees, comma-separated")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=1500, help="per round and tree")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--latency-requests", type=int, default=0,
        help="then, at c=1, this many requests per tree alternating one by one (p50/p99)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-models", type=int, default=0,
        help="configure this many more models that are never started (a big config)",
    )  # fmt: skip
    parser.add_argument(
        "--yardstick", action="store_true",
        help="measure the yardstick (bench/yardstick_proxy.py) in the same rounds",
    )  # fmt: skip
    args = parser.parse_args(argv)
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    for tree in trees:
        if not (Path(tree) / "llamaswap_es" / "__main__.py").is_file():
            parser.error(f"--trees: {tree} is not a llamaswap-es source tree (no llamaswap_es/)")
    servers: dict[str, bp.BenchServer | bp.Yardstick] = {}
    original_root = bp.REPO_ROOT
    with tempfile.TemporaryDirectory(prefix="bench-proxy-ab-") as tmp:
        try:
            upstream_ports = []
            for i, tree in enumerate(trees):
                workdir = Path(tmp) / str(i)
                workdir.mkdir()
                bp.REPO_ROOT = Path(tree)  # the server runs that tree's code
                upstream_ports.append(free_port())
                servers[tree] = bp.start_server(
                    workdir, _config(upstream_ports[-1], args.idle_models)
                )
            bp.REPO_ROOT = original_root
            if args.yardstick:  # its upstream is up once the first tree's warm-up loaded it
                upstream = f"http://127.0.0.1:{upstream_ports[0]}"
                servers[YARDSTICK] = bp.start_yardstick(Path(tmp), upstream)
            rounds = asyncio.run(_measure(servers, args))
            latency = asyncio.run(_latency(servers, args.latency_requests))
        finally:
            bp.REPO_ROOT = original_root
            for server in servers.values():
                server.stop()
    medians = {tree: statistics.median(v) for tree, v in rounds.items()}
    result = {
        "connections": args.connections,
        "requests_per_round": args.requests,
        "idle_models": args.idle_models,
        "cpu_ms_per_request": {
            tree: {"median": round(medians[tree], 3), "rounds": [round(x, 3) for x in v]}
            for tree, v in rounds.items()
        },
        **(
            {
                "ratio_to_yardstick": {
                    tree: round(m / medians[YARDSTICK], 2)
                    for tree, m in medians.items()
                    if tree != YARDSTICK
                }
            }
            if YARDSTICK in medians
            else {}
        ),
        **({"c1_latency": latency} if latency else {}),
        "machine": bp.machine(),
    }
    print(json.dumps(result))
