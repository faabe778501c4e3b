"""The one small hierarchy of user-facing errors.

Every error names the thing it is about (a file and key path, a model id, a request id) and, where
it can, says what to do. Catch `LlamaSwapError` at the edges (command line, HTTP) and show its text.
"""

from __future__ import annotations

PROGRAM = "llamaswap-es"
"""The command's name, the prefix of every error line it prints."""


class LlamaSwapError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(LlamaSwapError):
    """A configuration file could not be loaded.

    `source` is the file (or directory) and `key_path` the dotted path of the offending key, when
    known; `message` keeps llama-swap's own wording so users can search for it.
    """

    def __init__(self, message: str, *, source: str | None = None, key_path: str | None = None):
        self.message = message
        self.source = source
        self.key_path = key_path
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.key_path:
            where.append(f"at {self.key_path}")
        prefix = ": ".join([" ".join(where)]) + ": " if where else ""
        return f"{prefix}{self.message}"


class StoreError(LlamaSwapError):
    """The event log could not be opened, read or written."""


class StoreLockedError(StoreError):
    """Another server already writes to this event log."""


class StoreOverloadedError(StoreError):
    """Too many inputs wait for the run loop (the log is not keeping up): the caller backs off."""


class LogUnavailableError(StoreError):
    """The event log cannot be written right now (disk full, I/O error, read-only file): new work
    is refused until the run loop's retries get through; `retry_after_s` is the client's hint."""

    def __init__(self, message: str, *, retry_after_s: int = 5):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class InputRefusedError(LlamaSwapError):
    """One input could not be recorded or scheduled; it alone was refused and the loop goes on.

    `status` is the HTTP status its request gets: 400 when the input itself cannot be encoded,
    500 when the scheduler failed on it (a bug, reported in the server log and the event log).
    """

    def __init__(self, message: str, *, status: int):
        self.status = status
        super().__init__(message)


class ProcessError(LlamaSwapError):
    """An upstream process could not be started, probed or stopped."""


def error_line(message: object) -> str:
    """`llamaswap-es: message` for stderr, once: a message that already starts with our name
    (`llamaswap-es: unknown setting …` names the config section of that name) is not prefixed
    again."""
    text = str(message)
    return text if text.startswith(PROGRAM + ":") else f"{PROGRAM}: {text}"
