"""The service's packing step (`runtime/retention.py: pack_events`): it packs only what every
projection has applied, never before one has recorded a position, and not at all when off."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamaswap_es.events.types import Envelope, RequestReceived
from llamaswap_es.runtime.retention import pack_events
from tests.fixtures.event_store import open_booted_store


def _packed_seqs(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT first_seq, last_seq FROM event_packs ORDER BY 1").fetchall()


def _checkpoint(path: Path, name: str, seq: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO projection_checkpoints (name, seq) VALUES (?, ?)", (name, seq)
        )


async def test_packing_waits_for_the_slowest_projection(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await open_booted_store(path)
    try:
        await store.append_batch(
            [
                Envelope(body=RequestReceived(request_id=f"r{i:04d}", model="m"), ts_ms=1000 + i)
                for i in range(400)
            ]
        )  # seqs 2..401
        assert await pack_events(store, block_rows=64) == 0  # no projection position yet
        _checkpoint(path, "activity", 401)
        _checkpoint(path, "history", 140)
        assert await pack_events(store, block_rows=0) == 0  # eventPackRows: 0
        assert await pack_events(store, block_rows=64) == 128
        assert _packed_seqs(path) == [(2, 65), (66, 129)]  # the history hold stops it at 140
        _checkpoint(path, "history", 401)
        assert await pack_events(store, block_rows=64) == 192  # the newest 64 stay rows
        assert _packed_seqs(path)[-1] == (258, 321)
    finally:
        await store.close()
