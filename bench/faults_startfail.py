"""Fault: models that cannot start, under a steady stream of requests (issue 13, item 4).

`run()` starts a real server with two models that can never start, side by side (each in its own
non-exclusive group, so neither evicts the other):

* `missing`: its `cmd` is a binary that does not exist (the spawn itself fails);
* `nofile`: a script that prints "model file not found" and exits 1 (a real process each time).

For `DURATION_S` (10 s) it sends each model one request every `INTERVAL_S` (25 ms, 40 req/s per
model, each request its own task, answers not awaited before the next is sent), then counts in
the event log the `StartProcess` decisions (start attempts) and `ProcessSpawned` events (OS
processes) whose time falls inside the window. `spawns_in_10s` is the larger count of start
attempts of the two models; the target is <= 3 (issue 13). With the default settings
(`startBackoffSeconds: 2`, doubling) the attempts come at about 0, 2 and 6 s.

`baseline=True` runs the same stream once more with `startBackoffSeconds: 0` (llama-swap's
behaviour, as before this change) for comparison. Every answer is checked: a 5xx whose message
names the cause; the figures count the statuses and the answer latency.

`python -m bench.faults_startfail [--no-baseline]` prints the final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bench_proxy import HEADERS, machine, start_server
from llamaswap_es.events.open_log import open_log
from tests.fixtures.net import free_port

DURATION_S = 10.0
INTERVAL_S = 0.025
TARGET_SPAWNS = 3
MODELS = ("missing", "nofile")
CAUSES = {"missing": "not found", "nofile": "model file not found"}
"""What each model's answers must name."""


def _config(workdir: Path, backoff_s: int | None) -> str:
    script = workdir / "model-server"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('error: model file not found: /models/x.gguf', file=sys.stderr)\nsys.exit(1)\n"
    )
    script.chmod(0o755)
    commands = {"missing": str(workdir / "no-such-llama-server"), "nofile": str(script)}
    lines = []
    if backoff_s is not None:
        lines += ["llamaswap-es:", f"  startBackoffSeconds: {backoff_s}"]
    lines.append("groups:")
    for model in MODELS:
        lines += [
            f"  g-{model}:",
            "    swap: false",
            "    exclusive: false",
            f"    members: [{model}]",
        ]
    lines.append("models:")
    for model in MODELS:
        port = free_port()
        lines += [
            f"  {model}:",
            f"    cmd: {commands[model]} --port {port}",
            f"    proxy: http://127.0.0.1:{port}",
            "    concurrencyLimit: 1000",
        ]
    return "\n".join(lines) + "\n"


async def _stream(url: str, model: str, duration_s: float) -> list[tuple[int, float]]:
    """Send one request every INTERVAL_S for `duration_s`; (status, seconds to answer) each."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    answers: list[tuple[int, float]] = []

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        async with session.post(url + "/v1/chat/completions", data=body, headers=HEADERS) as r:
            text = await r.text()
        if r.status < 500 or CAUSES[model] not in text:
            raise RuntimeError(f"{model}: unexpected answer {r.status}: {text[:300]}")
        answers.append((r.status, time.perf_counter() - started))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        n = 0
        while (due := start + n * INTERVAL_S) < start + duration_s:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.ensure_future(one(session)))
            n += 1
        await asyncio.gather(*tasks)
    return answers


def _count(db_path: Path, kind: str, model: str, since_ms: int, until_ms: int) -> int:
    with open_log(db_path) as reader:
        return sum(
            1
            for e in reader.iter_envelopes()
            if e.type == kind and e.body.model == model and since_ms <= e.ts_ms < until_ms  # type: ignore[union-attr]
        )


def measure(backoff_s: int | None, duration_s: float = DURATION_S) -> dict[str, object]:
    """One server, both models streamed at once for `duration_s`; the counts per model.
    `backoff_s` None keeps the default settings."""
    with tempfile.TemporaryDirectory(prefix="bench-startfail-") as tmp:
        workdir = Path(tmp)
        server = start_server(workdir, _config(workdir, backoff_s))
        try:
            since_ms = int(time.time() * 1000)

            async def both() -> list[list[tuple[int, float]]]:
                return await asyncio.gather(*(_stream(server.url, m, duration_s) for m in MODELS))

            results = asyncio.run(both())
            until_ms = since_ms + int(duration_s * 1000)
        finally:
            server.stop()
        figures: dict[str, object] = {}
        for model, answers in zip(MODELS, results, strict=True):
            statuses: dict[str, int] = {}
            for status, _ in answers:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            latencies = sorted(seconds for _, seconds in answers)
            figures[model] = {
                "requests": len(answers),
                "start_attempts": _count(server.db_path, "StartProcess", model, since_ms, until_ms),
                "processes_spawned": _count(
                    server.db_path, "ProcessSpawned", model, since_ms, until_ms
                ),
                "statuses": statuses,
                "answer_p50_ms": round(statistics.median(latencies) * 1000, 2),
                "answer_max_ms": round(latencies[-1] * 1000, 2),
            }
        return figures


def run(baseline: bool = True) -> dict[str, object]:
    """The fault figures (see the module doc); `spawns_in_10s` is the worse of the two models."""
    with_backoff = measure(None)
    spawns = max(int(with_backoff[m]["start_attempts"]) for m in MODELS)  # type: ignore[index]
    result: dict[str, object] = {
        "spawns_in_10s": spawns,
        "target_max": TARGET_SPAWNS,
        "ok": spawns <= TARGET_SPAWNS,
        "duration_s": DURATION_S,
        "requests_per_s_per_model": round(1 / INTERVAL_S),
        "default_settings": with_backoff,
    }
    if baseline:
        without = measure(0)
        result["spawns_in_10s_without_backoff"] = max(
            int(without[m]["start_attempts"])
            for m in MODELS  # type: ignore[index]
        )
        result["without_backoff"] = without
    result["machine"] = machine()
    return result


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without backoff")
    options = parser.parse_args(args)
    result = run(baseline=not options.no_baseline)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
