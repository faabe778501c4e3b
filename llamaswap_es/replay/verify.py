"""`replay verify`: re-run the reducer over the recorded inputs and compare every decision.

The run loop writes each input followed by the decisions its reduction produced, each with
`cause` = the input's seq. Verification reduces each input again and compares the recomputed
decisions with the recorded ones *as data* (dataclass equality, in order), input by input. The
first difference is reported with its exact seq, the events around it and the state the reducer
was in before the input, which is what a bug report needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import llamaswap_es
from llamaswap_es.core import REDUCER_VERSION, reduce
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.events.reader import LogReader
from llamaswap_es.events.types import Decision, Envelope, ServerStarted
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.rebuild import advance, later_origin, origin_before, state_before
from llamaswap_es.replay.render import envelope_line, state_text, summary
from llamaswap_es.replay.source import LogFacts, iter_all, log_facts

CONTEXT_ROWS = 6
"""Rows shown on each side of a divergence."""


@dataclass
class Divergence:
    seq: int
    """The seq to look at: the first recorded decision that differs (or is extra), or for a
    decision the log lacks, the last row of its input's group."""
    kind: str
    """differs, missing (the reducer now decides more), extra (the log holds more), orphan (a
    decision whose cause is not the input before it)."""
    cause: Envelope | None
    recorded: list[Envelope]
    recomputed: list[Decision]
    index: int
    around: list[Envelope] = field(default_factory=list)
    state_before: SchedulerState | None = None


@dataclass
class VerifyReport:
    path: str
    from_seq: int
    to_seq: int
    origin: str
    inputs: int = 0
    decisions: int = 0
    derived: int = 0
    """Recorded decisions of a derived type (`Decision.DERIVED`), skipped: not compared."""
    notes: list[str] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def to_text(self) -> str:
        head = (
            f"verify {self.path}, seqs {self.from_seq}..{self.to_seq}: replayed {self.origin} "
            f"with reducer {REDUCER_VERSION}"
        )
        lines = [head, *(f"note: {n}" for n in self.notes)]
        if self.divergence is None:
            lines.append(
                f"OK: {self.inputs} inputs reduced, all {self.decisions} recorded decisions "
                "are identical"
                + (
                    f" ({self.derived} of a derived type, e.g. QueuePositions, not compared)"
                    if self.derived
                    else ""
                )
            )
            return "\n".join(lines)
        lines += _divergence_text(self.divergence)
        return "\n".join(lines)


def verify(
    reader: LogReader, from_seq: int | None = None, to_seq: int | None = None
) -> VerifyReport:
    """Compare every recorded decision in `from_seq..to_seq` with a fresh reduction."""
    facts = log_facts(reader)
    if facts.empty:
        raise ReplayError(f"{facts.path}: the log holds no events, there is nothing to verify")
    lo, hi = facts.window(from_seq, to_seq)
    skipped_note = None
    try:
        origin = origin_before(reader, facts, lo)
    except ReplayError:
        # A pruned log whose start no snapshot covers (after an upgrade of the reducer): verify
        # from the oldest snapshot this code can restore, when the range was not asked for.
        later = None if from_seq is not None else later_origin(reader, facts, hi)
        if later is None or later.snapshot_seq is None:
            raise
        skipped_note = (
            f"seqs {lo}..{later.snapshot_seq} are not verified: no snapshot of reducer "
            f"{REDUCER_VERSION} covers the start of this (pruned) log, so they cannot be replayed"
        )
        origin, lo = later, later.next_seq
    report = VerifyReport(str(facts.path), lo, hi, origin.note)
    if skipped_note:
        report.notes.append(skipped_note)
    report.notes += _version_notes(facts)
    state = advance(origin, reader, lo)
    cause: Envelope | None = None
    recomputed: list[Decision] = []
    recorded: list[Envelope] = []
    versions: set[str] = set()
    for env in iter_all(reader, lo, hi):
        body = env.body
        if body.IS_DECISION:
            if body.DERIVED:  # e.g. QueuePositions of a core-3 log: derived, not compared
                report.derived += 1
                continue
            if cause is not None and env.cause == cause.seq:
                recorded.append(env)
                report.decisions += 1
                continue
            if env.cause is not None and env.cause < lo and cause is None:
                continue  # decided by an input before the range
            report.divergence = Divergence(env.seq, "orphan", cause, [env], [], 0)
            break
        if cause is not None:
            report.divergence = _compare(cause, recorded, recomputed)
            if report.divergence is not None:
                break
        if isinstance(body, ServerStarted):
            versions.add(body.version)
        state, recomputed = reduce(state, env)
        cause, recorded = env, []
        report.inputs += 1
    else:
        if cause is not None:
            recorded += _tail_of_group(reader, cause.seq, hi)
            report.divergence = _compare(cause, recorded, recomputed)
    other = sorted(v for v in versions if v != llamaswap_es.__version__)
    if other:
        report.notes.append(
            f"the log was written by llamaswap-es {', '.join(other)}; this is "
            f"{llamaswap_es.__version__}"
        )
    if report.divergence is not None:
        _add_context(reader, facts, report.divergence)
        if other or any(v != REDUCER_VERSION for v in facts.snapshot_versions):
            report.notes.append(
                "the log comes (at least partly) from another version: the divergence may be an "
                "intended change of the reducer rather than a bug"
            )
    return report


