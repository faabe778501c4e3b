"""Process CPU per request, throughput and added latency of the proxy, against a yardstick.

`python bench/run.py proxy [--requests N] [--concurrent-requests N] [--rounds N] [--streams N]`
starts a real server (a subprocess, its own event loop and process) in front of one fake
upstream, and the yardstick (bench/yardstick_proxy.py: a minimal aiohttp pass-through with no
log, its own subprocess) in front of the same upstream. With an aiohttp load generator in this
process it measures, for the three paths direct / yardstick / proxy:

* added latency at concurrency 1 (small non-streaming chats, `max_tokens: 1`): the three paths'
  requests alternate one by one; "added" is a proxy's percentile minus direct's;
* process CPU per request: `--rounds` rounds of `--cpu-requests` requests at `--cpu-connections`
  connections to each proxy in turn, the server's (or yardstick's) utime+stime from
  /proc/<pid>/stat before and after (once the process has gone quiet, so background writes count
  against the round that caused them), divided by the requests; the median round is reported;
* throughput at concurrency 32, in the same rounds, median req/s;
* streamed SSE events/s of a 2,000-token streaming chat.

Every figure is reported beside the yardstick's from the same run (this VM is shared: only
interleaved ratios mean anything), and the final JSON line says which of issue 17's targets are
met. The start-up helpers here are shared with the other benchmarks.
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
from typing import Any

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
        stop_process(self.process, grace_s=30)


def stop_process(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: a benchmark never leaves a process behind."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_for_line(
    process: subprocess.Popen[bytes], out_path: Path, marker: str, what: str
) -> None:
    """Wait until `marker` appears in the process's output file; on exit or timeout stop it and
    raise with what it printed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if marker in out_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(process, grace_s=10)
    raise RuntimeError(f"{what} did not start:\n{out_path.read_text(errors='replace')}")


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


def start_server(
    workdir: Path, config: str | None, profile: Path | None = None
) -> BenchServer:
    """Start a server on a free loopback port and wait for its "listening" line on stderr.

    `config` None: the built-in demo (no `--config`). `profile`: run the server under cProfile,
    writing the profile there when it stops.
    """
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
    command += ["-m", "llamaswap_es"]
    if config is not None:
        config_path = workdir / "config.yaml"
        config_path.write_text(config)
        command += ["--config", str(config_path)]
    command += ["--listen", f"127.0.0.1:{port}", "--db", str(db_path)]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    wait_for_line(process, stderr_path, f"127.0.0.1:{port}/ui/", "the server")
    return BenchServer(process, port, db_path, stderr_path)


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


# -- the yardstick and process CPU ---------------------------------------------------------------


@dataclass
class Yardstick:
    """bench/yardstick_proxy.py as a subprocess: the minimal pass-through every figure is held
    against."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process, grace_s=10)


def start_yardstick(workdir: Path, upstream: str) -> Yardstick:
    """Start the yardstick in front of `upstream` and wait for its "listening" line."""
    port = free_port()
    out_path = workdir / "yardstick.out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bench.yardstick_proxy", "--port", str(port)]
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--upstream", upstream], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    wait_for_line(process, out_path, "listening on", "the yardstick")
    return Yardstick(process, port)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET_TICKS = 1
"""A process is quiet once it used at most this many clock ticks in `QUIET_INTERVAL_S`."""
QUIET_INTERVAL_S = 0.2
QUIET_DEADLINE_S = 5.0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all its threads (/proc/<pid>/stat
    utime and stime; children such as the fake upstream are not included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


async def quiet_cpu_s(pid: int) -> float:
    """The process's CPU seconds once work left over from a round (background writes) is done:
    it counts against the round that caused it, not the next one."""
    previous = process_cpu_s(pid)
    deadline = time.monotonic() + QUIET_DEADLINE_S
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIET_INTERVAL_S)
        now = process_cpu_s(pid)
        if (now - previous) * CLOCK_TICKS <= QUIET_TICKS:
            return now
        previous = now
    return previous


# -- the benchmark --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A path the load generator measures: its base URL and the process whose CPU counts."""

    label: str
    base: str
    pid: int | None


