"""`replay explain`: why a decision was made, in plain sentences, with the state it was made in.

`explain(reader, seq)` finds the decision, the input that caused it (its `cause`), rebuilds the
reducer state just before that input, and words the reason: the eviction rule of a `SwapPlanned`,
the message and the numbers behind a `Reject`, the wait behind a `Dispatch`, the reason of a
`StartProcess`/`StopProcess`. The web UI serves `Explanation.to_json()` at
`GET /api/log/explain?seq=N` (`explain_log(path, seq)` opens and closes the log for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaswap_es.core.effects import idle_ttl_ms
from llamaswap_es.core.selectors import reservations
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.events.reader import LogReader
from llamaswap_es.events.types import (
    CancelTimer,
    Dispatch,
    Envelope,
    PlacementChosen,
    QueuePositions,
    Reject,
    SelectorChose,
    SetTimer,
    StartProcess,
    StopProcess,
    SwapPlanned,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.rebuild import state_before
from llamaswap_es.replay.render import local_time, state_json, state_text, summary
from llamaswap_es.replay.source import envelope_json, iter_all, log_facts, open_source, read_one
from llamaswap_es.replay.wording import input_sentence


@dataclass
class Explanation:
    seq: int
    decision: Envelope
    cause: Envelope
    sentences: list[str]
    state: SchedulerState
    """The reducer state just before the cause was reduced."""

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "decision": envelope_json(self.decision),
            "cause": envelope_json(self.cause),
            "explanation": self.text,
            "state_before": state_json(self.state),
        }

    def to_text(self) -> str:
        return "\n".join(
            [
                f"seq {self.seq} at {local_time(self.decision.ts_ms)}: {summary(self.decision)}",
                f"caused by seq {self.cause.seq}: {summary(self.cause)}",
                "why:",
                *(f"  {s}" for s in self.sentences),
                f"state before seq {self.cause.seq}:",
                state_text(self.state),
            ]
        )


def explain_log(path: str | Path, seq: int) -> dict[str, Any]:
    """The explanation of `seq` in the log at `path`, as JSON-ready data (for the web API)."""
    reader = open_source(path)
    try:
        return explain(reader, seq).to_json()
    finally:
        reader.close()


def explain(reader: LogReader, seq: int) -> Explanation:
    """Why the decision at `seq` was made. `ReplayError` for a bad or non-decision seq."""
    facts = log_facts(reader)
    facts.check_seq(seq)
    decision = read_one(reader, seq)
    if decision is None:
        raise ReplayError(f"--seq {seq}: no event with this seq in {facts.path}")
    if not decision.body.IS_DECISION:
        raise ReplayError(_not_a_decision(reader, decision))
    if decision.cause is None:
        raise ReplayError(
            f"seq {seq} ({decision.type}) names no cause: it was not written by the run loop"
        )
    cause = read_one(reader, decision.cause)
    if cause is None:
        raise ReplayError(
            f"seq {seq} was caused by seq {decision.cause}, which is not in {facts.path}"
        )
    state, _ = state_before(reader, facts, cause.seq)
    siblings = [
        e
        for e in iter_all(reader, cause.seq + 1, seq)
        if e.body.IS_DECISION and e.cause == cause.seq
    ]
    sentences = [input_sentence(cause)]
    sentences += _decision_sentences(decision, cause, state, siblings)
    return Explanation(seq, decision, cause, sentences, state)


def _not_a_decision(reader: LogReader, env: Envelope) -> str:
    group = []
    for e in iter_all(reader, env.seq + 1, env.seq + 200):
        if not e.body.IS_DECISION or e.cause != env.seq:
            break
        group.append(e.seq)
    where = (
        f"; its decisions are seqs {group[0]}..{group[-1]}"
        if group
        else "; it produced no decision"
    )
    return f"seq {env.seq} is a {env.type}, an input, not a decision{where}"


def _decision_sentences(
    env: Envelope, cause: Envelope, st: SchedulerState, siblings: list[Envelope]
) -> list[str]:
    body = env.body
    if isinstance(body, SwapPlanned):
        return _swap(body, st)
    if isinstance(body, StartProcess):
        proc = st.models.get(body.model)
        was = proc.state if proc is not None else "unknown"
        why = "a swap needs it" if body.reason == "swap" else f"reason: {body.reason or 'none'}"
        return [
            f"Model {body.model} was {was}, so its process is started as instance "
            f"{body.instance} ({why})."
        ]
    if isinstance(body, StopProcess):
        return _stop(body, st, siblings)
    if isinstance(body, PlacementChosen):
        return _placement(body)
    if isinstance(body, Dispatch):
        return _dispatch(body, env, cause, st)
    if isinstance(body, Reject):
        return _reject(body, cause, st)
    if isinstance(body, QueuePositions):
        order = ", ".join(
            f"{rid} #{n}" for rid, n in sorted(body.positions.items(), key=lambda p: p[1])
        )
        return [f"The queue changed; the positions are now: {order or 'empty'}."]
    if isinstance(body, SetTimer):
        return [
            f"Timer {body.timer_id} is armed for {local_time(body.at_ms)} "
            f"(purpose: {body.purpose or 'unnamed'}); it comes back as a TimerFired input."
        ]
    if isinstance(body, CancelTimer):
        return [f"Timer {body.timer_id} is cancelled: what it waited for no longer applies."]
    if isinstance(body, SelectorChose):
        return _selector_choice(body, st)
    return [f"The reducer decided {summary(env)}."]


def _selector_choice(body: SelectorChose, st: SchedulerState) -> list[str]:
    """The rule, and each target as the choice saw it (state and reservations)."""
    selector = st.config.selectors.get(body.selector) if st.config is not None else None
    strategy = selector.strategy if selector is not None else "?"
    out = [
        f"Selector {body.selector} ({strategy}) sends request {body.request_id} to "
        f"{body.target}, by the rule {body.rule}: {body.reason}."
    ]
    if selector is not None:
        reserved = reservations(st, body.selector)
        seen = []
        for target in selector.targets:
            proc = st.models.get(target.model)
            state = proc.state if proc is not None else "stopped" if target.model else "(peer)"
            seen.append(f"{target.name} {state}, {reserved.get(target.name, 0)} reserved")
        out.append(f"Its targets before this request: {'; '.join(seen)}.")
    return out


def _swap(body: SwapPlanned, st: SchedulerState) -> list[str]:
    who = f" for request {body.request_id}" if body.request_id else ""
    running = ", ".join(body.running) or "nothing"
    out = [f"A swap to {body.model} is planned{who}; running at the time: {running}."]
    if body.evict:
        out.append(
            f'By the rule "{body.rule}", {", ".join(body.evict)} cannot run beside '
            f"{body.model}, so {'it is' if len(body.evict) == 1 else 'they are'} stopped first "
            f"and {body.model} starts once {'it is' if len(body.evict) == 1 else 'they are'} gone."
        )
    else:
        out.append(f'By the rule "{body.rule}", nothing has to stop: {body.model} starts at once.')
    policy = st.config.policy if st.config is not None else "?"
    out.append(f"The scheduling policy in force is {policy}.")
    return out


def _stop(body: StopProcess, st: SchedulerState, siblings: list[Envelope]) -> list[str]:
    grace = f"It gets {body.grace_ms} ms to exit before its process group is killed."
    proc = st.models.get(body.model)
    if body.reason == "evict":
        swaps = [s.body for s in siblings if isinstance(s.body, SwapPlanned)]
        swap = next((s for s in swaps if body.model in s.evict), None)
        if swap is None:
            swap_of = [s for s in st.swaps_in_order() if body.model in s.evict]
            target = swap_of[0].model if swap_of else "another model"
            rule = ""
        else:
            target, rule = swap.model, f' (rule: "{swap.rule}")'
        lines = [f"Model {body.model} is evicted to make room for {target}{rule}."]
        placements = [s.body for s in siblings if isinstance(s.body, PlacementChosen)]
        placed = next((p for p in placements if body.model in p.evict), None)
        if placed is not None:
            lines.append(_memory_forced(body.model, placed))
        return [*lines, grace]
    if body.reason == "ttl" and proc is not None:
        idle = st.now_ms - proc.last_used_ms if st.now_ms else 0
        ttl_ms = idle_ttl_ms(proc)  # a request's ttl/keep_alive override, else the configured
        source = "" if proc.ttl_override_ms is None else " (set by a request's ttl/keep_alive)"
        return [
            f"Model {body.model} was idle since {local_time(proc.last_used_ms)}, longer than its "
            f"ttl of {ttl_ms} ms{source} (idle {max(idle, 0)} ms before this input), so "
            "it is unloaded.",
            grace,
        ]
    if body.reason == "hung":
        serving = proc.in_flight if proc is not None else 0
        return [
            f"Model {body.model} (instance {body.instance}) was declared hung: its health probes "
            f"went unanswered while it was serving {serving} request(s).",
            "It is killed at once, with no grace: a hung process cannot act on SIGTERM, and it "
            "would hold its swap group. Its requests in flight are answered with an error "
            f"naming {body.model}; the next request for it starts a fresh instance.",
        ]
    words = {
        "unload": "an unload was requested",
        "reload": "a configuration reload changed or removed it",
        "shutdown": "the server is shutting down",
    }
    return [f"Model {body.model} is stopped: {words.get(body.reason, body.reason)}.", grace]


def _memory_forced(model: str, placed: PlacementChosen) -> str:
    """The numbers that made placement by memory evict `model` (or say groups/matrix did)."""
    if model not in placed.freed_mb:
        return f"Placement by GPU memory also counted on the memory {model} gives back."
    free = ", ".join(
        f"GPU{d} had {placed.free_mb[d]:,} MiB free"
        for d in placed.devices
        if d < len(placed.free_mb)
    )
    return (
        f"GPU memory forced it: {placed.model} needs {placed.need_mb:,} MiB on each of "
        f"{', '.join(f'GPU{d}' for d in placed.devices)} ({placed.source} footprint) plus the "
        f"margin of {placed.margin_mb:,} MiB; {free} (counting models still starting), and "
        f"{model} gives back {placed.freed_mb[model]:,} MiB there."
    )


def _placement(body: PlacementChosen) -> list[str]:
    lines = [body.describe()]
    if body.evict:
        lines.append(
            "Models are evicted for memory idle ones first, by their placement priority (lower "
            "first), then the least recently used; then busy ones (the start waits for their "
            "requests to end). A persistent group's member or a model of unknown footprint or "
            "devices is never evicted for memory."
        )
    return lines


def _dispatch(body: Dispatch, env: Envelope, cause: Envelope, st: SchedulerState) -> list[str]:
    req = st.requests.get(body.request_id)
    proc = st.models.get(body.model)
    in_flight = proc.in_flight if proc is not None else 0
    limit = proc.schedule.concurrency_limit if proc is not None else 0
    if req is None:  # admitted by this very input: the fast path
        return [
            f"Model {body.model} was ready (instance {body.instance}) and nothing had to stop, "
            f"so request {body.request_id} is forwarded at once ({in_flight} already in flight, "
            f"concurrency limit {limit}); it did not wait."
        ]
    waited = env.ts_ms - req.received_ms
    where = (
        f"#{st.queue.index(req.request_id) + 1} in the queue"
        if req.request_id in st.queue
        else f"waiting on the swap to {body.model}"
        if body.model in st.swaps and req.request_id in st.swaps[body.model].waiters
        else req.phase
    )
    return [
        f"Request {body.request_id} had waited {waited} ms since {local_time(req.received_ms)} "
        f"({where}); this input let it through, so it is forwarded to {body.model} instance "
        f"{body.instance}."
    ]


def _reject(body: Reject, cause: Envelope, st: SchedulerState) -> list[str]:
    head = f'Request {body.request_id} is answered {body.status} ({body.code}): "{body.message}".'
    req = st.requests.get(body.request_id)
    if body.code == "concurrency_limit":
        model = req.model if req is not None else getattr(cause.body, "model", None)
        proc = st.models.get(model) if model else None
        if proc is not None:
            return [
                head,
                f"Model {model} already held {proc.reserved} admitted requests (queued, waiting "
                f"or in flight), its concurrency limit is {proc.schedule.concurrency_limit}.",
            ]
    if body.code == "model_not_found":
        known = ", ".join(sorted(m for m, p in st.models.items() if not p.retired)) or "none"
        return [head, f"The configuration in force has no such model (models: {known})."]
    if body.code == "start_failed" and req is not None:
        return [head, f"The swap to {req.model} that it waited for failed to start its process."]
    if body.code == "start_backoff":
        model = req.model if req is not None else getattr(cause.body, "model", None)
        proc = st.models.get(model) if model else None
        failed = proc.failed_starts if proc is not None else None
        if failed is not None and st.config is not None:
            times = "once" if failed.count == 1 else f"{failed.count} times in a row"
            lines = [
                head,
                f"Model {model} had failed to start ({times}); the start backoff "
                f"(startBackoffSeconds: {st.config.start_backoff_ms // 1000}, doubling up to "
                f"{st.config.start_backoff_max_ms // 1000}) left it alone until "
                f"{local_time(failed.retry_at_ms)}, so the request was answered without "
                "starting it.",
            ]
            if failed.permanent:
                lines.append(
                    "That failure is permanent (a command that cannot run, or the same exit and "
                    "output twice in a row), so the client was told not to retry."
                )
            return lines
    if body.code == "does_not_fit":
        why = (
            "It can never fit on this machine's GPUs, so the client is told not to retry."
            if body.permanent
            else "The memory it needs is held by what placement may not evict (a persistent "
            "group's member, a model of unknown footprint, another program); it may fit later."
        )
        return [head, why]
    if body.code == "shutting_down":
        return [head, "The server had begun shutting down, so nothing new is admitted."]
    if body.code == "queue_timeout" and req is not None and st.config is not None:
        where = st.queue.index(req.request_id) + 1 if req.request_id in st.queue else "?"
        return [
            head,
            f"It had been in the queue (#{where}) since {local_time(req.received_ms)}, longer "
            f"than queueTimeoutSeconds ({st.config.queue_timeout_ms} ms), and no swap was "
            f"loading {req.model} for it, so it was answered rather than kept waiting.",
        ]
    return [head]