def _version_notes(facts: LogFacts) -> list[str]:
    other = [v for v in facts.snapshot_versions if v != REDUCER_VERSION]
    if not other:
        return []
    return [
        f"this log holds snapshots of reducer version {', '.join(other)} (this code is "
        f"{REDUCER_VERSION}): it is verified all the same, and those snapshots are not used"
    ]


def _tail_of_group(reader: LogReader, cause_seq: int, hi: int) -> list[Envelope]:
    """Decisions of the last input that lie beyond `--to`: its group is compared whole."""
    tail = []
    for env in iter_all(reader, hi + 1, hi + 10_000):
        if env.body.IS_DECISION and env.body.DERIVED:
            continue
        if not env.body.IS_DECISION or env.cause != cause_seq:
            break
        tail.append(env)
    return tail


def _compare(
    cause: Envelope, recorded: list[Envelope], recomputed: list[Decision]
) -> Divergence | None:
    for i, (old, new) in enumerate(zip(recorded, recomputed, strict=False)):
        if old.body == new:
            continue
        if i + 1 < len(recomputed) and recomputed[i + 1] == old.body:
            before = recorded[i - 1].seq if i else cause.seq
            return Divergence(before, "missing", cause, recorded, recomputed, i)
        if i + 1 < len(recorded) and recorded[i + 1].body == new:
            return Divergence(old.seq, "extra", cause, recorded, recomputed, i)
        return Divergence(old.seq, "differs", cause, recorded, recomputed, i)
    if len(recorded) == len(recomputed):
        return None
    n = min(len(recorded), len(recomputed))
    if len(recorded) > n:
        return Divergence(recorded[n].seq, "extra", cause, recorded, recomputed, n)
    last = recorded[-1].seq if recorded else cause.seq
    return Divergence(last, "missing", cause, recorded, recomputed, n)


def _add_context(reader: LogReader, facts: LogFacts, div: Divergence) -> None:
    lo = max(facts.first_seq, div.seq - CONTEXT_ROWS)
    div.around = list(iter_all(reader, lo, div.seq + CONTEXT_ROWS))
    if div.cause is not None:
        div.state_before, _ = state_before(reader, facts, div.cause.seq)


def _divergence_text(div: Divergence) -> list[str]:
    cause = div.cause
    lines = [f"DIVERGENCE at seq {div.seq}: " + _headline(div)]
    if cause is not None:
        lines.append(f"  input:        seq {cause.seq}  {summary(cause)}")
    if div.kind == "differs":
        old, new = div.recorded[div.index], div.recomputed[div.index]
        lines.append(f"  recorded:     seq {old.seq}  {summary(old)}")
        lines.append(f"  reducer now:  {_decision_summary(new)}")
        lines += [f"    {d}" for d in _field_diff(old.body, new)]
    elif div.kind == "missing":
        new = div.recomputed[div.index]
        lines.append(f"  reducer now also decides: {_decision_summary(new)}")
    elif div.kind == "extra":
        old = div.recorded[div.index]
        lines.append(f"  recorded, not decided now: seq {old.seq}  {summary(old)}")
    else:
        lines.append(f"  recorded:     {summary(div.recorded[0])}  (cause {div.recorded[0].cause})")
    if div.recomputed or div.kind != "orphan":
        lines.append(
            f"  the reducer now decides {len(div.recomputed)}, the log holds "
            f"{len(div.recorded)} decision(s) for this input:"
        )
        lines += [f"    now: {_decision_summary(d)}" for d in div.recomputed]
    lines.append("events around it:")
    lines += [envelope_line(e, ">" if e.seq == div.seq else " ") for e in div.around]
    if div.state_before is not None and cause is not None:
        lines.append(f"state before seq {cause.seq}:")
        lines.append(state_text(div.state_before))
    return lines


def _headline(div: Divergence) -> str:
    if div.kind == "differs":
        return "the recorded decision differs from what the reducer decides now"
    if div.kind == "missing":
        return "the reducer now makes a decision the log does not hold"
    if div.kind == "extra":
        return "the log holds a decision the reducer no longer makes"
    return "a recorded decision does not follow the input it names as its cause"


def _decision_summary(decision: Decision) -> str:
    return summary(Envelope(body=decision, ts_ms=0))


def _field_diff(old: object, new: object) -> list[str]:
    if type(old) is not type(new) or not dataclasses.is_dataclass(old):
        return [f"type: {type(old).__name__} != {type(new).__name__}"]
    out = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out.append(f"{f.name}: recorded {a!r}, now {b!r}")
    return out
