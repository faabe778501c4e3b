"""What placement reads through NVML: each GPU's memory, and GPU memory per process."""

from __future__ import annotations

from types import SimpleNamespace

from llamaswap_es.perf.nvml import DeviceMemory, NvmlGpus
from tests.perf.fake_nvml import FakeNvml


def test_memory_per_device_in_mib() -> None:
    gpus = NvmlGpus.open(FakeNvml())
    assert gpus is not None
    assert gpus.memory() == [
        DeviceMemory(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", total_mb=81920, free_mb=40960),
        DeviceMemory(1, "", "NVIDIA L4", total_mb=24576, free_mb=23552),
    ]


def test_process_memory_rounds_up_and_leaves_out_what_the_driver_does_not_report() -> None:
    fake = FakeNvml()
    fake.set_process_memory(1, 4121, 3000)
    unreported = [
        SimpleNamespace(pid=77, usedGpuMemory=None),
        SimpleNamespace(pid=78, usedGpuMemory=1),
    ]
    listed = fake.nvmlDeviceGetComputeRunningProcesses
    fake.nvmlDeviceGetComputeRunningProcesses = lambda h: (  # type: ignore[method-assign]
        unreported if h["index"] == 0 else listed(h)
    )
    gpus = NvmlGpus.open(fake)
    assert gpus is not None
    assert gpus.process_memory_mb() == [{78: 1}, {4121: 3000}]
    assert gpus.memory()[1].free_mb == 23552 - 3000, "a process's memory is used memory"


class OldBinding(FakeNvml):
    """A pynvml without `nvmlDeviceGetComputeRunningProcesses` (an old binding)."""

    def __getattribute__(self, name: str) -> object:
        if name == "nvmlDeviceGetComputeRunningProcesses":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_driver_without_the_process_list_gives_empty_devices() -> None:
    gpus = NvmlGpus.open(OldBinding())
    assert gpus is not None and gpus.process_memory_mb() == [{}, {}]
