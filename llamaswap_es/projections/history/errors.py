"""What can go wrong with the history database, each error naming the database (never its
password) and, where it can, what to do.

No SQLAlchemy import here: the local history (the node's own file) uses these too, and an error
can only be SQLAlchemy's where SQLAlchemy was loaded (`describe` looks it up in `sys.modules`).

Every one of these leaves the node serving: the sink keeps its place in the log, retries, and
says it is behind (`/api/history`, `/metrics`). Only a missing driver stops the start-up, since
no retry can fix it.
"""

from __future__ import annotations

import sys

from llamaswap_es.errors import LlamaSwapError


class HistoryError(LlamaSwapError):
    """The history database could not be reached, migrated, read or written."""


class HistoryDriverMissingError(HistoryError):
    """The configured database needs a Python package that is not installed."""


class HistoryVersionError(HistoryError):
    """The history database's schema is newer than this code knows."""


class NodeConflictError(HistoryError):
    """Another event log already writes under this node name."""


class CheckpointMovedError(HistoryError):
    """The node's checkpoint is not where this sink left it (its last commit's answer was lost,
    or someone changed the row): the sink reads it again and continues from there."""


def describe(exc: BaseException) -> str:
    """One line about a database failure: the driver's own message, without SQLAlchemy's
    statement dump and link (which may hold row values) and never a password."""
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")  # loaded only if the engine is
    orig = getattr(exc, "orig", None)
    if sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.DBAPIError) and orig:
        text = str(orig)
    elif sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.SQLAlchemyError):
        text = str(exc).split("\n")[0]
    elif isinstance(exc, TimeoutError):
        text = "no answer in time"
    else:
        text = str(exc) or type(exc).__name__
    first = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return first[:500] or type(exc).__name__
