"""Rebuild the scheduler state from the log at start-up, and settle what a crash left behind.

`rebuild` replays the recorded inputs through the reducer (from the newest usable snapshot, if
any) and notes what the previous run had going: processes that were starting, ready or stopping,
and requests that never finished. At start-up it runs before this run's `ServerStarted` is
recorded (that is the run loop's first input, which empties the in-memory parts of the state), so
the previous run is noted at the end of the log; run again later (after a contained reducer
failure) it notes it at this run's `ServerStarted` and replays on.

`settle` (run once the loop is running) decides for each recorded process: adopt it when its pid
and start time still match, its model's fingerprint is unchanged and it answers its health check;
otherwise kill its group. Tagged children whose pid never reached the log are reaped too.
Everything it does is submitted as events (ARCHITECTURE §6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.errors import StoreError
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.types import (
    Envelope,
    Event,
    OrphanReaped,
    ProcessAdopted,
    ProcessRecorded,
    ProcessSpawned,
    RecoveryStarted,
    RequestAbandoned,
    ServerStarted,
)
from llamaswap_es.runtime.executor import ProcessExecutor
from llamaswap_es.runtime.health import probe_health
from llamaswap_es.runtime.orphans import find_tagged_processes, kill_group, process_matches
from llamaswap_es.runtime.process_spec import ProcessSpec
from llamaswap_es.runtime.retention import newest_start_record

log = logging.getLogger("llamaswap_es.runtime.recovery")

_RUNNING = ("starting", "ready", "stopping")


@dataclass(frozen=True, slots=True)
class RecordedProcess:
    model: str
    instance: int
    state: str
    fingerprint: str
    pid: int | None = None
    pgid: int | None = None
    started_at_ms: int | None = None
    port: int | None = None
    """Where it listened (a `${PORT}` model may have been moved off a port in use)."""


@dataclass
class Rebuilt:
    state: SchedulerState
    previous_boot: str | None = None
    processes: list[RecordedProcess] = field(default_factory=list)
    unfinished_requests: list[str] = field(default_factory=list)
    replayed: int = 0
    from_snapshot_seq: int = 0
    history_lost: bool = False
    """The log was pruned and no snapshot could be restored: the state starts empty."""


def rebuild(db_path: Path, boot_id: str) -> Rebuilt:
    """Replay the log into a fresh state (synchronous: run it in a thread).

    `boot_id` is this run's: the previous run is what the log held before its `ServerStarted`,
    or the whole log when that is not recorded yet (at start-up).
    """
    with DatabaseReader(db_path) as reader:
        first = reader.first_seq()
        origin = _usable_snapshot(reader, first)
        if origin is None and first > 1:
            return _without_history(reader, boot_id, first)
        state, start = origin if origin is not None else (core.new_state(), 1)
        result = Rebuilt(state=state, from_snapshot_seq=start - 1)
        spawned: dict[tuple[str, int], tuple[int, int, int, int | None]] = {}
        previous_boot: str | None = None
        noted = False
        for envelope in reader.iter_inputs(from_seq=start):
            body = envelope.body
            if isinstance(body, ServerStarted):
                if body.boot_id == boot_id:
                    _note_previous_run(result, state, spawned, reader)
                    result.previous_boot = previous_boot
                    noted = True
                else:
                    previous_boot = body.boot_id
            elif isinstance(body, ProcessSpawned):
                key = (body.model, body.instance)
                spawned[key] = (body.pid, body.pgid, body.started_at_ms, body.port)
            elif isinstance(body, ProcessAdopted | ProcessRecorded):
                started = body.started_at_ms or 0
                spawned[(body.model, body.instance)] = (body.pid, body.pgid, started, body.port)
            state = _replayed(state, envelope, db_path)
            result.replayed += 1
        if not noted:  # at start-up: this run's ServerStarted is not recorded yet
            _note_previous_run(result, state, spawned, reader)
            result.previous_boot = previous_boot
        result.state = state
        return result


class UnreplayableLogError(StoreError):
    """The reducer raised on an input that is committed in the log: the server cannot know its
    state, so it refuses to start and names the input and the command that shows it."""


def _replayed(state: SchedulerState, envelope: Envelope, db_path: Path) -> SchedulerState:
    try:
        state, _ = core.reduce(state, envelope)
    except Exception as exc:
        raise UnreplayableLogError(
            f"{db_path}: the scheduler ({core.REDUCER_VERSION}) cannot take the committed "
            f"{envelope.type} at seq {envelope.seq} ({type(exc).__name__}: {exc}). This is a "
            f"bug: `llamaswap-es replay timeline --db {db_path} --from {max(1, envelope.seq - 20)}"
            f" --to {envelope.seq}` shows what led to it and `llamaswap-es replay verify --db "
            f"{db_path}` where it fails; please report it with that output. To serve meanwhile, "
            "move the log aside (the server starts a new one)."
        ) from exc
    return state


def _usable_snapshot(reader: DatabaseReader, first_seq: int) -> tuple[SchedulerState, int] | None:
    """The newest snapshot of this reducer that restores and that the log continues from.

    Returns the restored state and the first seq to replay. A snapshot below the log's first
    seq minus one cannot be used (the events after it were pruned).
    """
    snap = reader.latest_snapshot(core.REDUCER_VERSION)
    while snap is not None and snap.seq >= first_seq - 1:
        try:
            return core.restore(snap.state), snap.seq + 1
        except core.SnapshotError as exc:
            log.warning("ignoring snapshot at seq %d: %s", snap.seq, exc)
        snap = reader.latest_snapshot(core.REDUCER_VERSION, max_seq=snap.seq - 1)
    return None


def _without_history(reader: DatabaseReader, boot_id: str, first_seq: int) -> Rebuilt:
    """A pruned log with no snapshot this code can restore: start empty, adopt nothing.

    Folding the tail into an empty state would invent a state that never was (models "stopped"
    that are running, requests that were never received), so nothing is replayed but this run's
    own `ServerStarted`; `settle` then reaps every tagged upstream of the previous run as an
    orphan. The service saves a snapshot at once, so the log is anchored again from here on.
    """
    started = [
        (e.seq, e.body)
        for e in reader.read(types=("ServerStarted",), from_seq=first_seq)
        if isinstance(e.body, ServerStarted)
    ]
    our_seq = next((seq for seq, body in started if body.boot_id == boot_id), None)
    before = [body.boot_id for seq, body in started if our_seq is None or seq < our_seq]
    log.warning(
        "event log %s starts at seq %d (older events were pruned) and holds no usable snapshot "
        "of reducer %s (after an upgrade the older snapshots no longer restore): starting from "
        "an empty scheduler state; processes of the previous run are stopped, not adopted",
        reader.path,
        first_seq,
        core.REDUCER_VERSION,
    )
    state = core.new_state()
    result = Rebuilt(state=state, from_snapshot_seq=0, history_lost=True)
    result.previous_boot = before[-1] if before else None
    # The scheduler forgets them, but the activity history still has them open: end them.
    result.unfinished_requests = _unanswered_requests(reader, first_seq)
    if our_seq is not None:
        for envelope in reader.iter_inputs(from_seq=our_seq):
            state = _replayed(state, envelope, reader.path)
            result.replayed += 1
    result.state = state
    return result


_REQUEST_ENDS = ("RequestFinished", "RequestCancelled", "RequestAbandoned", "Reject")


def _unanswered_requests(reader: DatabaseReader, first_seq: int) -> list[str]:
    """Requests received in the log's remaining tail that nothing ended, in arrival order."""
    open_ids: dict[str, None] = {}
    for envelope in reader.read(types=("RequestReceived", *_REQUEST_ENDS), from_seq=first_seq):
        request_id = getattr(envelope.body, "request_id", "")
        if envelope.type == "RequestReceived":
            open_ids[request_id] = None
        else:
            open_ids.pop(request_id, None)
    return list(open_ids)


