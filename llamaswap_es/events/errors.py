"""What can go wrong with the event log, each error naming the file and what to do about it.

The three base classes live in `llamaswap_es.errors` (the project's one hierarchy); this module
adds the specific cases the store can tell apart, so the command line and the HTTP layer can show
a precise message and tests can assert which case happened. Every one of them is raised *before*
anything is acknowledged: nothing a caller was told is committed is ever lost by these paths.
"""

from __future__ import annotations

from pathlib import Path

from llamaswap_es.errors import StoreError, StoreLockedError, StoreOverloadedError

__all__ = [
    "BundleError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreOverloadedError",
    "StoreReadOnlyError",
    "StoreVersionError",
]


class StoreCorruptError(StoreError):
    """The file is not an SQLite database, or SQLite's quick_check found damage."""

    def __init__(self, path: Path, detail: str):
        self.path = path
        super().__init__(
            f"{path}: the event log is damaged or is not an SQLite database ({detail}); "
            "nothing was changed. Move the file aside (keep it for a bug report) to start a new "
            "log, or restore it from a backup or an exported bundle."
        )


class StoreReadOnlyError(StoreError):
    """The database file or its directory cannot be written."""

    def __init__(self, path: Path, detail: str):
        self.path = path
        super().__init__(
            f"{path}: the event log cannot be written ({detail}). The server needs write access "
            "to the file and its directory (SQLite keeps -wal and -shm files and a .lock file "
            "beside it); fix the permissions or the mount, or choose another path."
        )


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full; the batch was rolled back."""

    def __init__(self, path: Path, detail: str):
        self.path = path
        super().__init__(
            f"{path}: the disk holding the event log is full ({detail}); the batch was not "
            "written and nothing committed was lost. Free some space; the next append retries."
        )


class StoreVersionError(StoreError):
    """The database was written by a newer llamaswap-es whose schema this code does not know."""

    def __init__(self, path: Path, db_version: int, code_version: int):
        self.path = path
        self.db_version = db_version
        self.code_version = code_version
        super().__init__(
            f"{path}: the event log has schema version {db_version}, but this llamaswap-es only "
            f"knows up to version {code_version}. Upgrade llamaswap-es (or use another "
            "database); the file was not changed."
        )


class BundleError(StoreError):
    """A `.cbor.zst` bundle could not be written, read or imported."""


def translate_sqlite_error(exc: BaseException, path: Path) -> StoreError:
    """Turn an `sqlite3.Error` (or an `OSError`) into the specific store error, naming `path`.

    SQLite reports the cause as a primary result code (Python 3.11 exposes it as
    `sqlite_errorcode`); extended codes keep the primary code in their low byte.
    """
    if isinstance(exc, StoreError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = str(exc) or type(exc).__name__
    if primary == _SQLITE_FULL:
        return StoreFullError(path, detail)
    if primary == _SQLITE_READONLY or isinstance(exc, PermissionError):
        return StoreReadOnlyError(path, detail)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorruptError(path, detail)
    if isinstance(exc, OSError) and exc.errno == _ENOSPC:
        return StoreFullError(path, detail)
    if isinstance(exc, OSError) and exc.errno == _EROFS:
        return StoreReadOnlyError(path, detail)
    return StoreError(f"{path}: the event log failed: {detail}")


_SQLITE_READONLY = 8
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
_ENOSPC = 28
_EROFS = 30
