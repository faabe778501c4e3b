"""A real server packs its request events by itself and still tells every request's story.

With `eventPackRows: 64`, a server serving a few hundred requests moves the older request rows
into `event_packs` while it runs; the request story of a packed request, the log's row count and
seqs, `rebuild-projections` and `replay verify` (the factory's check at the end) all read the log
exactly as if nothing had been packed.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from llamaswap_es.events.reader import DatabaseReader
from tests.conftest import REPO_ROOT
from tests.fixtures.processes import wait_until
from tests.fixtures.server import FIFO, RunningServer, config_text, fake_model

CONFIG = config_text(
    [fake_model("m")],
    header=FIFO + "\nllamaswap-es:\n  eventPackRows: 64\n  historySink: false\n",
)
"""Without the history sink the bound is the activity projection's position, which follows the
log closely (the sink's retention hold moves every few seconds, docs/fleet.md)."""
REQUESTS = 120


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def _serve(server: RunningServer) -> list[str]:
    ids = []
    async with aiohttp.ClientSession() as http:
        for i in range(REQUESTS):
            body = {"model": "m", "messages": [{"role": "user", "content": f"hi {i}"}]}
            async with http.post(f"{server.url}/v1/chat/completions", json=body) as response:
                assert response.status == 200, await response.text()
                ids.append(response.headers["X-Request-ID"])
    return ids


async def test_a_server_packs_request_events_and_reads_them_back(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory(CONFIG)
    ids = await _serve(server)
    db = server.db_path
    await wait_until(
        lambda: _count(db, "SELECT count(*) FROM event_packs") >= 2, 20, "two packs in the log"
    )
    url = f"{server.url}/api/requests/{ids[0]}/story"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        story = await response.json()
    types = [e["type"] for e in story["events"] if e.get("key") == ids[0]]
    assert types[0] == "RequestReceived" and "Dispatch" in types
    assert types[-1] == "RequestFinished"
    assert server.stop() == 0, server.output()
    live_activity = _activity(db)  # what the running server's projection wrote
    assert len(live_activity) == REQUESTS

    with DatabaseReader(db) as reader:
        seqs = [row[0] for row in reader.iter_rows()]
        received = {row[3] for row in reader.iter_rows() if row[2] == "RequestReceived"}
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing twice
    assert set(ids) <= received  # every request, read through packs and rows alike
    plain = _count(db, "SELECT count(*) FROM events WHERE type = 'RequestReceived'")
    assert plain < REQUESTS  # some requests' rows really live in packs
    # the story above was read from a pack: the first request has no plain row
    assert _count(db, f"SELECT count(*) FROM events WHERE key = '{ids[0]}'") == 0

    done = subprocess.run(
        [sys.executable, "-m", "llamaswap_es", "rebuild-projections", "--db", str(db)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _activity(db) == live_activity


def _activity(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT id, request_id, model_id, resp_status_code, received_ms, dispatched_ms, "
            "duration_ms, output_tokens FROM activity ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
