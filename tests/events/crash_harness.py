"""Kill -9 harness for the event log, shared by the test suite and `bench/run.py crashloop`.

The child (`python -m tests.events.crash_harness DB SEED SYNC [pack]`) opens the real
`EventStore`, runs several producers appending random batches, and prints `ACK first last` for
every committed batch; with `pack` it also packs request events in small blocks all the while
(`EventStore.pack_through`), so kills land inside packing too. The parent reads those lines and
SIGKILLs the child after a random number of them (the kill lands while other batches are being
written), then checks the database: integrity, seqs contiguous, every acknowledged seq present,
every payload's checksum right (reading rows and packs alike, through `DatabaseReader`).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.event_store import open_booted_store

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _child(db: str, seed: int, synchronous: str, pack: bool = False) -> None:
    from llamaswap_es.events.types import Envelope, RequestFinished

    rng = random.Random(seed)
    store = await open_booted_store(db, synchronous=synchronous)
    print("READY", store.boot_id, flush=True)

    async def producer(n: int) -> None:
        i = 0
        while True:
            batch = []
            for _ in range(rng.randint(1, 50)):
                text = "".join(rng.choices("abcdefghij", k=rng.randint(1, 300)))
                body = RequestFinished(
                    request_id=f"{seed}-{n}-{i}",
                    model="m",
                    status=200,
                    error=text,
                    metrics={"crc": zlib.crc32(text.encode())},
                )
                batch.append(Envelope(body=body, ts_ms=i))
                i += 1
            seqs = await store.append_batch(batch)
            sys.stdout.write(f"ACK {seqs[0]} {seqs[-1]}\n")
            sys.stdout.flush()

    async def packer() -> None:
        while True:
            await store.pack_through(await store.last_seq(), block_rows=64, keep_plain=64)
            await asyncio.sleep(0)

    tasks = [producer(n) for n in range(8)]
    await asyncio.gather(*tasks, *([packer()] if pack else []))


@dataclass
class RoundResult:
    acked: list[tuple[int, int]] = field(default_factory=list)
    boot: str = ""


def run_round(db: Path, seed: int, synchronous: str = "normal", pack: bool = False) -> RoundResult:
    """Start a child, kill it after a random number of acks; returns what it acknowledged."""
    rng = random.Random(seed)
    kill_after = rng.randint(1, 40)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.events.crash_harness", str(db), str(seed), synchronous]
        + (["pack"] if pack else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    result = RoundResult()
    assert child.stdout is not None
    try:
        ready = child.stdout.readline()
        if not ready.startswith("READY"):
            raise AssertionError(f"child failed to start: {ready!r} {child.stderr.read()}")
        result.boot = ready.split()[1]
        while len(result.acked) < kill_after:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child died early: {child.stderr.read()}")
            result.acked.append(_parse_ack(line))
        child.send_signal(signal.SIGKILL)
        # Lines already written before the kill were acknowledged too: collect them all.
        for line in child.stdout:
            if line.endswith("\n") and line.startswith("ACK"):
                result.acked.append(_parse_ack(line))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    return result


def _parse_ack(line: str) -> tuple[int, int]:
    _, first, last = line.split()
    return int(first), int(last)


def check_log(db: Path, acked: list[tuple[int, int]], boots: list[str]) -> int:
    """Assert what must hold after any crash; returns the number of rows in the log."""
    from llamaswap_es.events.reader import DatabaseReader

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        with DatabaseReader(db) as reader:
            rows = list(reader.iter_rows())
        seqs = [r[0] for r in rows]
        assert seqs == list(range(1, len(seqs) + 1)), "seqs are not contiguous from 1"
        top = seqs[-1] if seqs else 0
        for first, last in acked:
            assert last <= top, f"acknowledged seqs {first}..{last} are missing (log ends {top})"
        started = {r[3] for r in rows if r[2] == "ServerStarted"}
        assert set(boots) <= started, "a ServerStarted is missing"
        for row in rows:
            if row[2] != "RequestFinished":
                continue
            import json

            body = json.loads(row[7])
            assert zlib.crc32(body["error"].encode()) == body["metrics"]["crc"], body
        return len(seqs)
    finally:
        conn.close()


def crash_loop(
    db: Path, rounds: int, seed: int, synchronous: str = "normal", pack: bool = False
) -> dict[str, int]:
    """`rounds` kill -9 rounds on one database, checked after each; returns totals."""
    acked: list[tuple[int, int]] = []
    boots: list[str] = []
    rows = 0
    for n in range(rounds):
        result = run_round(db, seed * 1000 + n, synchronous, pack)
        acked += result.acked
        boots.append(result.boot)
        rows = check_log(db, acked, boots)
    acked_events = sum(last - first + 1 for first, last in acked)
    return {"rounds": rounds, "rows": rows, "acked_events": acked_events}


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:] == ["pack"]))
