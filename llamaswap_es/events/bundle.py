"""Export a seq range of a log to a `.cbor.zst` bundle, read one, import one into a new database.

A bundle is a zstd stream of CBOR items: a header map, one array per row in the `events` column
order `[seq, ts_ms, type, key, boot, v, cause, payload]` (payload is the stored JSON text, so
the round trip is byte-for-byte), then a trailer map with the row count, which tells a complete
bundle from a truncated one. Snapshots are not exported: they are caches, rebuilt by replay.

Header: `format` ("llamaswap-es-eventlog"), `format_version`, `schema_version` (of the source
database), `from_seq`, `to_seq`, `count`, `boots` (the boot ids in the range, in order of first
appearance), `created_ms`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import zstandard

from llamaswap_es.events.errors import BundleError
from llamaswap_es.events.reader import DatabaseReader, RowsAsEnvelopes, Snapshot
from llamaswap_es.events.rows import Row
from llamaswap_es.events.schema import code_schema_version
from llamaswap_es.events.writer import LogWriter

FORMAT = "llamaswap-es-eventlog"
FORMAT_VERSION = 1


def export_bundle(
    db_path: str | Path,
    bundle_path: str | Path,
    *,
    from_seq: int = 1,
    to_seq: int | None = None,
    level: int = 3,
) -> dict[str, Any]:
    """Write seqs `from_seq..to_seq` (default: to the last) of `db_path`; returns the header.

    Safe beside a running server: the range is fixed first, and committed rows never change.
    """
    db_path, bundle_path = Path(db_path), Path(bundle_path)
    with DatabaseReader(db_path) as reader:
        last = reader.last_seq()
        upper = last if to_seq is None else min(to_seq, last)
        count, boots = reader.range_facts(from_seq, upper)
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": reader.schema_version(),
            "from_seq": from_seq,
            "to_seq": upper,
            "count": count,
            "boots": boots,
            "created_ms": int(time.time() * 1000),
        }
        tmp = bundle_path.with_name(bundle_path.name + ".partial")
        try:
            with (
                open(tmp, "wb") as raw,
                zstandard.ZstdCompressor(level=level).stream_writer(raw) as out,
            ):
                encoder = cbor2.CBOREncoder(out)
                encoder.encode(header)
                written = 0
                for row in reader.iter_rows(from_seq, upper):
                    encoder.encode(list(row))
                    written += 1
                encoder.encode({"end": True, "count": written})
            if written != count:
                raise BundleError(f"{db_path}: {count} rows expected in range, {written} read")
            tmp.replace(bundle_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BundleError(f"{bundle_path}: the bundle could not be written: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return header


class BundleReader(RowsAsEnvelopes):
    """A `LogReader` over a bundle file (streamed; nothing is held in memory)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with self._items() as items:
            header = next(items, None)
        if header is None:
            raise BundleError(f"{self.path}: the bundle is empty or truncated before its header")
        self.header: dict[str, Any] = header

    def _items(self) -> _ItemStream:
        return _ItemStream(self.path)

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def iter_rows(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Row]:
        """The rows in seq order; raises `BundleError` at the end if the bundle is truncated."""
        upper = to_seq if to_seq is not None else (1 << 62)
        with self._items() as items:
            next(items, None)
            seen = 0
            for item in items:
                if isinstance(item, dict):
                    if item.get("count") != seen:
                        raise BundleError(f"{self.path}: trailer says {item.get('count')} rows")
                    return
                seen += 1
                seq = item[0]
                if seq > upper:
                    return
                if seq >= from_seq:
                    yield tuple(item)
        raise BundleError(f"{self.path}: the bundle is truncated after {seen} rows")

    def last_seq(self) -> int:
        return int(self.header["to_seq"]) if self.header["count"] else 0

    def latest_snapshot(
        self, reducer_version: str, *, max_seq: int | None = None
    ) -> Snapshot | None:
        return None  # bundles carry no snapshots: replay starts from the bundle's first row


class _ItemStream:
    """Iterates the CBOR items of a bundle; the first one must be a valid header."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        except OSError as exc:
            raise BundleError(f"{path}: the bundle cannot be opened: {exc}") from exc
        self._stream = zstandard.ZstdDecompressor().stream_reader(self._raw)
        self._decoder = cbor2.CBORDecoder(self._stream)
        self._first = True

    def __enter__(self) -> _ItemStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._raw.close()

    def __iter__(self) -> _ItemStream:
        return self

    def __next__(self) -> Any:
        try:
            item = self._decoder.decode()
        except cbor2.CBORDecodeEOF:
            raise StopIteration from None
        except (cbor2.CBORDecodeError, zstandard.ZstdError, EOFError) as exc:
            raise BundleError(f"{self.path}: not a readable event-log bundle ({exc})") from exc
        if self._first:
            self._first = False
            _check_header(self.path, item)
        return item


def _check_header(path: Path, header: Any) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BundleError(f"{path}: not an llamaswap-es event-log bundle (no {FORMAT} header)")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {header.get('format_version')} is newer than this "
            f"llamaswap-es reads ({FORMAT_VERSION}); upgrade llamaswap-es"
        )


def import_bundle(bundle_path: str | Path, db_path: str | Path) -> dict[str, Any]:
    """Load a bundle into a new or empty database, keeping seqs, times, boots and payloads.

    Refuses a database that already holds events (merging logs would break seq order) and a
    bundle from a newer schema. Appends no `ServerStarted`: the next server open does that.
    """
    bundle = BundleReader(Path(bundle_path))
    header = bundle.header
    db_path = Path(db_path)
    newest = code_schema_version()
    if header.get("schema_version", 0) > newest:
        raise BundleError(
            f"{bundle_path}: the bundle comes from schema version {header['schema_version']}, "
            f"newer than this llamaswap-es knows ({newest}); upgrade llamaswap-es to import it"
        )
    writer = LogWriter.open(db_path)
    try:
        existing = writer.count_rows("events")
        if existing:
            raise BundleError(
                f"{db_path}: refusing to import {bundle_path} into a database that already holds "
                f"{existing} events; import into a new path instead"
            )
        writer.insert_all(bundle.iter_rows())  # one transaction: all rows or none
    finally:
        writer.close()
    return header
