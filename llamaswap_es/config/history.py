"""Our fleet settings: the node's name and the history database it writes to.

`nodeName` names this server in a fleet's shared history (its rows are keyed by it), so it must be
stable and unique per event log; it defaults to the host name. `historyDatabase` is a database URL
(`postgresql://user@host/db` for a fleet, `sqlite:///path` for a file of one's own); empty means
this node's own event-log file. Both are checked here, at load time, so `check-config` finds a bad
one; the URL is only parsed (connecting is the history sink's job) and never echoed with its
password.

SQLAlchemy (which parses the URL) is imported only when there is a URL to parse: it is ~23 MB
resident, and a node without a history database (the sink off) never needs it.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A host-name-like label: it lands in SQL rows, URLs, Prometheus labels and the UI."""

SUPPORTED_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
"""What `historyDatabase` accepts, and the async driver each one runs on."""


class HistorySettingError(ValueError):
    """A bad `nodeName` or `historyDatabase`; the message says what is wrong and what is valid."""


def check_node_name(name: str) -> str:
    """`name` stripped, or HistorySettingError naming what is wrong with it ("" is allowed)."""
    name = name.strip()
    if name and not NODE_NAME.match(name):
        raise HistorySettingError(
            f'"{name}" is not a valid node name: use 1-64 letters, digits, ".", "_" or "-", '
            "starting with a letter or digit"
        )
    return name


def default_node_name() -> str:
    """The host name, made into a valid node name (the fallback is `localhost`)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().strip()).lstrip("._-")[:64]
    return host or "localhost"


def effective_node_name(configured: str) -> str:
    return configured or default_node_name()


def parse_history_url(text: str) -> URL:
    """The configured URL with its async driver (`postgresql+psycopg`, `sqlite+aiosqlite`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise HistorySettingError(
            "not a database URL: use postgresql://user@host:5432/dbname or sqlite:///path/file.db"
        ) from None
    driver = SUPPORTED_SCHEMES.get(url.drivername)
    if driver is None:
        raise HistorySettingError(
            f'database "{url.drivername}" is not supported: use postgresql://… (psycopg 3) or '
            "sqlite:///…"
        )
    if driver.startswith("sqlite") and not url.database:
        raise HistorySettingError(
            "an SQLite history database needs a file path (sqlite:///relative.db or "
            "sqlite:////absolute/path.db); leave historyDatabase empty to use the event log's file"
        )
    return url.set(drivername=driver)


def shown_url(url: URL | str) -> str:
    """The URL as logs, errors and the API may show it: the password replaced by `***`."""
    from sqlalchemy.engine import make_url

    return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)
