"""Open any log for reading: an SQLite event log or an exported `.cbor.zst` bundle.

Its own module because it sits above both readers: `bundle.py` builds on `reader.py`, so the
choice between them cannot live in `reader.py` without an import circle.
"""

from __future__ import annotations

from pathlib import Path

from llamaswap_es.events.bundle import BundleReader
from llamaswap_es.events.reader import DatabaseReader, LogReader


def open_log(path_or_bundle: str | Path) -> LogReader:
    """A reader over an SQLite event log or an exported `.cbor.zst` bundle."""
    path = Path(path_or_bundle)
    if path.name.endswith(".zst"):
        return BundleReader(path)
    return DatabaseReader(path)
