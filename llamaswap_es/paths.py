"""Where the server keeps its event log unless told otherwise (`--db`, `llamaswap-es.db`).

One definition for every command that opens a log (the server, `replay`,
`rebuild-projections`), so they all find the same file without `--db`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_db_path(env: Mapping[str, str] | None = None) -> str:
    """`$XDG_DATA_HOME/llamaswap-es/events.db`, else `~/.local/share/llamaswap-es/events.db`."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "llamaswap-es" / "events.db")
