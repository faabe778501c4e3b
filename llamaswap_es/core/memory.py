"""GPU memory as the reducer counts it: device facts, footprints, and free memory now.

Facts enter the log as inputs (`GpuMemorySampled`, `FootprintKnown`) and a model's declared
footprint comes with the config (`ModelSchedule.footprint_mb`), so placement is reproduced by
replay. MiB everywhere; a device is its NVML index.

The rule for free memory (the one `free_now` implements): a sample already shows the memory
of the models that were *ready* when it was taken, but not yet that of models still starting
(their weights are loading), and it keeps showing a stopped model's memory until the next
sample. So free memory now, per device, is

    the newest sample's free memory
    + the footprint of every instance that was ready on the device when it was sampled and has
      released it since (stopped, crashed)
    - the footprint of every instance that holds the device now and was not ready on it when
      it was sampled (starting, planned by a swap that has not started it yet, or ready since)

capped at the device's total. A model that was starting when sampled is counted in full
although part of it may show in the sample already: the error is on the safe side, and the
next sample (taken when free memory moves by more than `sampleStepMb`) corrects it. Memory used
by anything else (other programs, models with no known footprint) stays as the sample shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from llamaswap_es.config.schedule import ModelSchedule
from llamaswap_es.events.types import FOOTPRINT_SOURCES

SOURCES = FOOTPRINT_SOURCES
"""Footprint sources, best first: a fact of a better source always wins (the event's own list)."""
MEASURED, DECLARED, ESTIMATED = SOURCES


@dataclass(frozen=True, slots=True)
class Footprint:
    """A model's GPU memory need from one source (MiB, all devices together)."""

    source: str
    mb: int
    devices: int = 1
    per_device_mb: tuple[int, ...] = ()
    detail: str = ""

    @property
    def span(self) -> int:
        """How many devices it needs."""
        return max(1, len(self.per_device_mb) or self.devices)

    @property
    def need_mb(self) -> int:
        """The need per device: the largest part of a measured split, else an even split."""
        if self.per_device_mb:
            return max(self.per_device_mb)
        return -(-self.mb // self.span)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mb": self.mb,
            "devices": self.devices,
            "per_device_mb": list(self.per_device_mb),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Footprint:
        return cls(
            source=data["source"],
            mb=data["mb"],
            devices=data["devices"],
            per_device_mb=tuple(data["per_device_mb"]),
            detail=data["detail"],
        )


@lru_cache(maxsize=1024)
def declared(schedule: ModelSchedule) -> Footprint | None:
    """The footprint the config declares for the model, if any (one object per schedule:
    placement asks for it on every plan)."""
    if schedule.footprint_mb <= 0:
        return None
    return Footprint(DECLARED, schedule.footprint_mb, max(1, schedule.footprint_devices))


def best_footprint(
    facts: dict[str, Footprint] | None, schedule: ModelSchedule | None
) -> Footprint | None:
    """Measured > declared > estimated. A declared one comes from the config (a reload replaces
    it); a `FootprintKnown` of source "declared" counts only when the config declares none."""
    facts = facts or {}
    measured = facts.get(MEASURED)
    if measured is not None:
        return measured
    from_config = declared(schedule) if schedule is not None else None
    return from_config or facts.get(DECLARED) or facts.get(ESTIMATED)


Holding = tuple[str, int, tuple[int, ...]]
"""(model, instance, devices): an instance that occupies devices."""


@dataclass(frozen=True, slots=True)
class GpuSample:
    """The newest `GpuMemorySampled`, with the instances that were ready on the devices then."""

    total_mb: tuple[int, ...]
    free_mb: tuple[int, ...]
    uuids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    ready: tuple[Holding, ...] = ()

    @property
    def count(self) -> int:
        return len(self.total_mb)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_mb": list(self.total_mb),
            "free_mb": list(self.free_mb),
            "uuids": list(self.uuids),
            "names": list(self.names),
            "ready": [[m, i, list(d)] for m, i, d in self.ready],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuSample:
        return cls(
            total_mb=tuple(data["total_mb"]),
            free_mb=tuple(data["free_mb"]),
            uuids=tuple(data["uuids"]),
            names=tuple(data["names"]),
            ready=tuple((m, i, tuple(d)) for m, i, d in data["ready"]),
        )


def free_now(
    sample: GpuSample, holdings: list[Holding], need_of: dict[str, int]
) -> tuple[int, ...]:
    """Free MiB per device now, by the rule in this module's docstring. `holdings` are the
    instances occupying devices now; `need_of` is each model's need per device (0: unknown)."""
    free = list(sample.free_mb)
    count = len(free)
    then = {(m, i): devices for m, i, devices in sample.ready}
    now = {(m, i): devices for m, i, devices in holdings}
    for key, devices in then.items():
        kept = now.get(key, ())
        for d in devices:
            if d < count and d not in kept:
                free[d] += need_of.get(key[0], 0)
    for key, devices in now.items():
        seen = then.get(key, ())
        for d in devices:
            if d < count and d not in seen:
                free[d] -= need_of.get(key[0], 0)
    return tuple(min(f, t) for f, t in zip(free, sample.total_mb, strict=True))
