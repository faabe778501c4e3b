"""Added latency and streaming throughput of the proxy over calling the upstream directly.

`python bench/run.py proxy [--requests N] [--concurrent-requests N] [--streams N]` starts a real
server (a subprocess, its own event loop and process) in front of one fake upstream, warms both
paths up, then measures, with an aiohttp load generator in this process:

* small non-streaming chat completions (`max_tokens: 1`), at concurrency 1 and 32, direct to the
  upstream and through the proxy; the added latency is the difference of the percentiles;
* streamed SSE events/s of a 2,000-token streaming chat, direct and through the proxy.

Direct and proxied requests alternate (one by one at concurrency 1, in repeated rounds at 32) so
that drift on this shared VM falls on both alike. Prints progress lines and a final JSON line.
The start-up helpers here are shared with `bench_swap`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.fixtures.net import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30
MODEL = "bench"
STREAM_TOKENS = 2000
EXTRA = ("concurrencyLimit: 64",)
"""Above the 32 concurrent clients: the default limit (10) would answer the rest 429."""


# -- a server subprocess --------------------------------------------------------------------------


@dataclass
class BenchServer:
    """A `llamaswap-es` subprocess whose stderr goes to a file (a pipe nobody drains would block
    it once full, which a long benchmark would reach)."""

    process: subprocess.Popen[bytes]
    port: int
    db_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def fake_model_yaml(model: str, port: int, *flags: str, extra: tuple[str, ...] = ()) -> str:
    """A model entry running the fake upstream on `port` (as tests/fixtures/server.py does)."""
    return "\n".join(
        [
            f"  {model}:",
            f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port {port} "
            f"--model-name {model} {' '.join(flags)}",
            f"    proxy: http://127.0.0.1:{port}",
            f"    env: [PYTHONPATH={REPO_ROOT}]",
            *(f"    {line}" for line in extra),
        ]
    )


def start_server(workdir: Path, config: str, profile: Path | None = None) -> BenchServer:
    """Start a server on a free loopback port and wait for its "listening" line on stderr.

    `profile`: run the server under cProfile, writing the profile there when it stops.
    """
    config_path = workdir / "config.yaml"
    config_path.write_text(config)
    port = free_port()
    db_path = workdir / "events.db"
    stderr_path = workdir / "server.stderr"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "LLAMASWAP_ES_ENV_TAG": f"bench-{os.getpid()}",
        "XDG_DATA_HOME": str(workdir / "xdg"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "llamaswap_es", "--config", str(config_path)]
    command += ["--listen", f"127.0.0.1:{port}", "--db", str(db_path)]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    server = BenchServer(process, port, db_path, stderr_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if f"127.0.0.1:{port}/ui/" in stderr_path.read_text(errors="replace"):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"the server did not start:\n{stderr_path.read_text(errors='replace')}")


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": round(qs[49] * 1000, 3), "p99_ms": round(qs[98] * 1000, 3)}


# -- requests -------------------------------------------------------------------------------------


def chat_body(*, stream: bool, max_tokens: int | None, model: str = MODEL) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say one word."}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


SMALL = chat_body(stream=False, max_tokens=1)
STREAMED = chat_body(stream=True, max_tokens=None)
HEADERS = {"Content-Type": "application/json"}


async def small_request(session: aiohttp.ClientSession, base: str) -> float:
    """Seconds for one small non-streaming chat completion, whole body read."""
    t0 = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", data=SMALL, headers=HEADERS) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{base}: HTTP {resp.status}")
    return time.perf_counter() - t0


async def streamed_request(session: aiohttp.ClientSession, base: str) -> tuple[float, int, int]:
    """(seconds, SSE events, bytes) for one streaming chat, read to the end."""
    events = 0
    size = 0
    t0 = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", data=STREAMED, headers=HEADERS) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{base}: HTTP {resp.status}")
        async for line in resp.content:
            size += len(line)
            if line.startswith(b"data: "):
                events += 1
    return time.perf_counter() - t0, events, size


async def sequential(
    session: aiohttp.ClientSession, direct: str, proxied: str, n: int
) -> dict[str, list[float]]:
    """Concurrency 1: direct and proxied requests alternate one by one."""
    out: dict[str, list[float]] = {"direct": [], "proxy": []}
    for _ in range(n):
        out["direct"].append(await small_request(session, direct))
        out["proxy"].append(await small_request(session, proxied))
    return out


async def concurrent(
    session: aiohttp.ClientSession, base: str, workers: int, n: int
) -> tuple[list[float], float]:
    """`workers` clients each sending requests back to back until `n` are done; (latencies, rps)."""
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            latencies.append(await small_request(session, base))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, len(latencies) / (time.perf_counter() - t0)


# -- the benchmark --------------------------------------------------------------------------------


async def measure(direct: str, proxied: str, args: argparse.Namespace) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up: the first proxied request loads the model; then open the pools on both paths.
        await small_request(session, proxied)
        await sequential(session, direct, proxied, 200)
        await asyncio.gather(*(small_request(session, b) for b in (direct, proxied) * 32))
        results: dict[str, object] = {}

        c1 = await sequential(session, direct, proxied, args.requests)
        results["c1"] = _compare(c1["direct"], c1["proxy"])
        print(f"concurrency 1 ({args.requests} each): {results['c1']}", flush=True)

        c32: dict[str, list[float]] = {"direct": [], "proxy": []}
        rps: dict[str, list[float]] = {"direct": [], "proxy": []}
        rounds = 3
        for _ in range(rounds):
            for label, base in (("direct", direct), ("proxy", proxied)):
                lat, rate = await concurrent(session, base, 32, args.concurrent_requests // rounds)
                c32[label] += lat
                rps[label].append(rate)
        results["c32"] = _compare(c32["direct"], c32["proxy"])
        results["c32"]["direct_req_per_s"] = round(statistics.median(rps["direct"]))
        results["c32"]["proxy_req_per_s"] = round(statistics.median(rps["proxy"]))
        print(f"concurrency 32 ({args.concurrent_requests} each): {results['c32']}", flush=True)

        rates: dict[str, list[float]] = {"direct": [], "proxy": []}
        events_seen = 0
        for _ in range(args.streams):
            for label, base in (("direct", direct), ("proxy", proxied)):
                seconds, events, _ = await streamed_request(session, base)
                rates[label].append(events / seconds)
                events_seen = events
        direct_rate = statistics.median(rates["direct"])
        proxy_rate = statistics.median(rates["proxy"])
        results["stream"] = {
            "events_per_stream": events_seen,
            "direct_events_per_s": round(direct_rate),
            "proxy_events_per_s": round(proxy_rate),
            "ratio": round(proxy_rate / direct_rate, 3),
        }
        print(f"streaming ({args.streams} streams each): {results['stream']}", flush=True)
    return results


def _compare(direct: list[float], proxy: list[float]) -> dict[str, float]:
    d = percentiles_ms(direct)
    p = percentiles_ms(proxy)
    return {
        "direct_p50_ms": d["p50_ms"],
        "direct_p99_ms": d["p99_ms"],
        "proxy_p50_ms": p["p50_ms"],
        "proxy_p99_ms": p["p99_ms"],
        "added_p50_ms": round(p["p50_ms"] - d["p50_ms"], 3),
        "added_p99_ms": round(p["p99_ms"] - d["p99_ms"], 3),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py proxy")
    parser.add_argument("--requests", type=int, default=2000, help="per path, concurrency 1")
    parser.add_argument("--concurrent-requests", type=int, default=3000, help="per path, c=32")
    parser.add_argument("--streams", type=int, default=10, help="streams per path")
    parser.add_argument(
        "--upstream-logs",
        action="store_true",
        help="let the fake upstream log every request (the server reads them); default --quiet",
    )
    parser.add_argument(
        "--capture-buffer", type=int, help="set captureBuffer (MiB; 0 turns captures off)"
    )
    parser.add_argument("--profile-server", type=Path, help="write the server's cProfile here")
    args = parser.parse_args(argv)
    port = free_port()
    flags = [f"--tokens {STREAM_TOKENS}", "--token-delay-ms 0"]
    if not args.upstream_logs:
        flags.append("--quiet")
    config = (
        # fifo: 32 concurrent clients of one model are served together, as the figures in
        # docs/benchmarks.md were measured (serial, the default, serves one request at a time)
        "healthCheckTimeout: 30\nrouting: {scheduler: {use: fifo}}\nmodels:\n"
        + fake_model_yaml(MODEL, port, *flags, extra=EXTRA)
        + "\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        server = start_server(Path(tmp), config, args.profile_server)
        try:
            t0 = time.perf_counter()
            results = asyncio.run(measure(f"http://127.0.0.1:{port}", server.url, args))
            results["seconds"] = round(time.perf_counter() - t0, 1)
        finally:
            server.stop()
    results["machine"] = machine()
    results["targets"] = {
        "c1_added_p50_ms<=2": results["c1"]["added_p50_ms"] <= 2,  # type: ignore[index]
        "c1_added_p99_ms<=10": results["c1"]["added_p99_ms"] <= 10,  # type: ignore[index]
        "stream_ratio>=0.8": results["stream"]["ratio"] >= 0.8,  # type: ignore[index]
    }
    print(json.dumps(results))
