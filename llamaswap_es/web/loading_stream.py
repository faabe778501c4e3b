"""The `sendLoadingState` preamble: a streaming chat client watches the model load.

While a streaming `/v1/chat/completions` request waits for its model, llama-swap answers 200
`text/event-stream` at once and writes `reasoning_content` deltas (api.md §6.11, core.md §2.2): a
banner, then every tick a queue position, a remark or a dot; at the end "Done! (x.xxs)". The
upstream's answer is appended to the same stream afterwards.

`stop()` is the safety point (#804): after it returns no loading frame can reach the response,
whatever the ticking task was doing, so the forwarder owns the writer alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time

from aiohttp import web

RULE = "\u2501" * 5
TYPE_PIECE_CHARS = 5
TYPE_INTERVAL_MS = 67
"""About 75 characters per second, as llama-swap types its lines."""
REMARK_EVERY_S = (5.0, 9.0)
STOP_GRACE_S = 1.0

REMARKS = (
    "Warming up the weights...",
    "Counting all the parameters, twice...",
    "Convincing the GPU this is a good idea...",
    "Loading tensors, one layer at a time...",
    "Asking the model to wake up politely...",
    "Shuffling bits into VRAM...",
    "Reticulating attention heads...",
    "Defragmenting the context window...",
)


def loading_frame(text: str) -> bytes:
    """One SSE frame in the chat-completion chunk shape llama-swap uses (no id, no model)."""
    chunk = {"choices": [{"delta": {"reasoning_content": text}}]}
    data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


class LoadingStream:
    """Writes the loading preamble into `response` until `stop()`.

    `response` is a fresh `web.StreamResponse`; `start(request)` prepares it as 200 SSE. Pacing
    (`tick_ms`, `type_interval_ms`) and the remark order (`rng`) are injectable for tests.
    """

    def __init__(
        self,
        response: web.StreamResponse,
        model: str,
        tick_ms: int = 750,
        *,
        type_interval_ms: int = TYPE_INTERVAL_MS,
        rng: random.Random | None = None,
    ):
        self.response = response
        self.model = model
        self._tick_s = tick_ms / 1000.0
        self._type_s = type_interval_ms / 1000.0
        self._rng = rng or random.Random()
        self._remarks = list(REMARKS)
        self._rng.shuffle(self._remarks)
        self._remark_index = 0
        self._position: int | None = None
        self._request: web.BaseRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._fenced = False
        self._client_gone = False
        self._started_at = 0.0
        self.frames_written = 0

    @property
    def fenced(self) -> bool:
        return self._fenced

    async def start(self, request: web.BaseRequest) -> None:
        """Send the 200 SSE headers and begin the banner and ticks in the background."""
        self._request = request
        self._started_at = time.monotonic()
        self.response.set_status(200)
        self.response.headers["Content-Type"] = "text/event-stream"
        self.response.headers["Cache-Control"] = "no-cache"
        self.response.headers["Connection"] = "keep-alive"
        self.response.headers["X-Accel-Buffering"] = "no"
        await self.response.prepare(request)
        self._task = asyncio.create_task(self._run(), name=f"loading-stream {self.model}")

    def set_position(self, position: int) -> None:
        """Note the request's queue position; only the latest is shown at the next tick."""
        self._position = position

    async def stop(self) -> None:
        """Cancel the ticks, write "Done!" if the client is still there, then fence the writer.

        Bounded: the closing banner gets at most 1 s (a stalled client cannot hold us).
        """
        if self._fenced:
            return
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        try:
            if self._request is not None and not self._gone():
                async with asyncio.timeout(STOP_GRACE_S):
                    await self._write_done()
        except (TimeoutError, ConnectionError):
            self._client_gone = True
        finally:
            self._fenced = True

    async def _write_done(self) -> None:
        elapsed = time.monotonic() - self._started_at
        for text in ("\n", f"Done! ({elapsed:.2f}s)\n", f"{RULE}\n", " \n"):
            await self._write(text)

    async def _run(self) -> None:
        try:
            await self._type(f"{RULE}")
            await self._write("\n")
            await self._type(f"llama-swap loading model: {self.model}")
            await self._write("\n")
            next_remark_at = 0.0  # the first tick always brings a remark
            while True:
                await asyncio.sleep(self._tick_s)
                if self._position is not None:
                    position, self._position = self._position, None
                    await self._write("\n")
                    await self._type(f"Queue position: #{position}")
                    await self._write(" ")
                elif time.monotonic() >= next_remark_at:
                    await self._write("\n")
                    await self._type(self._next_remark())
                    await self._write(" ")
                    next_remark_at = time.monotonic() + self._rng.uniform(*REMARK_EVERY_S)
                else:
                    await self._write(".")
        except ConnectionError:
            self._client_gone = True

    def _next_remark(self) -> str:
        remark = self._remarks[self._remark_index % len(self._remarks)]
        self._remark_index += 1
        return remark

    async def _type(self, line: str) -> None:
        """Write `line` in 5-character pieces at typing pace."""
        for i in range(0, len(line), TYPE_PIECE_CHARS):
            if i:
                await asyncio.sleep(self._type_s)
            await self._write(line[i : i + TYPE_PIECE_CHARS])

    async def _write(self, text: str) -> None:
        if self._fenced:
            return
        if self._gone():
            raise ConnectionResetError("client left during the loading stream")
        await self.response.write(loading_frame(text))
        self.frames_written += 1

    def _gone(self) -> bool:
        if self._client_gone:
            return True
        transport = self._request.transport if self._request is not None else None
        return transport is None or transport.is_closing()
