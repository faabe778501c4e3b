"""Health probes: GET a URL and say whether it answered exactly HTTP 200 (a start), or whether
it answered at all (a serving model watched for a hang).

llama-swap counts only 200 as healthy; anything else, a refused connection or a timeout means
"not yet" (spec/core.md §1.4). Each probe has its own short timeout so a hung upstream cannot hold
a start past its deadline. The hang watch asks less: any answer within its timeout is a sign of
life, whatever the status (`probe_answer`).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import aiohttp

PROBE_TIMEOUT_MS = 2_000


def probe_session() -> aiohttp.ClientSession:
    """A session for probes: no keep-alive (an upstream may die between probes), no env proxy."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        trust_env=False,
    )


async def _listening_elsewhere(url: str, timeout_ms: int) -> bool:
    """False when nothing listens yet, or when the connection met itself.

    A connection to a loopback port nobody listens on can be given that same port as its source
    (TCP simultaneous open: it connects to itself) when the port lies in the ephemeral range. It
    would then hold the very port the upstream is about to bind, and the upstream would fail to
    start. So a loopback probe first checks with a plain connection and drops a self-connection.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    if host not in ("127.0.0.1", "localhost", "::1") or port is None:
        return True
    try:
        async with asyncio.timeout(max(timeout_ms, 1) / 1000):
            _reader, writer = await asyncio.open_connection(host, port)
    except (TimeoutError, OSError):
        return False
    try:
        return writer.get_extra_info("sockname")[1] != port
    finally:
        writer.close()


async def probe_once(session: aiohttp.ClientSession, url: str, timeout_ms: int) -> bool:
    """True if `url` answered 200 within `timeout_ms`; False for any other outcome."""
    if not await _listening_elsewhere(url, timeout_ms):
        return False
    try:
        timeout = aiohttp.ClientTimeout(total=max(timeout_ms, 1) / 1000)
        async with session.get(url, timeout=timeout, allow_redirects=False) as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return False


async def probe_answer(session: aiohttp.ClientSession, url: str, timeout_ms: int) -> str | None:
    """None if `url` sent any HTTP answer (its status line and headers) within `timeout_ms`;
    otherwise what the probe met, in words ("no answer within 5 s", "cannot connect: …").

    Only silence is a failure: a busy server that answers 503, or slowly but in time, is alive.
    """
    limit_s = max(timeout_ms, 1) / 1000
    try:
        # asyncio's timeout, not aiohttp's: that one rounds deadlines of 5 s and more up to the
        # next whole second, which would add up to a second per failed probe.
        async with asyncio.timeout(limit_s), session.get(url, allow_redirects=False):
            return None
    except TimeoutError:
        return f"no answer within {limit_s:g} s"
    except aiohttp.ClientConnectorError as exc:
        errno = exc.os_error.errno  # asyncio's own text names no cause ("Connect call failed")
        return f"cannot connect: {os.strerror(errno) if errno else exc.os_error}"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def probe_health(url: str, timeout_ms: int = PROBE_TIMEOUT_MS) -> bool:
    """A single probe with its own session (for recovery, where there is no executor yet)."""
    async with probe_session() as session:
        return await probe_once(session, url, timeout_ms)
