"""A scheduler log written step by step at chosen times: inputs reduced by the real reducer,
each followed by its decisions, and real snapshots of the state (for the retention tests)."""

from __future__ import annotations

import itertools
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.events.rows import encode_envelopes
from llamaswap_es.events.types import (
    ConfigApplied,
    Dispatch,
    Envelope,
    Event,
    LoadRequested,
    ProcessReady,
    ProcessSpawned,
    ProcessStopped,
    RequestFinished,
    RequestReceived,
    ServerStarted,
    StartProcess,
    StopProcess,
    UnloadRequested,
)
from llamaswap_es.events.writer import LogWriter
from tests.replay.recording import group_config

DAY_MS = 86_400_000
BASE_MS = 1_700_000_000_000
BOOT = "built-boot"


class LogBuilder:
    """Write with `at(day)`, `load`, `unload`, `snapshot`; `close` when done."""

    def __init__(
        self, path: Path, models: tuple[str, ...] = ("a", "b"), base_ms: int = BASE_MS
    ) -> None:
        self.path = path
        self.writer = LogWriter.open(path)
        self.state = core.new_state()
        self.base_ms = self.now_ms = base_ms
        self.snapshots: dict[str, int] = {}
        self._pids = itertools.count(40_000)
        self.input(ServerStarted(boot_id=BOOT, pid=1, version="0.1.0"))
        self.input(ConfigApplied(config_hash="built", schedule=group_config(models).to_dict()))

    def at(self, day: float) -> LogBuilder:
        self.now_ms = self.base_ms + int(day * DAY_MS)
        return self

    def input(self, event: Event) -> list[object]:
        seq = self.writer.next_seq
        source = Envelope(body=event, ts_ms=self.now_ms, boot=BOOT, seq=seq)
        self.state, decisions = core.reduce(self.state, source)
        rows = [source] + [
            Envelope(body=d, ts_ms=self.now_ms, boot=BOOT, seq=seq + 1 + i, cause=seq)
            for i, d in enumerate(decisions)
        ]
        self.writer.append(encode_envelopes(rows, BOOT))
        return list(decisions)

    @property
    def last_seq(self) -> int:
        return self.writer.next_seq - 1

    def load(self, model: str, pid: int | None = None) -> int:
        """Load `model` (its group partner is stopped first); returns the ProcessSpawned seq.

        `pid`: a real process to record as its upstream (else a made-up pid)."""
        pending = self.input(LoadRequested(model=model))
        spawned = 0
        while pending:
            decision = pending.pop(0)
            if isinstance(decision, StopProcess):
                pending += self.input(
                    ProcessStopped(model=decision.model, instance=decision.instance)
                )
            elif isinstance(decision, StartProcess):
                pid = pid or next(self._pids)
                self.input(
                    ProcessSpawned(
                        model=model,
                        instance=decision.instance,
                        pid=pid,
                        pgid=pid,
                        started_at_ms=self.now_ms,
                    )
                )
                spawned = self.last_seq
                pending += self.input(ProcessReady(model=model, instance=decision.instance))
        assert spawned, f"{model} was not started"
        return spawned

    def serve(self, request_id: str, model: str) -> None:
        """A chat request for a ready `model`: received, dispatched, finished."""
        decisions = self.input(
            RequestReceived(
                request_id=request_id, model=model, path="/v1/chat/completions", method="POST"
            )
        )
        assert any(isinstance(d, Dispatch) for d in decisions), decisions
        self.input(RequestFinished(request_id=request_id, model=model, status=200))

    def unload(self) -> None:
        for decision in self.input(UnloadRequested()):
            if isinstance(decision, StopProcess):
                self.input(ProcessStopped(model=decision.model, instance=decision.instance))

    def snapshot(self, name: str, reducer_version: str = core.REDUCER_VERSION) -> int:
        self.writer.save_snapshot(
            reducer_version=reducer_version,
            seq=self.last_seq,
            digest=core.digest(self.state),
            state=core.snapshot(self.state),
        )
        self.snapshots[name] = self.last_seq
        return self.last_seq

    def close(self) -> None:
        self.writer.close()