async def cpu_rounds(
    session: aiohttp.ClientSession, targets: list[Target], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Milliseconds of process CPU per request, one figure per round and target; targets take
    turns within each round (their order flips every round)."""
    out: dict[str, list[float]] = {t.label: [] for t in targets}
    for round_no in range(args.rounds):
        for target in targets if round_no % 2 == 0 else targets[::-1]:
            assert target.pid is not None
            before = await quiet_cpu_s(target.pid)
            latencies, _ = await concurrent(
                session, target.base, args.cpu_connections, args.cpu_requests
            )
            after = await quiet_cpu_s(target.pid)
            out[target.label].append((after - before) * 1000 / len(latencies))
        print(
            f"CPU round {round_no + 1}/{args.rounds}: "
            + ", ".join(f"{k} {v[-1]:.3f} ms/request" for k, v in out.items()),
            flush=True,
        )
    return out


async def alternating(
    session: aiohttp.ClientSession, targets: list[Target], n: int
) -> dict[str, list[float]]:
    """Concurrency 1: the targets' requests alternate one by one."""
    out: dict[str, list[float]] = {t.label: [] for t in targets}
    for _ in range(n):
        for target in targets:
            out[target.label].append(await small_request(session, target.base))
    return out


async def measure(
    direct: str, proxied: str, yardstick: str, pids: dict[str, int], args: argparse.Namespace
) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    d = Target("direct", direct, None)
    y = Target("yardstick", yardstick, pids["yardstick"])
    p = Target("proxy", proxied, pids["proxy"])
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up: the first proxied request loads the model; then open the pools on all paths.
        await small_request(session, proxied)
        await alternating(session, [d, y, p], 200)
        await asyncio.gather(*(small_request(session, t.base) for t in (d, y, p) * 32))
        results: dict[str, object] = {}

        c1 = await alternating(session, [d, y, p], args.requests)
        results["c1"] = _compare3(c1)
        print(f"concurrency 1 ({args.requests} each): {results['c1']}", flush=True)

        cpu = await cpu_rounds(session, [y, p], args)
        proxy_cpu = statistics.median(cpu["proxy"])
        yard_cpu = statistics.median(cpu["yardstick"])
        results["cpu"] = {
            "connections": args.cpu_connections,
            "requests_per_round": args.cpu_requests,
            "proxy_ms_per_request": round(proxy_cpu, 3),
            "yardstick_ms_per_request": round(yard_cpu, 3),
            "ratio": round(proxy_cpu / yard_cpu, 2),
            "proxy_rounds": [round(v, 3) for v in cpu["proxy"]],
            "yardstick_rounds": [round(v, 3) for v in cpu["yardstick"]],
        }
        print(f"CPU per request (median of {args.rounds}): {results['cpu']}", flush=True)

        lat: dict[str, list[float]] = {t.label: [] for t in (d, y, p)}
        rps: dict[str, list[float]] = {t.label: [] for t in (d, y, p)}
        for round_no in range(args.rounds):
            order = [d, y, p] if round_no % 2 == 0 else [d, p, y]
            for target in order:
                latencies, rate = await concurrent(
                    session, target.base, 32, args.concurrent_requests // args.rounds
                )
                lat[target.label] += latencies
                rps[target.label].append(rate)
        c32: dict[str, object] = {}
        for label in lat:
            c32[f"{label}_req_per_s"] = round(statistics.median(rps[label]))
            c32.update({f"{label}_{k}": v for k, v in percentiles_ms(lat[label]).items()})
        c32["ratio"] = round(
            statistics.median(rps["proxy"]) / statistics.median(rps["yardstick"]), 2
        )
        results["c32"] = c32
        print(f"concurrency 32 ({args.concurrent_requests} each): {c32}", flush=True)

        rates: dict[str, list[float]] = {t.label: [] for t in (d, y, p)}
        events_seen = 0
        for _ in range(args.streams):
            for target in (d, y, p):
                seconds, events, _ = await streamed_request(session, target.base)
                rates[target.label].append(events / seconds)
                events_seen = events
        stream: dict[str, object] = {"events_per_stream": events_seen}
        stream.update({f"{k}_events_per_s": round(statistics.median(v)) for k, v in rates.items()})
        stream["ratio"] = round(
            statistics.median(rates["proxy"]) / statistics.median(rates["direct"]), 3
        )
        stream["yardstick_ratio"] = round(
            statistics.median(rates["yardstick"]) / statistics.median(rates["direct"]), 3
        )
        results["stream"] = stream
        print(f"streaming ({args.streams} streams each): {stream}", flush=True)
    return results


def _compare3(samples: dict[str, list[float]]) -> dict[str, float]:
    """Percentiles of each path and the added latency of the two proxies over direct."""
    pct = {label: percentiles_ms(values) for label, values in samples.items()}
    out: dict[str, float] = {}
    for label, figures in pct.items():
        out.update({f"{label}_{k}": v for k, v in figures.items()})
    for label in ("yardstick", "proxy"):
        for q in ("p50", "p99"):
            out[f"{label}_added_{q}_ms"] = round(
                pct[label][f"{q}_ms"] - pct["direct"][f"{q}_ms"], 3
            )
    out["proxy_over_yardstick_p50_ms"] = round(
        out["proxy_added_p50_ms"] - out["yardstick_added_p50_ms"], 3
    )
    return out


def targets_met(results: dict[str, Any]) -> dict[str, bool]:
    """Issue 17's targets, each against the yardstick measured in the same run."""
    c1, cpu, c32, stream = results["c1"], results["cpu"], results["c32"], results["stream"]
    return {
        "cpu_per_request<=2x_yardstick": cpu["ratio"] <= 2,
        "c32_throughput>=0.6x_yardstick": c32["ratio"] >= 0.6,
        "c1_added_p50<=yardstick+0.3ms": c1["proxy_over_yardstick_p50_ms"] <= 0.3,
        "c1_added_p99<=3ms": c1["proxy_added_p99_ms"] <= 3,
        "stream_ratio>=0.8": stream["ratio"] >= 0.8,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py proxy")
    parser.add_argument("--requests", type=int, default=2000, help="per path, concurrency 1")
    parser.add_argument(
        "--concurrent-requests", type=int, default=3000, help="per path, c=32, over all rounds"
    )
    parser.add_argument("--streams", type=int, default=10, help="streams per path")
    parser.add_argument("--rounds", type=int, default=5, help="CPU and c=32 rounds")
    parser.add_argument(
        "--cpu-requests", type=int, default=3000, help="requests per CPU round and proxy"
    )
    parser.add_argument("--cpu-connections", type=int, default=8, help="connections, CPU rounds")
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
        "healthCheckTimeout: 30\nrouting: {scheduler: {use: fifo}}\n"
        + (f"captureBuffer: {args.capture_buffer}\n" if args.capture_buffer is not None else "")
        + "models:\n"
        + fake_model_yaml(MODEL, port, *flags, extra=EXTRA)
        + "\n"
    )
    direct = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        server = start_server(Path(tmp), config, args.profile_server)
        yardstick = start_yardstick(Path(tmp), direct)
        try:
            t0 = time.perf_counter()
            pids = {"proxy": server.process.pid, "yardstick": yardstick.process.pid}
            results = asyncio.run(measure(direct, server.url, yardstick.url, pids, args))
            results["seconds"] = round(time.perf_counter() - t0, 1)
        finally:
            yardstick.stop()
            server.stop()
    results["machine"] = machine()
    results["targets"] = targets_met(results)
    print(json.dumps(results))
