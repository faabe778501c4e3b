"""What one commit of the run loop's batch costs the event loop: `EventStore.commit_rows`.

`python bench/run.py commit [--commits N] [--rounds N] [--trees A,B]`: on uvloop, N commits one
after another into a fresh log in a temporary directory, each of a request's three events
(`RequestReceived`, `Dispatch`, `RequestFinished`, under a new request id each time, so the
by-key index grows as on a server), as the run loop makes them at concurrency 1. Reports, per
commit, the event loop thread's own CPU (`time.thread_time` there: the hand-off to the writer
thread and back, the futures and bookkeeping around it), the process's CPU (the writer thread's
SQLite work and wake-ups added) and the wall time, median of the rounds. With `--trees`, each
round runs once per source tree (a checkout or `git archive REV | tar -x -C DIR`) in a
subprocess of its own, the trees in turns, so that two versions are compared in the same
minutes on this drifting VM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def _commits(commits: int) -> dict[str, float]:
    from llamaswap_es.events.rows import encode_envelopes
    from llamaswap_es.events.store import EventStore
    from llamaswap_es.events.types import Dispatch, Envelope, RequestFinished, RequestReceived

    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        store = await EventStore.open(Path(tmp) / "log.db")
        try:
            boot = store.boot_id
            seq = await store.last_seq() + 1
            made = 0

            def request_rows(first: int) -> list[tuple[object, ...]]:
                """A request's three events, encoded (before the timing: the loop encodes in
                its reduce, not in the commit)."""
                nonlocal made
                made += 1
                rid, now = f"01BENCH{made:019d}", time.time_ns() // 1_000_000
                bodies = (
                    RequestReceived(request_id=rid, model="bench-model",
                                    path="/v1/chat/completions", method="POST"),
                    Dispatch(request_id=rid, model="bench-model", instance=1),
                    RequestFinished(request_id=rid, model="bench-model", status=200,
                                    duration_ms=12, bytes_out=420),
                )  # fmt: skip
                envelopes = [
                    Envelope(body=body, ts_ms=now, boot=boot, seq=first + i)
                    for i, body in enumerate(bodies)
                ]
                encoded = encode_envelopes(envelopes, boot)
                return [(first + i, *row) for i, row in enumerate(encoded)]

            batches = iter([request_rows(seq + 3 * i) for i in range(200 + commits)])

            async def commit() -> None:
                await store.commit_rows(next(batches))

            for _ in range(200):  # the file's first pages, the thread's first wake-ups
                await commit()
            loop_cpu, process_cpu, wall = (
                time.thread_time(),
                time.process_time(),
                time.perf_counter(),
            )
            for _ in range(commits):
                await commit()
            return {
                "loop_cpu_us": (time.thread_time() - loop_cpu) / commits * 1e6,
                "process_cpu_us": (time.process_time() - process_cpu) / commits * 1e6,
                "wall_us": (time.perf_counter() - wall) / commits * 1e6,
            }
        finally:
            await store.close()


def _run_in(tree: str, commits: int) -> dict[str, float]:
    """One round in a subprocess that imports `tree`'s code (this file runs there by its path:
    an older tree has no bench_commit of its own)."""
    code = (
        f"import runpy, sys; sys.path.insert(0, {tree!r}); "
        f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, "--one-round", str(commits)],
        env=env, cwd=tree, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def _run_here(commits: int) -> dict[str, float]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_commits(commits))
    return uvloop.run(_commits(commits))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py commit")
    parser.add_argument("--commits", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", help="source trees to compare, comma-separated")
    parser.add_argument("--one-round", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bench.bench_proxy import machine

    if args.one_round is not None:
        print(json.dumps(_run_here(args.one_round)))
        return
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")] if args.trees else [""]
    samples: dict[str, list[dict[str, float]]] = {tree or "this tree": [] for tree in trees}
    for round_no in range(args.rounds):
        for tree in trees if round_no % 2 == 0 else trees[::-1]:
            figures = _run_in(tree, args.commits) if tree else _run_here(args.commits)
            samples[tree or "this tree"].append(figures)
            print(f"round {round_no + 1} {tree or 'this tree'}: {figures}", flush=True)
    result = {
        "commits_per_round": args.commits,
        "rows_per_commit": 3,
        "per_commit_median": {
            tree: {key: round(statistics.median(s[key] for s in runs), 1) for key in runs[0]}
            for tree, runs in samples.items()
        },
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
