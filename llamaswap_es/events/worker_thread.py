"""One thread that runs blocking calls in order for the event loop: the log's and the
projections' SQLite connections each live on one.

A one-thread `ThreadPoolExecutor` behind `loop.run_in_executor` did this job, at a price the
request path pays on every log commit: a `concurrent.futures.Future` with its condition
variable, the pool's idle semaphore, and an asyncio future chained to it. Measured on this
2-vCPU VM (`python bench/run.py handoff`: uvloop, 20,000 round trips of a trivial call): 73 to 83 µs
of CPU per round trip through the executor, 48 to 52 µs through this thread (a `SimpleQueue` in,
`call_soon_threadsafe` back).

Semantics are the executor's: calls run one at a time in submission order; an exception is
raised in the awaiting coroutine; a call whose caller was cancelled while it was still queued
never runs (a burst of timed-out or abandoned queries does not hold up later reads), and
cancelling the caller does not stop a call that has started (its result is dropped), which is
why the store shields its commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    "asyncio.AbstractEventLoop | None",
    "asyncio.Future[Any] | concurrent.futures.Future[Any]",
]


class WorkerClosedError(RuntimeError):
    """A call was submitted after `close()`."""


class WorkerThread:
    """A named thread taking calls from a queue; `call` from the event loop, `call_blocking`
    from synchronous code (tools, tests), `close` once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((fn, args, loop, future))
        return await future

    def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """`call` for code without a running event loop: blocks until the call is done."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put((fn, args, None, future))
        return future.result()

    def close(self, *, wait: bool = True) -> None:
        """Stop taking calls; the ones already queued still run (joined when `wait`)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _put(self, job: _Job) -> None:
        if self._closed:
            raise WorkerClosedError(f"{self.name}: the thread was closed")
        self._queue.put(job)

    def _main(self) -> None:
        _name_os_thread(self.name)
        while True:
            job = self._queue.get()
            if job is None:
                return
            _run(job)
            del job  # no reference to the last call's arguments while waiting for the next


def _name_os_thread(name: str) -> None:
    """Give the thread its name in the kernel too (`top -H`, `ps -L`, /proc/<pid>/task/*/comm,
    `bench/run.py threadcpu`): Python 3.11 names it only for itself. Best effort, Linux only."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "wb") as comm:
            comm.write(name.encode("utf-8", "replace")[:15])  # the kernel keeps 15 bytes
    except OSError:
        pass


def _run(job: _Job) -> None:
    fn, args, loop, future = job
    if future.cancelled():  # its caller gave up while it was queued: as the executor, skip it
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # as the executor does: the caller gets it
        _deliver(loop, future, None, exc)
    else:
        _deliver(loop, future, result, None)


def _deliver(
    loop: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Any] | concurrent.futures.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    if loop is None:
        assert isinstance(future, concurrent.futures.Future)
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
        return
    assert isinstance(future, asyncio.Future)
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting coroutine was cancelled: the result is dropped
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
