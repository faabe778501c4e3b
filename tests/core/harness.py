"""A small driver for reducer tests: feeds inputs with increasing seq and ts, checks the
invariants after every step, and renders decisions as short strings for table-driven tests.

Steps are written as llama-swap's scenario lines (spec/core.md §9), translated to our events:
    req r1 A [ttl=N|ttl=forever] [prio=N]  RequestReceived (TTL override in ms, own priority)
    done r1           RequestFinished (200)
    cancel r1         RequestCancelled           abandon r1   RequestAbandoned
    load A            LoadRequested              ready A      ProcessReady (current instance)
    stopped A         ProcessStopped (current)   exit A       ProcessExited (current)
    fail A [<error>] [kind=K] [exit=N] [signal=N] [out=words_with_underscores]
                      ProcessStartFailed         timer <id>   TimerFired
    gpu T/F [T/F …]   GpuMemorySampled (total/free MiB per device)
    fp A MB [source=S] [devices=N] [instance=N]  FootprintKnown (measured unless told)
    hung A [N]        ProcessHung (current instance, or instance N)
    unreachable r1 [N]  DispatchUnreachable (the instance r1 was dispatched to, or instance N)
    unload [A B] [grace=N]                       shutdown [N]
    sel r1 S          SelectorRequested (the client named selector S)
    selend r1         SelectionEnded (a peer served it, or it was refused before scheduling)
    reload <name>     ConfigApplied with the named config of the run
    boot              ServerStarted              adopt A N    ProcessAdopted(instance N)
A step may start with `@N ` to set the time to base + N ms (otherwise +1 ms per step).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from llamaswap_es.config.schedule import (
    GroupPlanner,
    GroupRule,
    MatrixPlanner,
    ModelSchedule,
    SchedulerConfig,
)
from llamaswap_es.core import new_state, reduce, scheduler_view
from llamaswap_es.core.invariants import RequestLedger, check_invariants
from llamaswap_es.events.types import (
    TTL_FOREVER,
    CancelTimer,
    ConfigApplied,
    Decision,
    Dispatch,
    DispatchUnreachable,
    Envelope,
    Event,
    FootprintKnown,
    GpuMemorySampled,
    LoadRequested,
    PlacementChosen,
    ProcessAdopted,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SelectionEnded,
    SelectorChose,
    SelectorRequested,
    ServerStarted,
    SetTimer,
    ShutdownRequested,
    StartProcess,
    StopProcess,
    SwapPlanned,
    TimerFired,
    UnloadRequested,
)

BASE_TS = 1_000_000
HUNG_ERROR = "3 health probes in a row got no answer within 5 s"


def models(*ids: str, **overrides: dict) -> dict[str, ModelSchedule]:
    """ModelSchedules with defaults; overrides per id, e.g. A={"ttl_ms": 300_000}."""
    return {m: ModelSchedule(model_id=m, **overrides.get(m, {})) for m in ids}


def groups_config(
    groups: Sequence[tuple[str, Sequence[str], dict]],
    schedules: dict[str, ModelSchedule] | None = None,
    **settings,
) -> SchedulerConfig:
    """A group-planner config; each group is (name, members, flags)."""
    rules = tuple(GroupRule(name=n, members=tuple(ms), **flags) for n, ms, flags in groups)
    all_models = [m for _, ms, _ in groups for m in ms]
    return SchedulerConfig(
        models=schedules or models(*all_models), planner=GroupPlanner(groups=rules), **settings
    )


def classic(*ids: str, schedules: dict[str, ModelSchedule] | None = None, **settings):
    """One swap+exclusive group: llama-swap's "one model at a time" (the §9 default)."""
    return groups_config([("g", ids, {})], schedules, **settings)


def matrix_config(
    sets: Sequence[tuple[str, str]],
    model_ids: Iterable[str],
    vars_: Sequence[tuple[str, str]] = (),
    costs: Sequence[tuple[str, int]] = (),
    **settings,
) -> SchedulerConfig:
    return SchedulerConfig(
        models=models(*model_ids),
        planner=MatrixPlanner(sets=tuple(sets), vars=tuple(vars_), evict_costs=tuple(costs)),
        **settings,
    )


