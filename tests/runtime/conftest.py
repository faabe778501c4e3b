"""The executor under test, with an event recorder and private log streams."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from llamaswap_es.runtime.executor import ProcessExecutor, Tuning
from llamaswap_es.runtime.logs import UpstreamLogs
from tests.fixtures.processes import EventRecorder


@dataclass
class Harness:
    executor: ProcessExecutor
    events: EventRecorder
    logs: UpstreamLogs
    stdout: io.StringIO


@pytest.fixture
async def harness(env_tag: str) -> AsyncIterator[Harness]:
    stdout = io.StringIO()
    logs = UpstreamLogs(stdout=stdout)
    events = EventRecorder()
    executor = ProcessExecutor(
        report=events,
        logs=logs,
        env_tag=env_tag,
        tuning=Tuning(probe_interval_ms=50, pipe_backstop_ms=500, abort_grace_ms=1_000),
    )
    yield Harness(executor, events, logs, stdout)
    await executor.close(grace_ms=1_000)
    logs.close()
