"""The replay tool's one error: a bad command-line input, named so the user can fix it."""

from __future__ import annotations

from llamaswap_es.errors import LlamaSwapError


class ReplayError(LlamaSwapError):
    """A seq out of range, a seq that is not a decision, a bad `--set`, an unusable log …

    The message names the file, seq or setting and says what to do; the CLI prints it and exits 2.
    """
