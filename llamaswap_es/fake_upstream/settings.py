"""The fake upstream's settings (from its flags) and its small mutable state."""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field

EXIT_DURING_REQUEST_CODE = 3
"""Exit status of `--exit-during-request`, distinct so tests can tell it from other exits."""
FAIL_AT_START_CODE = 1
EXIT_BEFORE_ANSWER_CODE = 4
"""Exit status of `--exit-before-answer-if`."""


@dataclass(frozen=True, slots=True)
class FakeSettings:
    port: int
    host: str = "127.0.0.1"
    model_name: str = "fake-model"
    load_delay_ms: int = 0
    tokens: int = 10
    token_delay_ms: int = 0
    exit_during_request: bool = False
    exit_before_answer_if: str | None = None
    drop_connection_if: str | None = None
    quiet: bool = False


@dataclass
class FakeState:
    """What changes while the server runs: load progress and request ids."""

    settings: FakeSettings
    started: float = field(default_factory=time.monotonic)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def loaded(self) -> bool:
        return (time.monotonic() - self.started) * 1000 >= self.settings.load_delay_ms

    def next_id(self) -> str:
        return f"fake{next(self._ids)}"

    def log(self, line: str) -> None:
        """A log line on stderr, like llama-server's (the proxy captures it)."""
        if self.settings.quiet:
            return
        try:
            print(line, file=sys.stderr, flush=True)
        except OSError:
            pass  # the proxy that read our output is gone; keep serving
