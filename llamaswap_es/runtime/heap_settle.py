"""Settling the heap once the server is up: start-up's objects out of the collector's way.

Start-up leaves ~100,000 long-lived container objects behind (imported modules, the
configuration's models, the app's routes). CPython's cyclic collector walks all of them on every
full (generation 2) collection, which a busy server triggers every few thousand requests: measured
on the request bench, five full collections of up to 150 ms each, each one stalling every request
in flight. `gc.freeze()` moves what exists now into a permanent generation the
collector never walks; collections then only see what requests allocate.

Before freezing, one full collection frees start-up's garbage, so it is not frozen for good.
Probed once with `gc.callbacks` in a `bench/run.py proxy_ab` server (9,000 requests; no bench
prints it): full collections took 0.48 s in all
(up to 150 ms each, about 2% of the server's CPU) before, 0.09 s after (the one at start-up).

A reload replaces the configuration: `settle()` runs again afterwards, after `gc.unfreeze()`, so
the replaced configuration's objects are collected instead of staying frozen. What requests in
flight hold at that moment is frozen too; the part of it that later becomes cyclic garbage (a
traceback, a finished task) is freed only at the next settle: bounded by what was in flight
during one reload, a few kilobytes per request, never growing with uptime.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("llamaswap_es.runtime.heap")


def settle() -> float:
    """Collect, then freeze what is left; the seconds it took (logged at debug).

    Call it from the event loop at a quiet moment (after start-up, after a reload): the full
    collection blocks the loop for as long as one the collector would have run by itself."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - started
    log.debug("heap settled in %.0f ms: %d objects frozen", took * 1000, gc.get_freeze_count())
    return took
