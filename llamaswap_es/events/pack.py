"""Packed request events: a block of rows encoded column by column and compressed, and back.

Why: a request writes three rows of near-identical text (its 26-character key three times, the
boot id, the type name, payloads that differ in a few numbers); one row at a time they do not
compress (docs/benchmarks.md "Log size"), many together do. Rows that every reader has passed
are moved, a block at a time, into one `event_packs` row (migration 0007); `events/reader.py`
merges packs and plain rows back into one log in seq order, so a packed row reads back as the
identical `Row`. This module only encodes and decodes; the writer decides what to pack.

The format (`CODEC`), both blobs zstd-compressed:

* `keys`: the pack's distinct keys, sorted, joined by "\\n" (a read by key checks this small
  list before it opens `data`);
* `data`: a JSON header line, then the payloads back to back (UTF-8). The header holds, per row,
  the seq delta, the ts delta, an index into the type, key and boot tables, `v`, the cause as
  `seq - cause` (or null), and the payload's byte length.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from llamaswap_es.events.rows import Row

CODEC = "zstd-cols-1"
ZSTD_LEVEL = 5
"""zstd level for new packs: 5 takes ~10 ms for a 4,096-row block here, on the writer thread off
the request path; higher levels gained under 3% on a request log."""

_NO_KEY = -1


class PackError(ValueError):
    """A pack that cannot be decoded (an unknown codec, damaged bytes)."""


@dataclass(frozen=True, slots=True)
class EncodedPack:
    """One `event_packs` row, ready to insert (column order of `INSERT_SQL`)."""

    first_seq: int
    last_seq: int
    first_ts_ms: int
    last_ts_ms: int
    count: int
    types: str
    min_key: str | None
    max_key: str | None
    codec: str
    keys: bytes
    data: bytes

    def as_params(self) -> tuple[object, ...]:
        return (
            self.first_seq, self.last_seq, self.first_ts_ms, self.last_ts_ms, self.count,
            self.types, self.min_key, self.max_key, self.codec, self.keys, self.data,
        )  # fmt: skip


INSERT_SQL = (
    "INSERT INTO event_packs (first_seq, last_seq, first_ts_ms, last_ts_ms, count, types, "
    "min_key, max_key, codec, keys, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def packed_through(conn: sqlite3.Connection) -> int:
    """The highest seq held in a pack (0 when none): above it, every packable row is plain."""
    row = conn.execute(
        "SELECT last_seq FROM event_packs ORDER BY first_seq DESC LIMIT 1"
    ).fetchone()
    return int(row[0]) if row else 0


def encode_pack(rows: Sequence[Row], *, level: int = ZSTD_LEVEL) -> EncodedPack:
    """Encode rows (in seq order, at least one) as one pack."""
    if not rows:
        raise ValueError("a pack holds at least one row")
    keys = sorted({row[3] for row in rows if row[3] is not None})
    key_index = {key: i for i, key in enumerate(keys)}
    types: list[str] = []
    type_index: dict[str, int] = {}
    boots: list[str] = []
    boot_index: dict[str, int] = {}
    seq_d: list[int] = []
    ts_d: list[int] = []
    type_col: list[int] = []
    key_col: list[int] = []
    boot_col: list[int] = []
    v_col: list[int] = []
    cause_col: list[int | None] = []
    len_col: list[int] = []
    payloads: list[bytes] = []
    prev_seq = rows[0][0]
    prev_ts = rows[0][1]
    for seq, ts_ms, type_name, key, boot, v, cause, payload in rows:
        seq_d.append(seq - prev_seq)
        ts_d.append(ts_ms - prev_ts)
        prev_seq, prev_ts = seq, ts_ms
        if type_name not in type_index:
            type_index[type_name] = len(types)
            types.append(type_name)
        type_col.append(type_index[type_name])
        key_col.append(_NO_KEY if key is None else key_index[key])
        if boot not in boot_index:
            boot_index[boot] = len(boots)
            boots.append(boot)
        boot_col.append(boot_index[boot])
        v_col.append(v)
        cause_col.append(None if cause is None else seq - cause)
        body = payload.encode("utf-8")
        len_col.append(len(body))
        payloads.append(body)
    header = {
        "seq0": rows[0][0], "ts0": rows[0][1], "types": types, "boots": boots,
        "seq": seq_d, "ts": ts_d, "type": type_col, "key": key_col, "boot": boot_col,
        "v": v_col, "cause": cause_col, "len": len_col,
    }  # fmt: skip
    head = json.dumps(header, separators=(",", ":")).encode("ascii")
    compressor = _zstd().ZstdCompressor(level=level)
    data = compressor.compress(head + b"\n" + b"".join(payloads))
    keys_blob = compressor.compress("\n".join(keys).encode("utf-8"))
    return EncodedPack(
        first_seq=rows[0][0],
        last_seq=rows[-1][0],
        first_ts_ms=min(row[1] for row in rows),
        last_ts_ms=max(row[1] for row in rows),
        count=len(rows),
        types=",".join(sorted(types)),
        min_key=keys[0] if keys else None,
        max_key=keys[-1] if keys else None,
        codec=CODEC,
        keys=keys_blob,
        data=data,
    )


def decode_keys(codec: str, keys_blob: bytes) -> list[str]:
    """The pack's sorted distinct keys."""
    _check_codec(codec)
    zstd = _zstd()
    try:
        text = zstd.ZstdDecompressor().decompress(keys_blob).decode("utf-8")
    except (zstd.ZstdError, UnicodeDecodeError) as exc:
        raise PackError(f"its key list cannot be decompressed: {exc}") from exc
    return text.split("\n") if text else []


def decode_pack(codec: str, keys_blob: bytes, data: bytes) -> list[Row]:
    """The pack's rows, identical to the rows that were packed, in seq order."""
    keys = decode_keys(codec, keys_blob)
    zstd = _zstd()
    try:
        raw = zstd.ZstdDecompressor().decompress(data)
        newline = raw.index(b"\n")
        header = json.loads(raw[:newline])
        body = memoryview(raw)[newline + 1 :]
        types, boots = header["types"], header["boots"]
        seq, ts = header["seq0"], header["ts0"]
        out: list[Row] = []
        offset = 0
        for sd, td, ti, ki, bi, v, cd, length in zip(
            header["seq"], header["ts"], header["type"], header["key"], header["boot"],
            header["v"], header["cause"], header["len"], strict=True,
        ):  # fmt: skip
            seq += sd
            ts += td
            payload = str(body[offset : offset + length], "utf-8")
            offset += length
            key = None if ki == _NO_KEY else keys[ki]
            out.append((seq, ts, types[ti], key, boots[bi], v, None if cd is None else seq - cd,
                        payload))  # fmt: skip
    except (zstd.ZstdError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PackError(f"its rows cannot be decoded: {exc}") from exc
    if offset != len(body):
        raise PackError(f"its payloads hold {len(body) - offset} bytes more than its rows")
    return out


def _zstd() -> ModuleType:
    """zstandard, imported at the first pack packed or read, not at start (~1 MiB resident
    that a server without packs yet, and every tool, need not pay; captures do the same)."""
    import zstandard

    return zstandard


def _check_codec(codec: str) -> None:
    if codec != CODEC:
        raise PackError(f"unknown pack codec {codec!r} (this version reads {CODEC!r})")
