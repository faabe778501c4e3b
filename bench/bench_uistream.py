"""What open UI event streams (`/api/events`) cost the server at a fixed request rate.

`python bench/run.py uistream [--rate N] [--seconds S] [--rounds N] [--clients N]` starts a real
server (a subprocess) in front of one fake upstream and sends small non-streaming chat completions
at a fixed rate (`--rate` per second, default 100). In interleaved rounds it measures the server
process's CPU (user + system, from /proc/<pid>/stat; the fake upstream is a child and is not
counted) over `--seconds` with no event-stream client, then with `--clients` (default 20) clients
that hold `/api/events` open and read every byte. The streams open before a round's clock starts
(their initial burst is not counted) and close after it stops.

Reports the server's median CPU per request in each case (CPU over the window / requests sent,
which stays right when a busy machine makes the schedule slip; the slowest achieved rate is
reported too), the added CPU in % of the no-client case (target: ≤ 10% for 20 clients), and the
bytes each client read per second. Prints progress and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bench_proxy import HEADERS, SMALL, fake_model_yaml, machine, start_server
from tests.fixtures.net import free_port

MODEL = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class EventStreamClients:
    """`count` open `/api/events` connections, each read to the byte as a browser would."""

    def __init__(self, session: aiohttp.ClientSession, url: str, count: int) -> None:
        self._session = session
        self._url = url
        self._count = count
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = 0
        self._all_open = asyncio.Event()
        self.bytes_read = 0

    async def __aenter__(self) -> EventStreamClients:
        if self._count:
            self._tasks = [asyncio.create_task(self._read()) for _ in range(self._count)]
            await asyncio.wait_for(self._all_open.wait(), timeout=30)
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        async with self._session.get(self._url + "/api/events") as resp:
            if resp.status != 200:
                raise RuntimeError(f"/api/events: HTTP {resp.status}")
            await resp.content.readany()  # the initial burst has started: this client is live
            self._opened += 1
            if self._opened == self._count:
                self._all_open.set()
            while chunk := await resp.content.readany():
                self.bytes_read += len(chunk)


async def paced_requests(
    session: aiohttp.ClientSession, base: str, rate: float, seconds: float
) -> None:
    """Send `rate` requests a second for `seconds` on a fixed schedule (late ones do not catch up
    in a burst: a request due in the past is sent at once, then the schedule goes on)."""
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()
    failures: dict[int, int] = {}

    async def one() -> None:
        async with session.post(base + "/v1/chat/completions", data=SMALL, headers=HEADERS) as resp:
            await resp.read()
            if resp.status != 200:
                failures[resp.status] = failures.get(resp.status, 0) + 1

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    if failures:
        raise RuntimeError(f"of {n} requests these failed (HTTP status: count): {failures}")


async def one_round(
    session: aiohttp.ClientSession, base: str, pid: int, clients: int, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(server CPU ms per request, achieved requests/s, bytes a second read per client).

    CPU per request, not CPU share: on a busy machine the schedule can slip (the window grows),
    which lowers the share without the server doing less work per request."""
    requests = int(args.rate * args.seconds)
    async with EventStreamClients(session, base, clients) as streams:
        await asyncio.sleep(0.5)  # the initial bursts are written and read before the clock
        read_before = streams.bytes_read
        cpu0, t0 = process_cpu_s(pid), time.perf_counter()
        await paced_requests(session, base, args.rate, args.seconds)
        cpu1, t1 = process_cpu_s(pid), time.perf_counter()
        per_client = (streams.bytes_read - read_before) / max(clients, 1) / (t1 - t0)
    return (cpu1 - cpu0) * 1000 / requests, requests / (t1 - t0), per_client


async def measure(base: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await paced_requests(session, base, args.rate, 2.0)  # load the model, warm the pools
        cpu_ms: dict[int, list[float]] = {0: [], args.clients: []}
        rates: list[float] = []
        stream_rate: list[float] = []
        for r in range(args.rounds):
            for clients in (0, args.clients) if r % 2 == 0 else (args.clients, 0):
                ms, rate, per_client = await one_round(session, base, pid, clients, args)
                cpu_ms[clients].append(ms)
                rates.append(rate)
                if clients:
                    stream_rate.append(per_client)
                print(
                    f"round {r + 1}: {clients} clients: server CPU {ms:.3f} ms/request "
                    f"at {rate:.0f} requests/s",
                    flush=True,
                )
    idle = statistics.median(cpu_ms[0])
    busy = statistics.median(cpu_ms[args.clients])
    return {
        "rate_per_s": args.rate,
        "achieved_rate_per_s_min": round(min(rates), 1),
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "clients": args.clients,
        "cpu_ms_per_request_no_clients": [round(v, 3) for v in cpu_ms[0]],
        "cpu_ms_per_request_with_clients": [round(v, 3) for v in cpu_ms[args.clients]],
        "median_cpu_ms_no_clients": round(idle, 3),
        "median_cpu_ms_with_clients": round(busy, 3),
        "added_cpu_percent": round((busy - idle) / idle * 100, 1),
        "stream_bytes_per_s_per_client": round(statistics.median(stream_rate)),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py uistream")
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    parser.add_argument("--seconds", type=float, default=6, help="length of one measured window")
    parser.add_argument("--rounds", type=int, default=4, help="rounds (each: 0 and N clients)")
    parser.add_argument("--clients", type=int, default=20, help="event-stream clients")
    parser.add_argument("--profile-server", type=Path, help="write the server's cProfile here")
    args = parser.parse_args(argv)
    port = free_port()
    config = (
        "healthCheckTimeout: 30\nrouting: {scheduler: {use: fifo}}\nmodels:\n"
        + fake_model_yaml(MODEL, port, "--quiet", extra=("concurrencyLimit: 1000",))
        + "\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-uistream-") as tmp:
        server = start_server(Path(tmp), config, args.profile_server)
        try:
            t0 = time.perf_counter()
            results = asyncio.run(measure(server.url, server.process.pid, args))
            results["seconds"] = round(time.perf_counter() - t0, 1)
        finally:
            server.stop()
    results["machine"] = machine()
    results["targets"] = {"added_cpu_percent<=10": results["added_cpu_percent"] <= 10}
    print(json.dumps(results))
