"""The worker thread the log's and the projections' connections live on: calls in order, errors
raised in the caller, a cancelled caller's call still runs to its end, nothing after close."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from llamaswap_es.events.worker_thread import WorkerClosedError, WorkerThread


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux's /proc only")
def test_the_kernel_knows_the_thread_by_its_name_too() -> None:
    """`top -H`, `ps -L` and `bench/run.py threadcpu` read the name from the kernel."""
    worker = WorkerThread("projections-write")
    try:
        tid = worker.call_blocking(threading.get_native_id)
        with open(f"/proc/self/task/{tid}/comm") as comm:
            assert comm.read().strip() == "projections-wri"  # the kernel keeps 15 bytes
    finally:
        worker.close()


async def test_calls_run_on_one_named_thread_in_submission_order() -> None:
    worker = WorkerThread("test-worker")
    seen: list[tuple[int, str]] = []
    try:

        def record(n: int) -> int:
            seen.append((n, threading.current_thread().name))
            return n * 2

        results = await asyncio.gather(*(worker.call(record, n) for n in range(50)))
        assert results == [n * 2 for n in range(50)]
        assert [n for n, _ in seen] == list(range(50))
        assert {name for _, name in seen} == {"test-worker"}
    finally:
        worker.close()


async def test_an_exception_is_raised_in_the_caller_and_the_thread_goes_on() -> None:
    worker = WorkerThread("test-worker")
    try:

        def fail() -> None:
            raise ValueError("disk on fire")

        with pytest.raises(ValueError, match="disk on fire"):
            await worker.call(fail)
        assert await worker.call(lambda: "still here") == "still here"
    finally:
        worker.close()


async def test_a_cancelled_caller_does_not_stop_a_started_call() -> None:
    worker = WorkerThread("test-worker")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    try:

        def slow() -> str:
            started.set()
            release.wait(10)
            finished.set()
            return "done"

        task = asyncio.ensure_future(worker.call(slow))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await worker.call(lambda: finished.is_set()) is True
    finally:
        release.set()
        worker.close()


def test_blocking_calls_and_close() -> None:
    worker = WorkerThread("test-worker")
    assert worker.call_blocking(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError):
        worker.call_blocking({}.__getitem__, "missing")
    worker.close()
    with pytest.raises(WorkerClosedError, match="test-worker"):
        worker.call_blocking(lambda: None)


async def test_a_call_cancelled_while_queued_never_runs() -> None:
    worker = WorkerThread("test-worker")
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []
    try:

        def block() -> None:
            started.set()
            release.wait(10)

        first = asyncio.ensure_future(worker.call(block))
        assert await asyncio.to_thread(started.wait, 10)
        queued = [asyncio.ensure_future(worker.call(ran.append, n)) for n in range(20)]
        await asyncio.sleep(0)  # let them reach the queue
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        release.set()
        await first
        assert await worker.call(lambda: list(ran)) == []
    finally:
        release.set()
        worker.close()
