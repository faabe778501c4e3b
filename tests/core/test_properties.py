"""Hypothesis stateful tests: random but realistic input sequences over several configs.

After every step the invariants hold (the harness checks `check_invariants` and the request
ledger). At the end of each example, replaying the recorded inputs into a fresh state gives the
identical decisions, and a snapshot taken halfway plus the tail gives the same decisions and the
same final digest as the full run. Process events respect what an executor could report: ready
or start-failed for a starting instance, stopped for a stopping one, a crash or a hang for a
ready one, plus the odd stale event from an older instance; timers fire at or after their time.
Failed starts come in every kind (a command that cannot run, an exit with one of two outputs, a
timeout), so the start backoff opens, grows, expires and is reset along the way.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from llamaswap_es.config.schedule import PlacementRules, SelectorSchedule, SelectorTarget
from llamaswap_es.core import digest, new_state, reduce, restore, scheduler_view, snapshot
from llamaswap_es.core.views import ViewPublisher
from llamaswap_es.events.types import (
    FootprintKnown,
    GpuMemorySampled,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    SelectorChose,
    TimerFired,
)
from tests.core.harness import Run, classic, groups_config, matrix_config, models

MODELS = ("A", "B", "C", "P")


def _schedules(**extra):
    return models(
        *MODELS,
        A={"ttl_ms": 4000, "concurrency_limit": 3, "fingerprint": "a1"},
        B={"concurrency_limit": 2, "priority": 5, "unload_timeout_ms": 3000},
        C={"ttl_ms": 1500},
        **extra,
    )


FOOTPRINTS = {"A": (14_000, 1), "B": (24_000, 2), "C": (9_000, 1), "P": (6_000, 1)}
"""Declared footprints of the placement config: (MiB, devices); B spans two GPUs."""
GPUS = (16_000, 16_000, 12_000)


def _placed(schedules):
    return {
        m: replace(s, footprint_mb=FOOTPRINTS[m][0], footprint_devices=FOOTPRINTS[m][1])
        for m, s in schedules.items()
    }

SELECTORS = {
    "spill": SelectorSchedule(
        "spill", "spillover", (SelectorTarget("B", "B"), SelectorTarget("C", "C")), 2
    ),
    "mixed": SelectorSchedule(
        "mixed", "spillover", (SelectorTarget("A", "A"), SelectorTarget("peer/x", "")), 1
    ),
    "warm": SelectorSchedule("warm", "warm", (SelectorTarget("C", "C"), SelectorTarget("B", "B"))),
}
"""Selectors every config has: the reducer chooses for them (`core.selectors`)."""

CONFIGS = {
    "classic": classic(*MODELS, schedules=_schedules()),
    "groups": groups_config(
        [
            ("g1", ["A"], {}),
            ("g2", ["B", "C"], {"swap": False, "exclusive": False}),
            ("g3", ["P"], {"exclusive": False, "persistent": True}),
        ],
        _schedules(),
        idle_model="C",
        start_backoff_ms=700,
        start_backoff_max_ms=2000,
    ),
    "matrix": replace(
        matrix_config(
            [("ab", "A & B"), ("cp", "C | (C & P)"), ("big", "+ab & P")], MODELS, costs=[("A", 3)]
        ),
        models=_schedules(),
        idle_model="B",
        start_backoff_ms=1000,
        start_backoff_max_ms=1000,
    ),
    "serial": classic(*MODELS, schedules=_schedules(), policy="serial", idle_model="B"),
    "bounded": classic(
        *MODELS,
        schedules=_schedules(),
        starvation_bound_ms=3000,
        min_resident_ms=2000,
        queue_timeout_ms=2500,
    ),
    "backoff": classic(
        *MODELS, schedules=_schedules(), start_backoff_ms=1000, start_backoff_max_ms=4000
    ),
    "placement": groups_config(
        [
            ("g1", ["A", "B", "C"], {"swap": False, "exclusive": False}),
            ("g3", ["P"], {"exclusive": False, "persistent": True}),
        ],
        _placed(_schedules()),
        placement=PlacementRules(mode="memory", margin_mb=1000),
        start_backoff_ms=700,
        start_backoff_max_ms=2000,
    ),
    "serial_backoff": classic(
        *MODELS,
        schedules=_schedules(),
        policy="serial",
        start_backoff_ms=500,
        start_backoff_max_ms=8000,
        queue_timeout_ms=3000,
    ),
}


CONFIGS = {name: replace(config, selectors=SELECTORS) for name, config in CONFIGS.items()}


def _variants(base):
    changed = dict(base.models)
    changed["A"] = replace(changed["A"], fingerprint="a2")
    del changed["C"]
    other_policy = "serial" if base.policy == "fifo" else "fifo"
    return {
        "same": base,
        "changed": replace(base, models=changed),
        "policy": replace(base, policy=other_policy),
        "backoff": replace(
            base,
            start_backoff_ms=0 if base.start_backoff_ms else 1500,
            start_backoff_max_ms=0 if base.start_backoff_ms else 3000,
        ),
    }


FAILURES = (
    "ready",
    "kind=exited exit=1 out=no_model_file",
    "kind=exited exit=1 out=out_of_memory",
    "kind=exited signal=9",
    "kind=command",
    "kind=command",
    "kind=timeout",
    "",
)
"""Outcomes of a start: ready (weighted up), or a failure of each kind the executor reports."""


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run: Run | None = None
        self.next_id = 0
        self.views = ViewPublisher()

    @initialize(name=st.sampled_from(sorted(CONFIGS)))
    def configure(self, name: str) -> None:
        base = CONFIGS[name]
        self.run = Run(base, _variants(base))
        if base.placement.active:  # the sampler records the devices at start-up
            self.gpu_sample(0, 0)

    # ------------------------------------------------------------------ helpers

    def _at(self, advance: int) -> int:
        return self.run.ts - 1_000_000 + advance

    def _procs(self, *states: str) -> list[str]:
        return sorted(m for m, p in self.run.state.models.items() if p.state in states)

    def _failed(self) -> list[str]:
        return sorted(m for m, p in self.run.state.models.items() if p.failed_starts is not None)

    def _requests(self, dispatched: bool) -> list[str]:
        return sorted(
            r
            for r, q in self.run.state.requests.items()
            if not q.is_load and (q.phase == "dispatched") == dispatched
        )

    # ------------------------------------------------------------------ clients

    @rule(
        model=st.sampled_from((*MODELS, "Q")),
        advance=st.integers(0, 1500),
        ttl=st.sampled_from(("", "", "", " ttl=0", " ttl=700", " ttl=forever")),
    )
    def request(self, model: str, advance: int, ttl: str) -> None:
        self.next_id += 1
        self.run.step(f"@{self._at(advance)} req r{self.next_id} {model}{ttl}")

    @rule(selector=st.sampled_from(sorted(SELECTORS)), advance=st.integers(0, 1500))
    def selector_request(self, selector: str, advance: int) -> None:
        """A client names a selector; the handler goes on as a request for the chosen model,
        or holds a peer's model until `peer_answered`."""
        self.next_id += 1
        rid = f"r{self.next_id}"
        out = self.run.feed(self.run.parse(f"sel {rid} {selector}"), self._at(advance))
        chose = [d for d in out if isinstance(d, SelectorChose)]
        if chose and chose[0].model:
            self.run.step(f"req {rid} {chose[0].model}")

    @precondition(lambda self: self.run.state.selections)
    @rule(data=st.data())
    def peer_answered(self, data) -> None:
        rid = data.draw(st.sampled_from(sorted(self.run.state.selections)))
        self.run.step(f"selend {rid}")

    @precondition(lambda self: self._failed())
    @rule(data=st.data(), advance=st.integers(0, 2500))
    def retry_failed_model(self, data, advance: int) -> None:
        """A client that keeps asking for a model whose start failed (inside or after its
        backoff window)."""
        model = data.draw(st.sampled_from(self._failed()))
        self.next_id += 1
        self.run.step(f"@{self._at(advance)} req r{self.next_id} {model}")

    @precondition(lambda self: self._requests(dispatched=True))
    @rule(data=st.data(), advance=st.integers(0, 3000))
    def finish(self, data, advance: int) -> None:
        rid = data.draw(st.sampled_from(self._requests(dispatched=True)))
        self.run.step(f"@{self._at(advance)} done {rid}")

    @precondition(lambda self: self._requests(dispatched=True))
    @rule(data=st.data(), stale=st.booleans())
    def unreachable(self, data, stale: bool) -> None:
        """The handler could not reach its instance (or reports an earlier grant: ignored)."""
        rid = data.draw(st.sampled_from(self._requests(dispatched=True)))
        if stale:
            instance = self.run.state.requests[rid].instance - 1
            assert self.run.step(f"unreachable {rid} {instance}") == []
        else:
            self.run.step(f"unreachable {rid}")

    @precondition(lambda self: self.run.state.requests)
    @rule(data=st.data(), verb=st.sampled_from(("cancel", "cancel", "abandon")))
    def leave(self, data, verb: str) -> None:
        rid = data.draw(st.sampled_from(sorted(self.run.state.requests)))
        self.run.step(f"{verb} {rid}")

    @rule(model=st.sampled_from(MODELS))
    def load(self, model: str) -> None:
        self.run.step(f"load {model}")

    # ------------------------------------------------------------------ executor

    @precondition(lambda self: self._procs("starting"))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(FAILURES[:1] * 3 + FAILURES),
        advance=st.integers(0, 4000),
    )
    def start_result(self, data, outcome: str, advance: int) -> None:
        model = data.draw(st.sampled_from(self._procs("starting")))
        step = f"ready {model}" if outcome == "ready" else f"fail {model} {outcome}".rstrip()
        self.run.step(f"@{self._at(advance)} {step}")

    @precondition(lambda self: self._procs("stopping"))
    @rule(data=st.data(), advance=st.integers(0, 2000))
    def stop_done(self, data, advance: int) -> None:
        model = data.draw(st.sampled_from(self._procs("stopping")))
        self.run.step(f"@{self._at(advance)} stopped {model}")

    @precondition(lambda self: self._procs("ready"))
    @rule(data=st.data())
    def crash(self, data) -> None:
        model = data.draw(st.sampled_from(self._procs("ready")))
        self.run.step(f"exit {model}")

    @precondition(lambda self: self._procs("ready", "stopping"))
    @rule(data=st.data())
    def hang(self, data) -> None:
        """The executor reports a hung instance only while it serves; the reducer may already
        have decided a stop that has not reached the executor yet (stopping)."""
        model = data.draw(st.sampled_from(self._procs("ready", "stopping")))
        self.run.step(f"hung {model}")

    @precondition(lambda self: any(p.instance > 1 for p in self.run.state.models.values()))
    @rule(
        data=st.data(),
        kind=st.sampled_from((ProcessReady, ProcessStopped, ProcessExited, ProcessHung)),
    )
    def stale_event(self, data, kind) -> None:
        candidates = sorted(m for m, p in self.run.state.models.items() if p.instance > 1)
        model = data.draw(st.sampled_from(candidates))
        old = self.run.state.models[model].instance - 1
        if kind is ProcessHung:
            event = ProcessHung(model=model, instance=old, failures=3, error="no answer")
        else:
            event = kind(model=model, instance=old)
        assert self.run.feed(event) == []
        assert self.run.feed(ProcessStartFailed(model=model, instance=old, error="x")) == []

    @precondition(lambda self: self.run.state.timers)
    @rule(data=st.data())
    def fire_timer(self, data) -> None:
        timer_id = data.draw(st.sampled_from(sorted(self.run.state.timers)))
        at = max(self.run.ts, self.run.state.timers[timer_id])
        self.run.feed(TimerFired(timer_id=timer_id), at=at - 1_000_000)

    # ------------------------------------------------------------------ GPU memory facts

    @rule(other=st.sampled_from((0, 0, 1500, 6000)), advance=st.integers(0, 1500))
    def gpu_sample(self, other: int, advance: int) -> None:
        """A sample as NVML would show it: each ready or stopping process's footprint on its
        devices (a stopping process holds its memory until it exits), plus `other` MiB held by
        some other program on every device."""
        free = [total - other for total in GPUS]
        for model, proc in self.run.state.models.items():
            if proc.state in ("ready", "stopping") and proc.devices and model in FOOTPRINTS:
                mb, span = FOOTPRINTS[model]
                for d in proc.devices:
                    free[d] -= -(-mb // span)
        event = GpuMemorySampled(
            uuids=tuple(f"GPU-{i}" for i in range(len(GPUS))),
            names=("fake",) * len(GPUS),
            total_mb=GPUS,
            free_mb=tuple(max(0, f) for f in free),
        )
        self.run.feed(event, at=self._at(advance))

    @rule(model=st.sampled_from(MODELS), mb=st.integers(1, 90_000))
    def footprint_fact(self, model: str, mb: int) -> None:
        """An estimate (never better than the declared size) or a measurement equal to it: the
        invariants assume a placed model's footprint does not grow."""
        self.run.feed(FootprintKnown(model=model, source="estimated", mb=mb))
        declared, span = FOOTPRINTS[model]
        self.run.feed(FootprintKnown(model=model, source="measured", mb=declared, devices=span))

    # ------------------------------------------------------------------ operators

    @rule(names=st.lists(st.sampled_from(MODELS), max_size=2, unique=True))
    def unload(self, names: list[str]) -> None:
        self.run.step("unload " + " ".join(names))

    @rule(variant=st.sampled_from(("same", "changed", "policy", "backoff")))
    def reload(self, variant: str) -> None:
        self.run.step(f"reload {variant}")

    @precondition(lambda self: len(self.run.inputs) > 30)
    @rule(grace=st.sampled_from(("", " 500")))
    def shutdown(self, grace: str) -> None:
        self.run.step("shutdown" + grace)

    @rule(adopt=st.lists(st.sampled_from(MODELS), max_size=2, unique=True))
    def reboot(self, adopt: list[str]) -> None:
        self.run.step("boot")
        for model in adopt:
            if model in self.run.state.models:
                self.run.step(f"adopt {model} {self.run.state.models[model].instance}")

    @invariant()
    def the_published_view_is_the_fresh_view(self) -> None:
        """The run loop's `ViewPublisher` reuses unchanged models' views between commits: after
        every step it must give exactly what a fresh `scheduler_view` gives."""
        if self.run is not None:
            assert self.views(self.run.state) == scheduler_view(self.run.state)

    @invariant()
    def snapshot_round_trips(self) -> None:
        if self.run is not None and len(self.run.inputs) % 7 == 0:
            state = self.run.state
            assert digest(restore(snapshot(state))) == digest(state)

    def teardown(self) -> None:
        if self.run is None or len(self.run.inputs) != len(self.run.outputs):
            return  # a step raised: that failure is the one to report
        inputs, outputs = self.run.inputs, self.run.outputs
        state = new_state()
        for env, expected in zip(inputs, outputs, strict=True):
            state, got = reduce(state, env)
            assert got == expected, f"replay diverged at seq {env.seq} ({env.type})"
        final = digest(state)
        assert final == digest(self.run.state)
        half = len(inputs) // 2
        state = new_state()
        for env in inputs[:half]:
            state, _ = reduce(state, env)
        state = restore(snapshot(state))
        for env, expected in zip(inputs[half:], outputs[half:], strict=True):
            state, got = reduce(state, env)
            assert got == expected, f"snapshot + tail diverged at seq {env.seq} ({env.type})"
        assert digest(state) == final


SchedulerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestScheduler = SchedulerMachine.TestCase
