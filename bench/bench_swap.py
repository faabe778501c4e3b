"""Swap latency: upstream healthy → first byte to the waiting client, and a whole swap A → B.

`python bench/run.py swap [--swaps N] [--load-delay-ms MS]` starts a real server with two fake
upstream models in the default exclusive group and sends requests alternating A, B, A, … so that
every request swaps. For each request it records (all on the wall clock `time.time()`, which the
server's event timestamps `ts_ms` also use, on this same machine):

* `healthy`: when the upstream first answered 200 on /health, seen by an observer thread here that
  polls that port every `--observe-ms` (default 2 ms) from the moment the request is sent; the
  true moment lies between the previous poll's send and this 200's arrival (reported as `±`);
* `ready`: the `ProcessReady` event's `ts_ms` (the server's own probe saw 200);
* `dispatch`: the `Dispatch` decision's `ts_ms` (the same input's time, as decisions carry it);
* `first_byte`: when the client received the response status line (a 1-token non-streaming chat
  completion, so the whole answer is one write).

Cases: (a) `--load-delay-ms` (default 300) with probe intervals 100 ms (the default) and 20 ms —
figure `healthy → first byte`; (b) load delay 0 with the default probe — figure `request → first
byte`, the whole swap (stop A, start B, probe, forward). Prints progress and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.bench_proxy import HEADERS, chat_body, fake_model_yaml, machine, start_server
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import Dispatch, ProcessReady, ProcessSpawned, ProcessStopped
from tests.fixtures.net import free_port

MODELS = ("swap-a", "swap-b")


class HealthObserver(threading.Thread):
    """Polls `http://127.0.0.1:port/health` with fresh blocking connections until it answers 200.

    A thread with plain sockets, so the poll does not wait on this process's event loop; a refused
    connection (not listening yet) costs the upstream nothing, a 503 (loading) about 0.2 ms.
    """

    def __init__(self, port: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval_s = interval_s
        self.healthy_s: float | None = None
        """Wall time the first 200 arrived."""
        self.previous_send_s: float | None = None
        """Wall time the poll before it was sent (the upstream was not yet healthy then)."""
        self.stopping = threading.Event()

    def run(self) -> None:
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        last_send = time.time()
        while not self.stopping.is_set():
            sent = time.time()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(request)
                    status = sock.recv(64).split(b" ", 2)[1:2]
                if status == [b"200"]:
                    self.healthy_s = time.time()
                    self.previous_send_s = last_send
                    return
            except OSError:
                pass
            last_send = sent
            self.stopping.wait(self.interval_s)


@dataclass
class Swap:
    model: str
    sent_s: float
    first_byte_s: float
    healthy_s: float
    healthy_uncertainty_ms: float


async def one_swap(
    session: aiohttp.ClientSession, url: str, model: str, port: int, observe_s: float
) -> Swap:
    body = chat_body(stream=False, max_tokens=1, model=model)
    observer = HealthObserver(port, observe_s)
    sent = time.time()
    observer.start()
    try:
        async with session.post(url + "/v1/chat/completions", data=body, headers=HEADERS) as resp:
            first_byte = time.time()
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{model}: HTTP {resp.status}")
    finally:
        observer.stopping.set()
        observer.join(timeout=5)
    if observer.healthy_s is None or observer.previous_send_s is None:
        raise RuntimeError(f"{model}: the observer never saw /health answer 200")
    return Swap(
        model,
        sent,
        first_byte,
        observer.healthy_s,
        (observer.healthy_s - observer.previous_send_s) * 1000,
    )


def run_case(
    workdir: Path, *, swaps: int, load_delay_ms: int, probe_ms: int | None, observe_ms: float
) -> dict[str, object]:
    ports = {m: free_port() for m in MODELS}
    flags = (f"--load-delay-ms {load_delay_ms}", "--tokens 1", "--quiet")
    header = "healthCheckTimeout: 30\n"
    if probe_ms is not None:
        header += f"llamaswap-es:\n  probeIntervalMs: {probe_ms}\n"
    models = "\n".join(fake_model_yaml(m, ports[m], *flags) for m in MODELS)
    workdir.mkdir()
    server = start_server(workdir, header + "models:\n" + models + "\n")
    try:

        async def drive() -> list[Swap]:
            async with aiohttp.ClientSession() as session:
                # The first request only starts A (nothing to stop); not a swap.
                await one_swap(session, server.url, MODELS[0], ports[MODELS[0]], observe_ms / 1000)
                done = []
                for i in range(swaps):
                    model = MODELS[(i + 1) % 2]
                    done.append(
                        await one_swap(session, server.url, model, ports[model], observe_ms / 1000)
                    )
                return done

        results = asyncio.run(drive())
    finally:
        server.stop()
    return summarise(results, server.db_path)


def summarise(swaps: list[Swap], db_path: Path) -> dict[str, object]:
    """Join the client's and observer's times with the log's `ProcessReady` and `Dispatch`."""
    ready_ms: list[int] = []  # ts_ms of the ProcessReady each request waited for
    dispatch_ms: list[int] = []
    stopped_ms: list[int] = []  # the old model gone (ProcessStopped), in order
    spawned_ms: list[int] = []  # the new one spawned (ProcessSpawned), in order
    with open_log(db_path) as reader:
        pending_ready: int | None = None
        for env in reader.iter_envelopes():
            body = env.body
            if isinstance(body, ProcessStopped):
                stopped_ms.append(env.ts_ms)
            elif isinstance(body, ProcessSpawned):
                spawned_ms.append(env.ts_ms)
            elif isinstance(body, ProcessReady):
                pending_ready = env.ts_ms
            elif isinstance(body, Dispatch) and pending_ready is not None:
                ready_ms.append(pending_ready)
                dispatch_ms.append(env.ts_ms)
                pending_ready = None
    # Skip the first request (a cold start, not a swap).
    ready_ms, dispatch_ms, spawned_ms = ready_ms[1:], dispatch_ms[1:], spawned_ms[1:]
    stopped_ms = stopped_ms[: len(swaps)]  # the last one is the server's shutdown
    if len(ready_ms) != len(swaps):
        raise RuntimeError(f"expected {len(swaps)} ready→dispatch pairs, found {len(ready_ms)}")
    rows = {
        "healthy_to_first_byte_ms": [(s.first_byte_s - s.healthy_s) * 1000 for s in swaps],
        "healthy_to_ready_event_ms": [
            r - s.healthy_s * 1000 for s, r in zip(swaps, ready_ms, strict=True)
        ],
        "ready_to_dispatch_ms": [d - r for r, d in zip(ready_ms, dispatch_ms, strict=True)],
        "dispatch_to_first_byte_ms": [
            s.first_byte_s * 1000 - d for s, d in zip(swaps, dispatch_ms, strict=True)
        ],
        "request_to_old_stopped_ms": [
            t - s.sent_s * 1000 for s, t in zip(swaps, stopped_ms, strict=True)
        ],
        "old_stopped_to_spawned_ms": [b - a for a, b in zip(stopped_ms, spawned_ms, strict=True)],
        "spawned_to_healthy_ms": [
            s.healthy_s * 1000 - t for s, t in zip(swaps, spawned_ms, strict=True)
        ],
        "request_to_healthy_ms": [(s.healthy_s - s.sent_s) * 1000 for s in swaps],
        "request_to_first_byte_ms": [(s.first_byte_s - s.sent_s) * 1000 for s in swaps],
    }
    out: dict[str, object] = {"swaps": len(swaps)}
    for name, values in rows.items():
        out[name] = {
            "p50": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
    out["healthy_uncertainty_ms_max"] = round(max(s.healthy_uncertainty_ms for s in swaps), 1)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py swap")
    parser.add_argument("--swaps", type=int, default=20, help="swaps per case (alternating A, B)")
    parser.add_argument("--load-delay-ms", type=int, default=300, help="load delay for case (a)")
    parser.add_argument("--observe-ms", type=float, default=2.0, help="observer poll interval")
    args = parser.parse_args(argv)
    cases = {
        "a_probe100": {"load_delay_ms": args.load_delay_ms, "probe_ms": None},
        "a_probe20": {"load_delay_ms": args.load_delay_ms, "probe_ms": 20},
        "b_probe100_delay0": {"load_delay_ms": 0, "probe_ms": None},
        "b_probe20_delay0": {"load_delay_ms": 0, "probe_ms": 20},
    }
    results: dict[str, object] = {"machine": machine()}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        for name, case in cases.items():
            figures = run_case(
                Path(tmp) / name,
                swaps=args.swaps,
                observe_ms=args.observe_ms,
                **case,  # type: ignore[arg-type]
            )
            results[name] = {**case, **figures}
            print(f"{name}: {results[name]}", flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["targets"] = {
        "healthy_to_first_byte_p50_ms<=150": results["a_probe100"][  # type: ignore[index]
            "healthy_to_first_byte_ms"
        ]["p50"]
        <= 150
    }
    print(json.dumps(results))
