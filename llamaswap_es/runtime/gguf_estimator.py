"""Estimated footprints of models whose command loads a GGUF file, without numpy in the server.

The files are read by a short-lived subprocess (`python -m llamaswap_es.perf.gguf_facts`, which
imports llama.cpp's `gguf` package and with it numpy); this process only does the arithmetic
(`perf/footprint_estimate.py`). Facts are cached by file path, size and modification time, so a
reload or a second model on the same file reads nothing again, and a replaced file is read anew.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import llamaswap_es
from llamaswap_es.perf.footprint_estimate import (
    EstimateError,
    FootprintEstimate,
    estimate_footprint,
)
from llamaswap_es.perf.gguf_facts import GgufFacts
from llamaswap_es.runtime.gguf_command import GgufCommand

log = logging.getLogger("llamaswap_es.runtime.gguf_estimator")

READ_TIMEOUT_S = 60.0
"""How long reading the headers of a model's files may take (they are memory-mapped: a large
model's header takes well under a second; a hung network mount does not hold us forever)."""

_FileKey = tuple[str, int, int]


class GgufEstimator:
    """Reads GGUF facts in a subprocess, caches them per file version, estimates footprints."""

    def __init__(self, *, python: str = sys.executable, timeout_s: float = READ_TIMEOUT_S) -> None:
        self._python = python
        self._timeout_s = timeout_s
        self._facts: dict[_FileKey, GgufFacts] = {}
        self.reads = 0
        """How many subprocesses ran (the cache's effect is visible in tests)."""

    async def estimate(self, command: GgufCommand) -> FootprintEstimate:
        """The footprint of `command`'s files; `EstimateError` naming the file when a file is
        missing or unreadable, or the command's figures cannot be counted."""
        # stat() on a thread: a model file on a stalled network mount must not stop the server.
        keys = await asyncio.to_thread(lambda: [self._key(path) for path in command.files])
        missing = [key for key in keys if key not in self._facts]
        if missing:
            for facts, key in zip(await self._read([k[0] for k in missing]), missing, strict=True):
                self._facts[key] = facts
        model, *extra = (self._facts[key] for key in keys)
        return estimate_footprint(
            model,
            tuple(extra),
            ctx=command.ctx,
            cache_type_k=command.cache_type_k,
            cache_type_v=command.cache_type_v,
        )

    @staticmethod
    def _key(path: str) -> _FileKey:
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise EstimateError(f"{path}: cannot read the GGUF file ({exc.strerror})") from None
        return (path, stat.st_size, stat.st_mtime_ns)

    async def _read(self, paths: list[str]) -> list[GgufFacts]:
        env = dict(os.environ)
        package_root = str(Path(llamaswap_es.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.reads += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                self._python, "-m", "llamaswap_es.perf.gguf_facts", *paths,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )  # fmt: skip
        except OSError as exc:
            raise EstimateError(
                f"{', '.join(paths)}: cannot run the GGUF reader {self._python}: {exc}"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EstimateError(
                f"{', '.join(paths)}: reading the GGUF header took over {self._timeout_s:.0f} s"
            ) from None
        try:
            answer = json.loads(out.decode(errors="replace") or "{}")
        except ValueError:
            answer = {}
        if "files" in answer and proc.returncode == 0:
            return [GgufFacts.from_json(data) for data in answer["files"]]
        reason = answer.get("error") or err.decode(errors="replace").strip()[-500:]
        exited = f"{', '.join(paths)}: the GGUF reader exited {proc.returncode}"
        raise EstimateError(reason or exited)
