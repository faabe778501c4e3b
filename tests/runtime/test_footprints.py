"""GPU memory facts entering the log through the run loop (issue 18, the facts side).

A real service (config, log, reducer, fake upstream processes) with the fake NVML driver in this
process: device samples at start-up and on a move past the step, an estimate from a tiny GGUF,
a measurement of the ready model's process group, nothing at all with placement off, and the
log replays to the decisions it holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llamaswap_es.config import LlamaSwapConfig, load_config
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import (
    Envelope,
    Event,
    FootprintKnown,
    GpuMemorySampled,
    ProcessSpawned,
)
from llamaswap_es.perf.footprint_estimate import FootprintEstimate
from llamaswap_es.perf.nvml import NvmlGpus
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.footprints import FootprintFeed, measured_footprint
from llamaswap_es.runtime.gguf_command import GgufCommand
from llamaswap_es.runtime.gguf_estimator import GgufEstimator
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from tests.fixtures.tiny_gguf import tiny_gguf
from tests.perf.fake_nvml import FakeNvml
from tests.runtime.test_service import _serve_one, write_config

PLACEMENT_ON = "llamaswap-es:\n  placement: {mode: memory, sampleStepMb: 256}"


def gguf_model(name: str, gguf: Path | str, ctx: int = 512) -> str:
    """A model entry that loads a GGUF file (never started by these tests: only estimated)."""
    return (
        f"  {name}:\n"
        f"    cmd: /nowhere/llama-server --port ${{PORT}} -m {gguf} -c {ctx}\n"
        "    proxy: http://127.0.0.1:${PORT}\n"
    )


class Committed:
    """Every committed envelope, and a bounded wait for one that matches."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._changed = asyncio.Event()

    def __call__(self, envelopes: list[Envelope]) -> None:
        self.envelopes.extend(envelopes)
        self._changed.set()

    def bodies(self, kind: type[Event]) -> list:
        return [e.body for e in self.envelopes if isinstance(e.body, kind)]

    async def wait_for(self, kind: type[Event], ok: Callable[[object], bool] = bool) -> object:
        async with asyncio.timeout(30):
            while True:
                found = [b for b in self.bodies(kind) if ok(b)]
                if found:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()


