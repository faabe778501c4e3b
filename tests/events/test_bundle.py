"""Export a log to a .cbor.zst bundle and import it into a new database, byte for byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cbor2
import pytest
import zstandard

from llamaswap_es.events.bundle import export_bundle, import_bundle
from llamaswap_es.events.errors import BundleError
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import Dispatch, Envelope, RequestReceived
from tests.fixtures.event_store import open_booted_store


def _rows(path: Path, lo: int = 1, hi: int = 1 << 62) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT seq, ts_ms, type, key, boot, v, cause, payload FROM events "
            "WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (lo, hi),
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
async def filled_log(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "events.db"
    for boot in ("boot-a", "boot-b"):
        store = await open_booted_store(path, boot_id=boot)
        for i in range(50):
            seqs = await store.append_batch(
                [Envelope(body=RequestReceived(request_id=f"{boot}-{i}", model="m é"), ts_ms=i)]
            )
            await store.append_batch(
                [
                    Envelope(
                        body=Dispatch(request_id=f"{boot}-{i}", model="m é", instance=1),
                        ts_ms=i,
                        cause=seqs[0],
                    )
                ]
            )
        await store.close()
    return path


async def test_export_then_import_is_lossless(filled_log: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "log.cbor.zst"
    header = export_bundle(filled_log, bundle)
    assert header["from_seq"] == 1 and header["to_seq"] == header["count"] == 202
    assert header["boots"] == ["boot-a", "boot-b"]
    assert header["schema_version"] >= 2
    target = tmp_path / "restored" / "events.db"
    import_bundle(bundle, target)
    assert _rows(target) == _rows(filled_log)
    store = await open_booted_store(target)  # the imported log is a working log
    try:
        assert await store.last_seq() == 203
    finally:
        await store.close()


async def test_a_range_reads_back_through_open_log(filled_log: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "slice.cbor.zst"
    header = export_bundle(filled_log, bundle, from_seq=100, to_seq=120)
    assert (header["count"], header["boots"]) == (21, ["boot-a", "boot-b"])
    with open_log(bundle) as from_bundle, open_log(filled_log) as from_db:
        assert from_bundle.last_seq() == 120
        assert list(from_bundle.iter_envelopes(validate=True)) == list(
            from_db.iter_envelopes(100, 120)
        )
        assert [e.seq for e in from_bundle.iter_envelopes(110, 112)] == [110, 111, 112]
    target = tmp_path / "slice.db"
    import_bundle(bundle, target)
    assert _rows(target) == _rows(filled_log, 100, 120)


async def test_import_into_a_non_empty_database_is_refused(
    filled_log: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "log.cbor.zst"
    export_bundle(filled_log, bundle)
    before = _rows(filled_log)
    with pytest.raises(BundleError, match="already holds 202 events") as info:
        import_bundle(bundle, filled_log)
    assert str(filled_log) in str(info.value)
    assert _rows(filled_log) == before


async def test_a_cut_bundle_imports_nothing(filled_log: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "log.cbor.zst"
    export_bundle(filled_log, bundle)
    items = []
    with zstandard.ZstdDecompressor().stream_reader(bundle.open("rb")) as stream:
        decoder = cbor2.CBORDecoder(stream)
        while True:
            try:
                items.append(decoder.decode())
            except cbor2.CBORDecodeEOF:
                break
    assert items[-1] == {"end": True, "count": 202}
    cut = tmp_path / "cut.cbor.zst"  # header and every row, but the trailer is missing
    with zstandard.ZstdCompressor().stream_writer(cut.open("wb")) as out:
        for item in items[:-1]:
            cbor2.dump(item, out)
    target = tmp_path / "t.db"
    with pytest.raises(BundleError, match=f"{cut}: the bundle is truncated after 202 rows"):
        import_bundle(cut, target)
    assert _rows(target) == []  # all or nothing: the rows before the cut were rolled back

    half = tmp_path / "half.cbor.zst"
    half.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    with pytest.raises(BundleError, match=str(half)):
        import_bundle(half, tmp_path / "u.db")


def test_a_file_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.cbor.zst"
    bogus.write_bytes(b"hello")
    with pytest.raises(BundleError, match=str(bogus)):
        open_log(bogus)