def render(decision: Decision) -> str:
    """A decision as a short line (the vocabulary of the scenario tables)."""
    if isinstance(decision, Dispatch):
        return f"dispatch {decision.request_id} {decision.model}#{decision.instance}"
    if isinstance(decision, Reject):
        line = f"reject {decision.request_id} {decision.status} {decision.code}"
        if decision.retry_after_ms is not None:
            line += f" retry={decision.retry_after_ms}"
        return line + (" permanent" if decision.permanent else "")
    if isinstance(decision, SwapPlanned):
        return f"plan {decision.model} [{','.join(decision.evict)}]"
    if isinstance(decision, StartProcess):
        reason = "" if decision.reason == "swap" else f" {decision.reason}"
        on = f" on {','.join(map(str, decision.devices))}" if decision.devices else ""
        return f"start {decision.model}#{decision.instance}{reason}{on}"
    if isinstance(decision, PlacementChosen):
        devices = ",".join(map(str, decision.devices))
        return f"place {decision.model} on {devices} [{','.join(decision.evict)}]"
    if isinstance(decision, StopProcess):
        return f"stop {decision.model}#{decision.instance} {decision.reason} {decision.grace_ms}"
    if isinstance(decision, SetTimer):
        return f"timer {decision.timer_id} @{decision.at_ms - BASE_TS}"
    if isinstance(decision, CancelTimer):
        return f"cancel-timer {decision.timer_id}"
    if isinstance(decision, SelectorChose):
        return f"chose {decision.request_id} {decision.target} {decision.rule}"
    raise AssertionError(f"unexpected decision {decision!r}")


class Run:
    """One reducer run: feed steps, get rendered decisions, invariants checked every step."""

    def __init__(self, config: SchedulerConfig, configs: dict[str, SchedulerConfig] | None = None):
        self.state = new_state()
        self.seq = 0
        self.ts = BASE_TS
        self.configs = {"initial": config, **(configs or {})}
        self.inputs: list[Envelope] = []
        self.outputs: list[list[Decision]] = []
        self.ledger = RequestLedger()
        self.feed(ConfigApplied(config_hash="initial", schedule=config.to_dict()))

    def feed(self, body: Event, at: int | None = None) -> list[Decision]:
        self.seq += 1
        self.ts = BASE_TS + at if at is not None else self.ts + 1
        env = Envelope(body=body, ts_ms=self.ts, seq=self.seq)
        self.inputs.append(env)
        self.state, out = reduce(self.state, env)
        self.outputs.append(out)
        check_invariants(self.state, out)
        self.ledger.observe(body, out, self.state)
        return out

    def step(self, line: str) -> list[str]:
        at = None
        if line.startswith("@"):
            stamp, line = line.split(" ", 1)
            at = int(stamp[1:])
        before = list(self.state.queue)
        lines = [render(d) for d in self.feed(self.parse(line), at)]
        return lines + self.positions_told(before)

    def positions_told(self, before: list[str]) -> list[str]:
        """`pos r:N …`: what the run loop tells waiting clients after this step, read from the
        committed view as it does (no decision since core-4); only when the queue changed."""
        if self.state.queue == before or not self.state.queue:
            return []
        queued = [v for v in scheduler_view(self.state).queue if v.position is not None]
        return ["pos " + " ".join(f"{v.request_id}:{v.position}" for v in queued)]

    def instance(self, model: str) -> int:
        return self.state.models[model].instance

    def parse(self, line: str) -> Event:
        verb, *args = line.split()
        if verb == "req":
            ttl = [a.split("=", 1)[1] for a in args[2:] if a.startswith("ttl=")]
            override = None if not ttl else TTL_FOREVER if ttl[0] == "forever" else int(ttl[0])
            prio = [int(a.split("=", 1)[1]) for a in args[2:] if a.startswith("prio=")]
            return RequestReceived(
                request_id=args[0],
                model=args[1],
                ttl_override_ms=override,
                priority=prio[0] if prio else None,
            )
        if verb == "done":
            req = self.state.requests.get(args[0])
            return RequestFinished(request_id=args[0], model=req.model if req else "?", status=200)
        if verb == "cancel":
            return RequestCancelled(request_id=args[0])
        if verb == "abandon":
            return RequestAbandoned(request_id=args[0])
        if verb == "load":
            return LoadRequested(model=args[0])
        if verb == "ready":
            return ProcessReady(model=args[0], instance=self.instance(args[0]))
        if verb == "stopped":
            return ProcessStopped(model=args[0], instance=self.instance(args[0]))
        if verb == "exit":
            return ProcessExited(model=args[0], instance=self.instance(args[0]), exit_code=1)
        if verb == "fail":
            fields = dict(a.split("=", 1) for a in args[1:] if "=" in a)
            error = " ".join(a for a in args[1:] if "=" not in a)
            return ProcessStartFailed(
                model=args[0],
                instance=self.instance(args[0]),
                error=error or "health check timed out after 120s",
                kind=fields.get("kind", ""),
                exit_code=int(fields["exit"]) if "exit" in fields else None,
                signal=int(fields["signal"]) if "signal" in fields else None,
                output_tail=fields.get("out", "").replace("_", " "),
            )
        if verb == "hung":
            instance = int(args[1]) if len(args) > 1 else self.instance(args[0])
            return ProcessHung(model=args[0], instance=instance, failures=3, error=HUNG_ERROR)
        if verb == "unreachable":
            req = self.state.requests.get(args[0])
            model = req.model if req else "?"
            instance = int(args[1]) if len(args) > 1 else req.instance if req else 0
            return DispatchUnreachable(
                request_id=args[0], model=model, instance=instance, error="connection refused"
            )
        if verb == "timer":
            return TimerFired(timer_id=args[0])
        if verb == "unload":
            grace = [int(a.split("=")[1]) for a in args if a.startswith("grace=")]
            names = tuple(a for a in args if not a.startswith("grace="))
            return UnloadRequested(models=names, grace_ms=grace[0] if grace else None)
        if verb == "shutdown":
            return ShutdownRequested(grace_ms=int(args[0]) if args else None)
        if verb == "sel":
            return SelectorRequested(request_id=args[0], selector=args[1])
        if verb == "selend":
            return SelectionEnded(request_id=args[0])
        if verb == "reload":
            config = self.configs[args[0]]
            return ConfigApplied(config_hash=args[0], schedule=config.to_dict(), reason="reload")
        if verb == "boot":
            return ServerStarted(boot_id=f"b{self.seq}", pid=1, version="test")
        if verb == "adopt":
            return ProcessAdopted(model=args[0], instance=int(args[1]), pid=1, pgid=1)
        if verb == "gpu":  # gpu TOTAL/FREE ... (MiB, one per device)
            pairs = [tuple(int(x) for x in a.split("/")) for a in args]
            return GpuMemorySampled(
                uuids=tuple(f"GPU-{i}" for i in range(len(pairs))),
                names=tuple("fake" for _ in pairs),
                total_mb=tuple(t for t, _ in pairs),
                free_mb=tuple(f for _, f in pairs),
            )
        if verb == "fp":  # fp A MB [source=S] [devices=N]
            fields = dict(a.split("=", 1) for a in args[2:])
            return FootprintKnown(
                model=args[0],
                mb=int(args[1]),
                source=fields.get("source", "measured"),
                devices=int(fields.get("devices", 1)),
                instance=int(fields.get("instance", 0)),
            )
        raise AssertionError(f"unknown step {line!r}")


