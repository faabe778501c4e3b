"""One write transaction at a time per database file within this process: a lock, not a poll.

The event log's writer and the projections' writer are two threads with two connections to the
same SQLite file, and SQLite lets one of them write at a time. When both want to, the second
meets SQLite's busy handler, which does not wait for the lock to be released: it sleeps 1 ms,
then 2, 5, 10 … and tries again. Measured on the request bench (issue 17): 2 to 3.5% of the log's
commits waited over a millisecond that way, up to 10 ms, and the log's commit is on every
request's path (a request is dispatched once its batch is written): that was most of the c=1
p99.

So every writer in this process takes the file's gate around `BEGIN IMMEDIATE … COMMIT`, and a
waiting writer is woken the moment the other commits. The gate only orders this process's own
threads: another process writing the file (`llamaswap-es replay`, the sqlite3 shell, a second
server refused by the server lock) still meets SQLite's busy timeout as before.

A gate held longer than `GATE_TIMEOUT_S` (a writer stuck on a stalled disk) fails the waiting
transaction as SQLite's own busy timeout would: "database is locked", a store fault the caller
already degrades on, never a hang.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llamaswap_es.events.errors import StoreError

GATE_TIMEOUT_S = 5.0
"""As long as the connections' `busy_timeout` (5,000 ms): the same patience either way."""

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_by_spelling: dict[str | Path, threading.Lock] = {}


class WriteGate:
    """The write gate of one database file, as one writer holds it (named for its errors)."""

    __slots__ = ("_lock", "_timeout_s", "path")

    def __init__(self, path: str | Path, *, timeout_s: float | None = None) -> None:
        self.path = path
        self._lock = _lock_for(path)
        self._timeout_s = GATE_TIMEOUT_S if timeout_s is None else timeout_s

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate for the block; a StoreError naming the file after the timeout."""
        if not self._lock.acquire(timeout=self._timeout_s):
            raise StoreError(
                f"{self.path}: the event log failed: database is locked (another writer in "
                f"this server held the file for {self._timeout_s:g} s)"
            )
        try:
            yield
        finally:
            self._lock.release()


def _lock_for(path: str | Path) -> threading.Lock:
    """One lock per file for the whole process, whatever spelling of its path a writer uses.

    Resolving the path (`realpath`, a few system calls) happens once per spelling: the
    projections open a gate per transaction."""
    lock = _by_spelling.get(path)
    if lock is not None:
        return lock
    key = os.path.realpath(path)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        _by_spelling[path] = lock
        return lock
