"""Copying a child's combined stdout/stderr into its model's log without ever making it wait.

The pipe is read by the event loop as data arrives and every chunk goes straight to the log
streams (which never block, see `logs`). A descendant that inherited the pipe can keep it open
after the leader died; `close_after` bounds how long we wait for the end of the output before
closing our end anyway (llama-swap's pipe backstop, spec/core.md §1.5 step 5).
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from typing import IO


class _PipeProtocol(asyncio.Protocol):
    def __init__(self, write: Callable[[str], None], closed: asyncio.Event) -> None:
        self._write = write
        self._closed = closed
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def data_received(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._write(text)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._write(tail)
        self._closed.set()


class OutputPipe:
    """Our read end of a child's output pipe, attached to the running loop."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None

    async def attach(self, pipe: IO[bytes], write: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: _PipeProtocol(write, self.closed), pipe)
        self._transport = transport

    async def close_after(self, backstop_s: float) -> bool:
        """Wait up to `backstop_s` for the end of the output, then close; True if it ended."""
        if self._transport is None:
            return True
        try:
            await asyncio.wait_for(self.closed.wait(), backstop_s)
            return True
        except TimeoutError:
            self._transport.close()
            await self.closed.wait()
            return False

    def close_now(self) -> None:
        if self._transport is not None and not self.closed.is_set():
            self._transport.close()