async def test_samples_estimates_and_measurements_enter_the_log_and_replay(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    gguf = tiny_gguf()
    config_path = write_config(tmp_path, {"a": "--load-delay-ms 200"}, extra=PLACEMENT_ON)
    config_path.write_text(config_path.read_text() + gguf_model("tiny", gguf))
    fake = FakeNvml()
    svc = SwapService(
        load_config(str(config_path), None), db_path=db_path, logs=UpstreamLogs(),
        env_tag=env_tag, nvml=fake,
    )  # fmt: skip
    committed = Committed()

    def give_memory_to_spawned(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:  # before it is ready, the model "allocates" on GPU1
            if isinstance(envelope.body, ProcessSpawned):
                fake.set_process_memory(1, envelope.body.pid, 3000)

    await svc.start()
    assert svc.loop is not None
    svc.loop.add_listener(committed)
    svc.loop.add_listener(give_memory_to_spawned)
    try:
        assert await _serve_one(svc, "r1", "a") == "a"
        measured = await committed.wait_for(FootprintKnown, lambda b: b.source == "measured")
        moved = await committed.wait_for(GpuMemorySampled)
    finally:
        await svc.shutdown()

    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
        report = verify(reader)
    samples = [e.body for e in envelopes if isinstance(e.body, GpuMemorySampled)]
    (estimate,) = [
        e.body for e in envelopes if isinstance(e.body, FootprintKnown) and e.body.model == "tiny"
    ]
    assert len(samples) == 2  # start-up, then the model's 3,000 MiB moved GPU1 past the step
    first_sample = samples[0]
    assert estimate.source == "estimated"
    assert estimate.mb == 513  # ceil((466,688 + 262,144) B / MiB) + 512 MiB overhead
    assert "at ctx 512" in estimate.detail and "tiny-a.gguf" in estimate.detail
    start_order = [type(e.body).__name__ for e in envelopes][:5]
    assert start_order.index("GpuMemorySampled") < start_order.index("ConfigApplied")
    assert first_sample.total_mb == (81920, 24576)
    assert first_sample.free_mb == (40960, 23552)
    assert first_sample.uuids == ("GPU-aaaa", "")
    assert measured.model == "a" and measured.mb == 3000
    assert (measured.devices, measured.per_device_mb) == (1, (3000,))
    assert "on GPU1 after ready" in measured.detail
    assert moved == samples[1]
    assert moved.free_mb == (40960, 23552 - 3000)
    assert report.ok, report.to_text()


async def test_placement_off_writes_no_memory_facts(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    config_path = write_config(tmp_path, {"a": ""})
    config_path.write_text(config_path.read_text() + gguf_model("tiny", tiny_gguf()))
    fake = FakeNvml()
    svc = SwapService(
        load_config(str(config_path), None), db_path=db_path, logs=UpstreamLogs(),
        env_tag=env_tag, nvml=fake,
    )  # fmt: skip
    await svc.start()
    try:
        assert await _serve_one(svc, "r1", "a") == "a"
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        types = {e.type for e in reader.iter_envelopes()}
    assert "ProcessReady" in types
    assert not types & {"GpuMemorySampled", "FootprintKnown"}
    assert not fake.initialised, "NVML is not even opened for placement while it is off"


async def test_a_sample_is_recorded_only_when_free_memory_moves_past_the_step(
    tmp_path: Path,
) -> None:
    config_path = write_config(tmp_path, {}, extra=PLACEMENT_ON)
    config = load_config(str(config_path), None)
    fake = FakeNvml()
    submitted: list[Event] = []
    feed = FootprintFeed(
        submit=submitted.append, config=lambda: config, spec_for=lambda _m: None,
        open_gpus=lambda: NvmlGpus.open(fake),
    )  # fmt: skip
    try:
        first = await feed.sample_once()
        assert first is not None and first.free_mb == (40960, 23552)
        fake.set_process_memory(0, 111, 200)  # 200 MiB: within the 256 MiB step
        assert await feed.sample_once() is None
        fake.set_process_memory(0, 222, 100)  # 300 MiB since the last recorded sample
        moved = await feed.sample_once()
        assert moved is not None and moved.free_mb == (40960 - 300, 23552)
        fake.set_process_memory(0, 222, 0)  # back by 100: within the step of the new one
        assert await feed.sample_once() is None
    finally:
        await feed.stop()
    assert submitted == [first, moved]


async def test_an_unreadable_model_file_is_named_and_the_others_are_still_estimated(
    tmp_path: Path, db_path: Path, env_tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    config_path = write_config(tmp_path, {}, extra=PLACEMENT_ON)
    config_path.write_text(
        config_path.read_text()
        + gguf_model("gone", tmp_path / "gone.gguf")
        + gguf_model("broken", broken)
        + gguf_model("tiny", tiny_gguf(), ctx=0)
    )
    svc = SwapService(
        load_config(str(config_path), None), db_path=db_path, logs=UpstreamLogs(),
        env_tag=env_tag, nvml=FakeNvml(),
    )  # fmt: skip
    caplog.set_level(logging.WARNING, "llamaswap_es.runtime.footprints")
    await svc.start()  # estimates are made before the first ConfigApplied
    await svc.shutdown()
    with open_log(db_path) as reader:
        estimates = [e.body for e in reader.iter_envelopes() if isinstance(e.body, FootprintKnown)]
    assert [b.model for b in estimates] == ["tiny"]
    estimate = estimates[0]
    assert estimate.mb == 514  # ctx 0: the file's 2,048 (1 MiB of KV cache) + weights + 512
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert f"model 'gone': no estimated footprint: {tmp_path / 'gone.gguf'}" in warnings
    assert f"model 'broken': no estimated footprint: {broken}: not a readable GGUF" in warnings


def test_measured_footprint_sums_the_process_group_per_device() -> None:
    groups = {10: 10, 11: 10, 12: 99}  # 10 and its child 11 form the model's group; 12 not
    per_process = [{10: 1000, 12: 5000}, {}, {11: 700, 10: 300}]
    fact = measured_footprint("m", 4, 10, per_process, groups.get)
    assert fact is not None
    assert (fact.mb, fact.devices, fact.per_device_mb) == (2000, 2, (1000, 1000))
    assert fact.detail == "NVML: pid 10 on GPU0; pids 10, 11 on GPU2 after ready (instance 4)"
    assert measured_footprint("m", 4, 10, [{12: 5000}], groups.get) is None


def test_the_real_process_group_lookup_finds_this_process() -> None:
    from llamaswap_es.runtime.footprints import _process_group

    assert _process_group(os.getpid()) == os.getpgid(0)
    assert sys.platform != "linux" or _process_group(2**22 + 12345) is None


def _tiny_gguf_config(tmp_path: Path, ctx: int, placement: str = PLACEMENT_ON) -> LlamaSwapConfig:
    """One model `tiny` on the tiny GGUF at context `ctx`, placement as given."""
    path = write_config(tmp_path, {}, extra=placement)
    path.write_text(path.read_text() + gguf_model("tiny", tiny_gguf(), ctx=ctx))
    return load_config(str(path), None)


async def test_a_reload_estimates_a_changed_command_again_and_an_unchanged_one_not(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    def config_with(ctx: int, placement: str = PLACEMENT_ON) -> LlamaSwapConfig:
        return _tiny_gguf_config(tmp_path, ctx, placement)

    svc = SwapService(
        config_with(512), db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag, nvml=FakeNvml()
    )
    await svc.start()
    assert svc.footprints is not None
    try:
        await svc.reload(config_with(4096))
        await svc.footprints.settled()
        await svc.reload(config_with(4096))
        await svc.footprints.settled()
        await svc.reload(config_with(8192, placement=""))  # placement off: nothing estimated
        await svc.footprints.settled()
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        estimates = [e.body for e in reader.iter_envelopes() if isinstance(e.body, FootprintKnown)]
    # ctx 512: 0.7 MiB -> 1 MiB + 512; ctx 4096: 0.45 MiB weights + 2 MiB KV -> 3 MiB + 512
    assert [(b.mb, "at ctx 4,096" in b.detail) for b in estimates] == [(513, False), (515, True)]


class HeldEstimator(GgufEstimator):
    """The real estimator, each estimate held until the test releases it (so a reload can arrive
    while the estimate of the config before it is still under way), noting which were cut."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()  # the start-up estimate goes through
        self.begun: list[int] = []
        self.cancelled: list[int] = []
        self._begun_changed = asyncio.Event()

    async def estimate(self, command: GgufCommand) -> FootprintEstimate:
        self.begun.append(command.ctx)
        self._begun_changed.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(command.ctx)
            raise
        return await super().estimate(command)

    async def wait_begun(self, ctx: int) -> None:
        async with asyncio.timeout(10):
            while ctx not in self.begun:
                self._begun_changed.clear()
                await self._begun_changed.wait()


async def test_reloads_in_quick_succession_leave_the_newest_configs_estimate_last(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    """A reload cancels the estimate still running for the config before it: the 4,096 estimate
    is held until the next reload is applied, and never lands; the config in force's does."""

    def config_with(ctx: int, placement: str = PLACEMENT_ON) -> LlamaSwapConfig:
        return _tiny_gguf_config(tmp_path, ctx, placement)

    estimator = HeldEstimator()
    svc = SwapService(
        config_with(512), db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag, nvml=FakeNvml(),
        estimator=estimator,
    )  # fmt: skip
    await svc.start()
    assert svc.footprints is not None
    try:
        estimator.release.clear()
        await svc.reload(config_with(4096))
        await estimator.wait_begun(4096)  # under way, and held
        await svc.reload(config_with(8192))
        await estimator.wait_begun(8192)
        estimator.release.set()
        await svc.footprints.settled()
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        estimates = [e.body for e in reader.iter_envelopes() if isinstance(e.body, FootprintKnown)]
    assert [b.mb for b in estimates] == [513, 517]  # ctx 512, then 8,192: never 4,096's 515
    assert "at ctx 8,192" in estimates[-1].detail
    assert estimator.cancelled == [4096]
