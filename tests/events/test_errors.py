"""Bad files, bad disks and a second server each get a clear error naming the path; nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llamaswap_es.events.errors import (
    StoreCorruptError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
)
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import Envelope, RequestFinished, RequestReceived
from tests.events.conftest import remount_read_only
from tests.fixtures.event_store import open_booted_store

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.db"
    store = await open_booted_store(path)
    await store.close()
    assert path.is_file()


async def test_a_non_sqlite_file_is_refused_and_left_untouched(db_path: Path) -> None:
    original = b"these are my notes, not a database\n" * 200
    db_path.write_bytes(original)
    with pytest.raises(StoreCorruptError, match=str(db_path)) as info:
        await EventStore.open(db_path)
    assert "Move the file aside" in str(info.value)
    assert db_path.read_bytes() == original


async def test_a_damaged_database_is_refused_by_quick_check(db_path: Path) -> None:
    store = await open_booted_store(db_path)
    await store.append_batch(
        [
            Envelope(body=RequestReceived(request_id=f"r{i}", model="m"), ts_ms=i)
            for i in range(3000)
        ]
    )
    await store.close()
    data = bytearray(db_path.read_bytes())
    page = 4096
    for offset in range(5 * page, 9 * page, 2):  # scribble over a run of pages past the header
        data[offset] = 0xA5
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=str(db_path)):
        await EventStore.open(db_path)


async def test_a_second_server_is_refused_naming_the_holder(db_path: Path) -> None:
    first = await open_booted_store(db_path)
    try:
        with pytest.raises(StoreLockedError, match=str(db_path)) as info:
            await EventStore.open(db_path)
        assert f"process {os.getpid()}" in str(info.value)
        assert await first.append_batch(
            [Envelope(body=RequestReceived(request_id="r", model="m"), ts_ms=1)]
        ) == [2]
    finally:
        await first.close()


async def test_a_lock_left_by_a_killed_server_does_not_block(db_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from tests.fixtures.event_store import open_booted_store\n"
        "async def main():\n"
        "    await open_booted_store(sys.argv[1])\n"
        "    print('OPEN', flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "OPEN\n"
        with pytest.raises(StoreLockedError, match=f"process {child.pid}"):
            await EventStore.open(db_path)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    store = await open_booted_store(db_path)
    try:
        assert await store.last_seq() == 2  # the dead server's ServerStarted, then ours
    finally:
        await store.close()


async def test_a_read_only_directory_is_refused(tmp_path: Path, tiny_fs: Path) -> None:
    path = tiny_fs / "events.db"
    store = await open_booted_store(path)
    await store.close()
    remount_read_only(tiny_fs)
    with pytest.raises(StoreReadOnlyError, match=str(path)):
        await EventStore.open(path)
    with open_log(path) as reader:  # still readable by tools
        assert reader.last_seq() == 1


async def test_a_read_only_file_is_refused(db_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files; the read-only mount test covers root")
    store = await open_booted_store(db_path)
    await store.close()
    db_path.chmod(0o444)
    with pytest.raises(StoreReadOnlyError, match=str(db_path)):
        await EventStore.open(db_path)


async def test_a_full_disk_fails_the_batch_and_keeps_what_was_committed(tiny_fs: Path) -> None:
    path = tiny_fs / "events.db"
    store = await open_booted_store(path)
    acked: list[int] = []
    try:
        with pytest.raises(StoreFullError, match=str(path)):
            for i in range(10_000):
                batch = [
                    Envelope(
                        body=RequestFinished(
                            request_id=f"r{i}-{j}", model="m", status=200, error="x" * 500
                        ),
                        ts_ms=i,
                    )
                    for j in range(20)
                ]
                acked += await store.append_batch(batch)
        assert acked, "the disk filled before anything was written; make it bigger"
        # The store stays usable: a failed group does not wedge the writer.
        with pytest.raises(StoreFullError):
            await store.append_batch(
                [Envelope(body=RequestReceived(request_id="z", model="m"), ts_ms=1)] * 200
            )
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()
    assert set(acked) <= set(seqs)
    assert seqs == list(range(1, len(seqs) + 1))


def test_errors_are_raised_from_a_sync_reader_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(Exception, match=str(missing)):
        open_log(missing)
    assert not missing.exists()


def test_store_open_refuses_bad_synchronous_level(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        asyncio.run(EventStore.open(db_path, synchronous="off"))
