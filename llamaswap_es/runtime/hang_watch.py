"""Watching a serving upstream for a hang (ARCHITECTURE §11.6): probes while it is ready.

A crash is seen at once (the exit watch), but a process that stops answering (deadlocked,
swapping itself to death, SIGSTOPped) keeps its port and its requests forever, and with them
its whole swap group. So while an instance is ready its health endpoint is probed at a modest
interval, concurrently with whatever it is serving, on the executor's own connections. Only
silence counts: a probe fails when no HTTP answer (any status) arrives within the probe
timeout, and only `failures_before_hung` failures in a row make a verdict; one answer resets the
count. A busy llama-server answers `/health` from its HTTP threads during a long prompt, so it
is never declared hung.

The watch only reports (the caller turns the verdict into a `ProcessHung` event); the reducer
decides the stop. Settings are read again before each probe, so a reload applies to running
instances too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from llamaswap_es.config.models import HangDetectionSettings
from llamaswap_es.runtime.health import probe_answer

log = logging.getLogger("llamaswap_es.runtime.executor")


@dataclass(frozen=True, slots=True)
class HangDetection:
    """The hang watch's knobs (`llamaswap-es: hangDetection`); the defaults are the config's."""

    enabled: bool = True
    probe_interval_ms: int = 5_000
    """From the start of one probe to the start of the next (sooner if a probe took longer)."""
    probe_timeout_ms: int = 5_000
    failures_before_hung: int = 3

    @classmethod
    def from_settings(cls, settings: HangDetectionSettings) -> HangDetection:
        return cls(
            enabled=settings.enabled,
            probe_interval_ms=settings.probe_interval_ms,
            probe_timeout_ms=settings.probe_timeout_ms,
            failures_before_hung=settings.failures_before_hung,
        )


@dataclass(frozen=True, slots=True)
class HangVerdict:
    """What the watch concluded: how many probes in a row failed, and what they met."""

    failures: int
    error: str


async def watch_for_hang(
    url: str,
    session: Callable[[], aiohttp.ClientSession],
    settings: Callable[[], HangDetection],
    *,
    name: str = "",
) -> HangVerdict:
    """Probe `url` until enough probes in a row fail; the verdict. Runs until cancelled otherwise.

    `name` ("model#instance") only labels the log lines: a warning per failed probe, and a note
    when an upstream answers again after failures (a near miss worth knowing about).
    """
    loop = asyncio.get_running_loop()
    failed: list[str] = []
    next_probe = loop.time() + settings().probe_interval_ms / 1000
    while True:
        await asyncio.sleep(max(0.0, next_probe - loop.time()))
        current = settings()
        next_probe = loop.time() + current.probe_interval_ms / 1000
        if not current.enabled:
            failed.clear()
            continue
        problem = await probe_answer(session(), url, current.probe_timeout_ms)
        if problem is None:
            if failed:
                log.info(
                    "upstream answers its health probe again upstream=%s after_failures=%d",
                    name,
                    len(failed),
                )
                failed.clear()
            continue
        failed.append(problem)
        log.warning(
            "health probe failed while serving upstream=%s failure=%d/%d url=%s error=%r",
            name,
            len(failed),
            current.failures_before_hung,
            url,
            problem,
        )
        if len(failed) >= current.failures_before_hung:
            return HangVerdict(len(failed), describe_failures(url, failed))


def describe_failures(url: str, failed: list[str]) -> str:
    """The verdict in words, each distinct problem once, in order of first appearance, e.g.
    `3 health probes in a row to URL failed: no answer within 5 s (x3)`."""
    counts: dict[str, int] = {}
    for problem in failed:
        counts[problem] = counts.get(problem, 0) + 1
    what = "; ".join(f"{p} (x{n})" if n > 1 else p for p, n in counts.items())
    return f"{len(failed)} health probes in a row to {url} failed: {what}"


__all__ = ["HangDetection", "HangVerdict", "describe_failures", "watch_for_hang"]
