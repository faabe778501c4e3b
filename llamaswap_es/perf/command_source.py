"""A GPU source that runs a vendor's command once per sample (nvidia-smi, rocm-smi).

The two differ only in the command's arguments, how its output is parsed and the vendor they
name; running it (bounded by `TIMEOUT_S`), treating a failure as "no figures this sample" and
leaving out devices without memory is the same, so it is written once here.
"""

from __future__ import annotations

import logging
import subprocess
import time
from typing import ClassVar, Self

from llamaswap_es.perf.samples import GpuInfo, GpuStat, info_from_stats

log = logging.getLogger("llamaswap_es.perf.command_source")

TIMEOUT_S = 5.0


class CommandGpuSource:
    name: str
    vendor: ClassVar[str]
    args: ClassVar[tuple[str, ...]]

    def __init__(self, executable: str) -> None:
        self.executable = executable

    @classmethod
    def open(cls, executable: str | None) -> Self | None:
        """None when there is no executable or it reports no GPU with memory."""
        if executable is None:
            return None
        source = cls(executable)
        if not source.sample():
            return None
        return source

    @staticmethod
    def parse(text: str, now: float) -> list[GpuStat]:
        raise NotImplementedError

    def sample(self, now: float | None = None) -> list[GpuStat]:
        ts = time.time() if now is None else now
        try:
            done = subprocess.run(
                [self.executable, *self.args],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.debug("%s failed: %s", self.name, exc)
            return []
        if done.returncode != 0:
            log.debug("%s exited %d: %s", self.name, done.returncode, done.stderr.strip()[:200])
            return []
        return [stat for stat in self.parse(done.stdout, ts) if stat.mem_total_mb > 0]

    def info(self) -> list[GpuInfo]:
        return info_from_stats(self.sample(), self.vendor)

    def close(self) -> None:
        """Nothing is kept open between samples."""
