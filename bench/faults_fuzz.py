"""The `fuzz` case of `python bench/run.py faults`: arbitrary bytes against a fresh server.

Hypothesis draws requests with arbitrary bytes in every recorded header, in the path (after each
route that reads its path or query) and in JSON bodies (fields, deep nesting, raw bytes); they
go over raw sockets to a fresh `llamaswap-es` on the demo models (tests/fixtures/input_fuzz.py,
the same strategies as the fast test in tests/e2e/test_input_fuzz.py). After every request the
run loop must still be alive: `/health` 200 and a demo model request answered 200.

`run(examples)` returns `{"examples", "responses_5xx", "loop_alive", ...}`: the targets are 0
answers >= 500 (the demo's upstream answers what it cannot read with a 4xx, so a 5xx is ours),
the loop alive after every example, no traceback from our code in the server's stderr, and the
log replaying with 0 divergences. Standalone: `python -m bench.faults_fuzz [EXAMPLES]`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from bench.bench_proxy import start_server
from llamaswap_es.demo import DEMO_MODELS, demo_config_yaml
from llamaswap_es.events.open_log import open_log
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.orphans import find_tagged_processes
from tests.fixtures.input_fuzz import (
    FuzzCase,
    exchange,
    fuzz_cases,
    loop_alive,
    own_tracebacks,
)
from tests.fixtures.net import free_port_run

SHOWN_FAILURES = 5


class _LoopDead(Exception):
    """The server stopped serving: further examples would measure nothing."""


def run(examples: int = 1000, seed_value: int | None = None) -> dict[str, Any]:
    """Send `examples` fuzzed requests to a fresh server; the figures as a JSON-ready dict."""
    chosen_seed = random.randrange(2**32) if seed_value is None else seed_value
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        config = f"startPort: {free_port_run(len(DEMO_MODELS))}\n" + demo_config_yaml()
        server = start_server(Path(tmp), config)
        try:
            warm = loop_alive(server.port)  # the demo model's first load, outside the timing
            if warm is not None:
                return {"examples": 0, "error": f"the server did not serve: {warm}"}
            figures = _fuzz(server.port, examples, chosen_seed)
        finally:
            server.stop()
        stderr = server.stderr_path.read_text(errors="replace")
        with open_log(server.db_path) as reader:
            report = verify(reader)
    leftovers = find_tagged_processes(f"bench-{os.getpid()}")
    figures.update(
        own_tracebacks=len(own_tracebacks(stderr)),
        replay_divergences=0 if report.ok else 1,
        leftover_processes=len(leftovers),
        seed=chosen_seed,
    )
    return figures


def _fuzz(port: int, examples: int, chosen_seed: int) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    dead_after: int | None = None
    started = time.monotonic()

    @seed(chosen_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_cases())
    def one(case: FuzzCase) -> None:
        answer = exchange(port, case.raw)
        statuses[answer.status] += 1
        failed = answer.status >= 500 or answer.status == 0
        if failed and len(failures) < SHOWN_FAILURES:
            failures.append(f"{answer.status} {answer.body[:200]!r} for {case!r:.400}")
        problem = loop_alive(port)
        if problem is not None:
            failures.append(f"loop dead after {case!r:.400}: {problem}")
            raise _LoopDead(problem)

    try:
        one()
    except _LoopDead:
        dead_after = sum(statuses.values())
    seconds = time.monotonic() - started
    sent = sum(statuses.values())
    return {
        "examples": sent,
        "responses_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "no_answer": statuses.get(0, 0),
        "loop_alive": dead_after is None,
        "dead_after": dead_after,
        "statuses": {str(status): n for status, n in sorted(statuses.items())},
        "seconds": round(seconds, 1),
        "examples_per_s": round(sent / seconds, 1) if seconds else None,
        "failures": failures,
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(json.dumps(run(count)), flush=True)