def _note_previous_run(
    result: Rebuilt,
    state: SchedulerState,
    spawned: dict[tuple[str, int], tuple[int, int, int, int | None]],
    reader: DatabaseReader,
) -> None:
    for view in core.model_views(state):
        if view.state not in _RUNNING:
            continue
        proc = state.models[view.model]
        pid = pgid = started = port = None
        found = spawned.get((view.model, view.instance)) or _spawn_from_log(
            reader, view.model, view.instance
        )
        if found is not None:
            pid, pgid, started, port = found
        result.processes.append(
            RecordedProcess(
                model=view.model,
                instance=view.instance,
                state=view.state,
                fingerprint=proc.schedule.fingerprint,
                pid=pid,
                pgid=pgid,
                started_at_ms=started or None,
                port=port,
            )
        )
    for request_id in sorted(state.requests):
        request = core.request_view(state, request_id)
        if request is not None and not request.is_load:
            result.unfinished_requests.append(request_id)


def _spawn_from_log(
    reader: DatabaseReader, model: str, instance: int
) -> tuple[int, int, int, int | None] | None:
    """The spawn of a process recorded before the snapshot we started from (indexed by key)."""
    record = newest_start_record(reader, model, instance)
    if record is None:
        return None
    body = record.body
    return body.pid, body.pgid, body.started_at_ms or 0, body.port


