"""Recovery that meets a committed input the reducer cannot take refuses to start, naming the
log, the seq, the event type and the replay commands that show it (docs/architecture.md,
"Failure modes"). A reducer bug cannot be produced on purpose, so the test stands one in for
the reducer's handling of one event type; the log, the reader and recovery are the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap_es import core
from llamaswap_es.events.types import Envelope, RequestReceived
from llamaswap_es.runtime.recovery import UnreplayableLogError, rebuild
from tests.fixtures.event_store import open_booted_store


async def test_a_committed_input_the_reducer_cannot_take_stops_recovery_with_its_seq(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_booted_store(db_path)
    seqs = await store.append_batch(
        [Envelope(body=RequestReceived(request_id="r1", model="m"), ts_ms=1)]
    )
    boot = store.boot_id
    await store.close()
    real_reduce = core.reduce

    def failing(state: core.SchedulerState, envelope: Envelope):  # type: ignore[no-untyped-def]
        if isinstance(envelope.body, RequestReceived):
            raise ZeroDivisionError("a bug")
        return real_reduce(state, envelope)

    monkeypatch.setattr(core, "reduce", failing)
    with pytest.raises(UnreplayableLogError) as refused:
        rebuild(db_path, boot)
    text = str(refused.value)
    assert f"RequestReceived at seq {seqs[0]}" in text and "ZeroDivisionError: a bug" in text
    assert f"replay timeline --db {db_path}" in text and f"replay verify --db {db_path}" in text
    assert "move the log aside" in text
