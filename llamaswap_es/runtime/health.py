"""One health probe: GET a URL and say whether it answered exactly HTTP 200.

llama-swap counts only 200 as healthy; anything else, a refused connection or a timeout means
"not yet" (spec/core.md §1.4). Each probe has its own short timeout so a hung upstream cannot hold
a start past its deadline.
"""

from __future__ import annotations

import aiohttp

PROBE_TIMEOUT_MS = 2_000


def probe_session() -> aiohttp.ClientSession:
    """A session for probes: no keep-alive (an upstream may die between probes), no env proxy."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        trust_env=False,
    )


async def probe_once(session: aiohttp.ClientSession, url: str, timeout_ms: int) -> bool:
    """True if `url` answered 200 within `timeout_ms`; False for any other outcome."""
    try:
        timeout = aiohttp.ClientTimeout(total=max(timeout_ms, 1) / 1000)
        async with session.get(url, timeout=timeout, allow_redirects=False) as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return False


async def probe_health(url: str, timeout_ms: int = PROBE_TIMEOUT_MS) -> bool:
    """A single probe with its own session (for recovery, where there is no executor yet)."""
    async with probe_session() as session:
        return await probe_once(session, url, timeout_ms)