async def settle(
    rebuilt: Rebuilt,
    *,
    submit: Callable[[Event], None],
    executor: ProcessExecutor,
    spec_for: Callable[[str], ProcessSpec | None],
    fingerprint_for: Callable[[str], str | None],
    env_tag: str,
    probe_timeout_ms: int = 2000,
) -> list[str]:
    """Adopt or reap what the previous run left; returns the adopted model ids."""
    submit(RecoveryStarted(previous_boot=rebuilt.previous_boot))
    for request_id in rebuilt.unfinished_requests:
        submit(RequestAbandoned(request_id=request_id, reason="server_restarted"))
    adopted: list[str] = []
    kept_pids: set[int] = set()
    for proc in rebuilt.processes:
        reason = await _adoption_refusal(proc, spec_for, fingerprint_for, probe_timeout_ms)
        if reason is None and proc.pid is not None and proc.pgid is not None:
            spec = _recorded_spec(proc, spec_for)
            assert spec is not None
            executor.adopt(spec, proc.instance, proc.pid, proc.pgid, proc.started_at_ms)
            submit(
                ProcessAdopted(
                    model=proc.model,
                    instance=proc.instance,
                    pid=proc.pid,
                    pgid=proc.pgid,
                    port=spec.port,
                    started_at_ms=proc.started_at_ms,
                    address=spec.proxy,
                )
            )
            kept_pids.add(proc.pid)
            adopted.append(proc.model)
            log.info("adopted %s (pid %d) from the previous run", proc.model, proc.pid)
            continue
        if proc.pid is not None and proc.pgid is not None and _alive_and_ours(proc):
            await kill_group(proc.pgid, 2000)
        submit(
            OrphanReaped(
                model=proc.model, pid=proc.pid or 0, pgid=proc.pgid, reason=reason or "unknown"
            )
        )
    for orphan in await asyncio.to_thread(find_tagged_processes, env_tag):
        if orphan.pid in kept_pids or orphan.pgid in kept_pids:
            continue
        if orphan.pgid is None:  # access denied reading its group: it cannot be signalled either
            log.warning(
                "pid %d (%s) carries this server's tag from a previous run but its process group "
                "cannot be read (access denied): it is left running",
                orphan.pid,
                orphan.model,
            )
            continue
        await kill_group(orphan.pgid, 2000)
        submit(
            OrphanReaped(
                model=orphan.model,
                pid=orphan.pid,
                pgid=orphan.pgid,
                reason="a process of a previous run that the log does not account for",
            )
        )
    return adopted


def _recorded_spec(
    proc: RecordedProcess, spec_for: Callable[[str], ProcessSpec | None]
) -> ProcessSpec | None:
    """The model's spec on the port it was recorded on (a moved `${PORT}` stays moved)."""
    spec = spec_for(proc.model)
    if spec is None or proc.port is None:
        return spec
    return spec.on_port(proc.port)


def _alive_and_ours(proc: RecordedProcess) -> bool:
    return proc.pid is not None and process_matches(proc.pid, proc.started_at_ms or 0)


async def _adoption_refusal(
    proc: RecordedProcess,
    spec_for: Callable[[str], ProcessSpec | None],
    fingerprint_for: Callable[[str], str | None],
    probe_timeout_ms: int,
) -> str | None:
    """None when the process can be adopted, else why not (recorded in OrphanReaped)."""
    if proc.state != "ready":
        return f"it was {proc.state} when the previous run ended"
    if proc.pid is None or proc.pgid is None or not proc.started_at_ms:
        return "the log has no pid and start time for it"
    if not process_matches(proc.pid, proc.started_at_ms):
        return "it is no longer running"
    if fingerprint_for(proc.model) != proc.fingerprint:
        return "its configuration changed"
    spec = _recorded_spec(proc, spec_for)
    if spec is None:
        return "it is no longer configured"
    if not spec.skips_health_check and not await probe_health(spec.health_url, probe_timeout_ms):
        return "it does not answer its health check"
    return None
