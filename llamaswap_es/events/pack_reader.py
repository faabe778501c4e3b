"""Reading the packed part of a log (`event_packs`, events/pack.py) for `DatabaseReader`.

The reader merges what this returns with the plain `events` rows; it runs both statements in one
read transaction, so a block packed meanwhile (rows deleted, pack inserted, one transaction) is
seen either wholly as rows or wholly as a pack. Packs never overlap and are ordered by seq, so
`first_seq` (the primary key) finds the packs of a seq range without a scan, and a read by key
opens only packs whose key range holds the key, and of those only the ones whose (small)
key list has it. The last few packs decoded are kept: the store's follow and a paged scan
read the same pack more than once.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.pack import PackError, decode_keys, decode_pack, packed_through
from llamaswap_es.events.rows import Row

_CACHED_PACKS = 4
_PACK_COLUMNS = "first_seq, last_seq, count, types, min_key, max_key, codec"

PackInfo = tuple[int, int, int, str, str | None, str | None, str]
"""(first_seq, last_seq, count, types, min_key, max_key, codec)"""


class PackedRows:
    """The packs of one read-only connection (callers hold the read transaction)."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self._path = path
        self.present = _has_packs_table(conn)
        self._decoded: OrderedDict[int, list[Row]] = OrderedDict()

    def packed_through(self) -> int:
        """The highest seq held in a pack (0 when none): above it, every row is plain."""
        if not self.present:
            return 0
        return packed_through(self._conn)

    def first_packed(self) -> int:
        """The lowest seq held in a pack (0 when none)."""
        if not self.present:
            return 0
        row = self._conn.execute("SELECT min(first_seq) FROM event_packs").fetchone()
        return int(row[0] or 0)

    def next_pack(self, after: int) -> int | None:
        """The first seq of the first pack that starts above `after` (None when none)."""
        if not self.present:
            return None
        row = self._conn.execute(
            "SELECT min(first_seq) FROM event_packs WHERE first_seq > ?", (after,)
        ).fetchone()
        return int(row[0]) if row[0] is not None else None

    def packs(self, lo: int, hi: int, *, descending: bool = False) -> list[PackInfo]:
        """The packs holding any seq in `lo..hi`, in seq order (or reversed)."""
        if not self.present or hi < lo:
            return []
        order = "DESC" if descending else "ASC"
        found = self._conn.execute(
            f"SELECT {_PACK_COLUMNS} FROM event_packs WHERE first_seq <= ? AND first_seq >= "
            "coalesce((SELECT max(first_seq) FROM event_packs WHERE first_seq <= ?), ?) "
            f"ORDER BY first_seq {order}",
            (hi, lo, lo),
        ).fetchall()
        return [p for p in found if p[1] >= lo]

    def rows(self, info: PackInfo, lo: int, hi: int) -> list[Row]:
        """The rows of one pack within `lo..hi`."""
        rows = self._decode(info)
        if lo <= info[0] and info[1] <= hi:
            return rows
        return [row for row in rows if lo <= row[0] <= hi]

    def rows_in(self, lo: int, hi: int) -> list[Row]:
        """Every packed row in `lo..hi`, in seq order."""
        out: list[Row] = []
        for info in self.packs(lo, hi):
            out.extend(self.rows(info, lo, hi))
        return out

    def matching(
        self,
        lo: int,
        hi: int,
        *,
        types: Collection[str] | None,
        key: str | None,
        limit: int | None,
        newest: bool,
    ) -> list[Row]:
        """Packed rows in `lo..hi` with one of `types` and `key` (each when given), in seq order;
        at most `limit`: the oldest, or with `newest` the newest."""
        wanted = None if types is None else frozenset(types)
        out: list[Row] = []
        for info in self.packs(lo, hi, descending=newest):
            if wanted is not None and wanted.isdisjoint(info[3].split(",")):
                continue
            if key is not None and not self._may_hold(info, key):
                continue
            rows = [
                row
                for row in self.rows(info, lo, hi)
                if (wanted is None or row[2] in wanted) and (key is None or row[3] == key)
            ]
            if newest:
                rows.reverse()
            out.extend(rows)
            if limit is not None and len(out) >= limit:
                del out[limit:]
                break
        if newest:
            out.reverse()
        return out

    def ts_of(self, seq: int) -> int | None:
        """The `ts_ms` of packed row `seq` (None when no pack holds it)."""
        for info in self.packs(seq, seq):
            for row in self.rows(info, seq, seq):
                return row[1]
        return None

    def _may_hold(self, info: PackInfo, key: str) -> bool:
        min_key, max_key = info[4], info[5]
        if min_key is None or max_key is None or not (min_key <= key <= max_key):
            return False
        blob = self._conn.execute(
            "SELECT keys FROM event_packs WHERE first_seq = ?", (info[0],)
        ).fetchone()
        if blob is None:
            return False
        try:
            keys = decode_keys(info[6], bytes(blob[0]))
        except PackError as exc:
            raise self._error(info, exc) from exc
        return _sorted_contains(keys, key)

    def _decode(self, info: PackInfo) -> list[Row]:
        first = info[0]
        cached = self._decoded.get(first)
        if cached is not None and len(cached) == info[2]:
            self._decoded.move_to_end(first)
            return cached
        found = self._conn.execute(
            "SELECT codec, keys, data FROM event_packs WHERE first_seq = ?", (first,)
        ).fetchone()
        if found is None:
            return []
        try:
            rows = decode_pack(found[0], bytes(found[1]), bytes(found[2]))
        except PackError as exc:
            raise self._error(info, exc) from exc
        if len(rows) != info[2]:
            raise self._error(info, PackError(f"it holds {len(rows)} rows, not {info[2]}"))
        self._decoded[first] = rows
        if len(self._decoded) > _CACHED_PACKS:
            self._decoded.popitem(last=False)
        return rows

    def _error(self, info: PackInfo, exc: Exception) -> StoreError:
        return StoreError(
            f"{self._path}: the event pack of seqs {info[0]}..{info[1]} cannot be read: {exc}"
        )


def _sorted_contains(keys: list[str], key: str) -> bool:
    i = bisect.bisect_left(keys, key)
    return i < len(keys) and keys[i] == key


def _has_packs_table(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_packs'"
    ).fetchone()
    return found is not None