def bring_up(run: Run, *ids: str) -> None:
    """Make models ready as a precondition (llama-swap's `SET m:ready`), via load + ready."""
    for model in ids:
        run.step(f"load {model}")
        for other, proc in sorted(run.state.models.items()):
            if proc.state == "stopping":
                run.step(f"stopped {other}")
        run.step(f"ready {model}")
        assert run.state.models[model].state == "ready", f"{model} did not come up"


def play(run: Run, steps: Sequence[tuple[str, object]]) -> None:
    """Feed each step and compare its rendered decisions (`...` skips the comparison)."""
    for index, (line, expected) in enumerate(steps):
        got = run.step(line)
        if expected is ...:
            continue
        want = [] if expected == "" else [expected] if isinstance(expected, str) else expected
        assert got == list(want), f"step {index} {line!r}: got {got}, want {list(want)}"


def with_limit(config: SchedulerConfig, model: str, limit: int) -> SchedulerConfig:
    schedules = dict(config.models)
    schedules[model] = replace(schedules[model], concurrency_limit=limit)
    return replace(config, models=schedules)


class StubPlanner:
    """llama-swap's test stub Swapper: a fixed evict list per target, [] for the others."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = {k: tuple(v) for k, v in table.items()}

    def plan(self, target: str, running: tuple[str, ...]):
        from llamaswap_es.core.eviction import EvictionPlan

        return EvictionPlan(self.table.get(target, ()), "stub")


def use_stub(run: Run, table: dict[str, Sequence[str]]) -> Run:
    """Install a stub planner (a test seam: the state's planner is derived, not snapshotted)."""
    state = run.state
    assert state.config is not None
    state.install(state.config, state.policy, StubPlanner(table))
    return run
