"""A failed start says why: the model's own last words, its exit status, or what could not be run
(real processes; the tail's bounds and cleaning are checked on `OutputTail` directly)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from llamaswap_es.events.types import ProcessSpawned, ProcessStartFailed
from llamaswap_es.runtime.output_tail import MAX_BYTES, MAX_LINES, OutputTail
from tests.conftest import free_port
from tests.fixtures.processes import fake_spec
from tests.runtime.conftest import Harness


def _script(tmp_path: Path, body: str, *, executable: bool = True) -> Path:
    path = tmp_path / "model-server.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755 if executable else 0o644)
    return path


async def test_an_exit_at_start_carries_its_status_and_last_output(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = _script(
        tmp_path, 'echo "loading /models/x.gguf"\necho "error: model file not found" >&2\nexit 3\n'
    )
    caplog.set_level(logging.WARNING, logger="llamaswap_es.runtime.executor")
    harness.executor.start(fake_spec("m", free_port(), cmd=str(script)), 1)
    await harness.events.expect(ProcessSpawned)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.error, failed.kind) == ("upstream command exited prematurely", "exited")
    assert (failed.exit_code, failed.signal) == (3, None)
    assert failed.output_tail == "loading /models/x.gguf\nerror: model file not found"
    line = next(r.getMessage() for r in caplog.records if "start failed" in r.getMessage())
    assert "model=m" in line and "exit='exit code 3'" in line
    assert "model file not found" in line and "\n" not in line  # one line in the server's log


async def test_a_process_killed_while_starting_names_the_signal(
    harness: Harness, tmp_path: Path
) -> None:
    script = _script(tmp_path, 'echo "about to crash"\nkill -SEGV $$\n')
    harness.executor.start(fake_spec("m", free_port(), cmd=str(script)), 1)
    await harness.events.expect(ProcessSpawned)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (failed.kind, failed.exit_code, failed.signal) == ("exited", None, 11)
    assert failed.output_tail == "about to crash"


async def test_a_file_that_is_not_executable_is_named_and_permanent(
    harness: Harness, tmp_path: Path
) -> None:
    script = _script(tmp_path, "exit 0\n", executable=False)
    harness.executor.start(fake_spec("m", free_port(), cmd=f"{script} --port 1"), 1)
    failed = await harness.events.expect(ProcessStartFailed)
    assert failed.error == (
        f"failed to start command '{script} --port 1': binary '{script}': "
        "permission denied (is it executable?)"
    )
    assert failed.kind == "command" and failed.output_tail == ""
    assert not harness.events.of(ProcessSpawned)


async def test_a_missing_working_directory_is_named(harness: Harness, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    spec = replace(fake_spec("m", free_port(), cmd="sleep 5"), cwd=str(missing))
    harness.executor.start(spec, 1)
    failed = await harness.events.expect(ProcessStartFailed)
    assert (
        failed.error
        == f"failed to start command 'sleep 5': working directory '{missing}': not found"
    )
    assert failed.kind == "command"


async def test_a_chatty_process_leaves_a_bounded_tail(harness: Harness, tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        'i=0\nwhile [ $i -lt 500 ]; do echo "line $i of the model\'s start-up noise"; '
        "i=$((i+1)); done\necho 'the real reason' >&2\nexit 1\n",
    )
    harness.executor.start(fake_spec("m", free_port(), cmd=str(script)), 1)
    await harness.events.expect(ProcessSpawned)
    failed = await harness.events.expect(ProcessStartFailed)
    lines = failed.output_tail.split("\n")
    assert lines[-1] == "the real reason"
    assert lines[-2] == "line 499 of the model's start-up noise"
    assert len(lines) <= MAX_LINES and len(failed.output_tail.encode()) <= MAX_BYTES


def test_the_tail_drops_colours_and_redrawn_progress() -> None:
    tail = OutputTail()
    tail.write("build: 42\n\x1b[31merror:\x1b[0m model file not found\r\n")
    tail.write("loading 10%\rloading 50%\rloading 100%\n\n\n")
    assert tail.text() == "build: 42\nerror: model file not found\nloading 100%"


def test_the_tail_keeps_the_newest_lines_within_its_byte_budget() -> None:
    tail = OutputTail(max_lines=3, max_bytes=17)
    for i in range(1000):
        tail.write(f"line {i}\n")
    assert tail.text() == "line 998\nline 999"
    one_line = OutputTail(max_bytes=10)
    one_line.write("é" * 50)  # a single line longer than the budget keeps its end
    assert one_line.text() == "…ééé" and len(one_line.text().encode()) <= 10


def test_nothing_printed_is_an_empty_tail() -> None:
    assert OutputTail().text() == ""
