"""GPU sources beyond NVML, each against what the real tool gives: nvidia-smi and rocm-smi as
commands on PATH printing recorded output, LACT as a daemon on a unix socket, amdgpu as a sysfs
tree; then the order llama-swap tries them in, and the hardware snapshot they feed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llamaswap_es.perf import nvidia_smi, rocm_smi
from llamaswap_es.perf.drm_sysfs import SysfsGpus
from llamaswap_es.perf.gpu_sources import open_gpu_source
from llamaswap_es.perf.hardware import detect_hardware
from llamaswap_es.perf.lact import LactGpus
from llamaswap_es.perf.nvidia_smi import NvidiaSmiGpus
from llamaswap_es.perf.rocm_smi import RocmSmiGpus
from tests.perf.fake_nvml import FakeNvml
from tests.perf.gpu_fakes import (
    FIXTURES,
    drm_card,
    failing_command,
    fake_command,
    lact_daemon,
)

NOW = 1_700_000_000.0
MIB = 1024 * 1024
VEGA = "1002:687F-1043:0555-0000:0b:00.0"
RX6600 = "1002:73FF-1458:2334-0000:03:00.0"


def _nvidia_smi(bin_dir: Path) -> str:
    output = (FIXTURES / "nvidia-smi-query-gpu.csv").read_text()
    return str(fake_command(bin_dir, "nvidia-smi", nvidia_smi.ARGS, output))


def _rocm_smi(bin_dir: Path, version: str = "7.1") -> str:
    output = (FIXTURES / f"rocm-smi-{version}.csv").read_text()
    return str(fake_command(bin_dir, "rocm-smi", rocm_smi.ARGS, output))


def _lact_answers() -> dict:
    recorded = json.loads((FIXTURES / "lact-device-stats-rx6600.json").read_text())
    with_vram = {**recorded, "busy_percent": 57, "fan": {"pwm_current": 102}}
    with_vram["vram"] = {"total": 8 * 1024 * MIB, "used": 2 * 1024 * MIB}
    return {
        "list_devices": json.loads((FIXTURES / "lact-list-devices.json").read_text()),
        f"device_stats {VEGA}": {"status": "ok", "data": with_vram},
        f"device_stats {RX6600}": {"status": "ok", "data": recorded},  # no VRAM figures
    }


def _amd_sysfs(root: Path) -> Path:
    """card0: an amdgpu card with 24 GiB; card0-DP-1: its connector; card1: an Intel iGPU;
    card2: an amdgpu adapter that reports no VRAM."""
    drm_card(
        root, "card0", "0000:03:00.0", "amdgpu",
        {
            "mem_info_vram_total": str(24 * 1024 * MIB), "mem_info_vram_used": str(6 * 1024 * MIB),
            "gpu_busy_percent": "42",
            "hwmon/hwmon3/temp1_input": "45000", "hwmon/hwmon3/temp1_label": "edge",
            "hwmon/hwmon3/temp2_input": "51000", "hwmon/hwmon3/temp2_label": "junction",
            "hwmon/hwmon3/temp3_input": "60000", "hwmon/hwmon3/temp3_label": "mem",
            "hwmon/hwmon3/power1_average": "85000000", "hwmon/hwmon3/pwm1": "51",
        },
        uevent="DRIVER=amdgpu\nPCI_ID=1002:744C\nPCI_SLOT_NAME=0000:03:00.0\n",
    )  # fmt: skip
    (root / "class" / "drm" / "card0-DP-1").mkdir(parents=True)
    drm_card(root, "card1", "0000:00:02.0", "i915", {"mem_info_vram_total": str(MIB)})
    drm_card(
        root, "card2", "0000:05:00.0", "amdgpu",
        {"mem_info_vram_total": "0", "gpu_busy_percent": "0"},
    )  # fmt: skip
    return root


# ---------------------------------------------------------------------------------- commands


def test_nvidia_smi_is_read_as_llama_swap_queries_it(tmp_path: Path) -> None:
    _nvidia_smi(tmp_path / "bin")
    source = NvidiaSmiGpus.open(shutil.which("nvidia-smi", path=str(tmp_path / "bin")))
    assert source is not None
    h100, rtx = source.sample(NOW)  # the GB10 reports no memory: left out
    assert (h100.id, h100.name, h100.uuid) == (
        0,
        "NVIDIA H100 80GB HBM3",
        "GPU-bc5610b9-79c8-fedd-8899-07539c7f868a",
    )
    assert (h100.temp_c, h100.fan_speed_pct, h100.power_draw_w) == (34, 0, 71.52)  # fan [N/A]
    assert (h100.mem_used_mb, h100.mem_total_mb) == (1, 81559)
    assert (rtx.id, rtx.gpu_util_pct, rtx.fan_speed_pct) == (1, 12, 30)
    assert rtx.mem_util_pct == pytest.approx(2150 / 24564 * 100)
    _h100_info, info_rtx = source.info()
    assert (info_rtx.vendor, info_rtx.memory_total_bytes) == ("nvidia", 24564 * MIB)


def test_a_failing_nvidia_smi_means_no_source(tmp_path: Path) -> None:
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    script = failing_command(tmp_path / "bin", "nvidia-smi", message)
    assert NvidiaSmiGpus.open(str(script)) is None
    assert NvidiaSmiGpus.open(None) is None


@pytest.mark.parametrize("version", ["5.7", "7.1"])
def test_rocm_smi_columns_are_read_by_name_in_both_recorded_versions(
    tmp_path: Path, version: str
) -> None:
    source = RocmSmiGpus.open(_rocm_smi(tmp_path / "bin", version))
    assert source is not None
    (card,) = source.sample(NOW)
    assert (card.id, card.temp_c, card.vram_temp_c) == (0, 38, 39)
    assert (card.fan_speed_pct, card.power_draw_w, card.gpu_util_pct) == (20, 15, 3)
    assert (card.mem_used_mb, card.mem_total_mb, card.mem_util_pct) == (16384, 32768, 50)
    assert card.name == ("0x1002" if version == "5.7" else "card0")
    assert card.uuid == ("" if version == "5.7" else "55555")
    assert source.info()[0].vendor == "amd"


def test_rocm_smi_lines_that_do_not_match_the_header_are_skipped() -> None:
    text = (FIXTURES / "rocm-smi-5.7.csv").read_text() + "card1,0x7551,38.0\n\nWARNING: x\n"
    assert [stat.id for stat in rocm_smi.parse_csv(text, NOW)] == [0]
    assert rocm_smi.parse_csv("card0,1,2\n", NOW) == []  # no header: nothing


# ---------------------------------------------------------------------------------- LACT


def test_lact_devices_come_from_its_socket_and_one_without_vram_is_left_out() -> None:
    with lact_daemon(_lact_answers()) as (path, requests):
        source = LactGpus.open(path)
        assert source is not None
        (vega,) = source.sample(NOW)
        info = source.info()
    assert (vega.id, vega.name, vega.uuid) == (
        0,
        "Vega 10 XL/XT [Radeon RX Vega 56/64]",
        VEGA,
    )
    assert (vega.temp_c, vega.vram_temp_c, vega.power_draw_w) == (28, 26, 3.0)  # edge, mem
    assert (vega.gpu_util_pct, vega.fan_speed_pct) == (57, pytest.approx(40.0))  # 102/255
    assert (vega.mem_used_mb, vega.mem_total_mb, vega.mem_util_pct) == (2048, 8192, 25)
    assert info[0].vendor == "amd" and info[0].memory_total_bytes == 8 * 1024 * MIB
    assert requests[:3] == [
        {"command": "list_devices"},
        {"command": "device_stats", "args": {"id": VEGA}},
        {"command": "device_stats", "args": {"id": RX6600}},
    ]


def test_lact_errors_and_a_missing_socket_mean_no_source(tmp_path: Path) -> None:
    refusing = {"list_devices": {"status": "error", "data": "permission denied"}}
    with lact_daemon(refusing) as (path, _):
        assert LactGpus.open(path) is None
    only_without_vram = _lact_answers()
    only_without_vram[f"device_stats {VEGA}"] = {"status": "error", "data": "no such device"}
    with lact_daemon(only_without_vram) as (path, _):
        assert LactGpus.open(path) is None
    assert LactGpus.open(str(tmp_path / "lactd.sock")) is None
    assert LactGpus.open(None) is None


# ---------------------------------------------------------------------------------- sysfs


def test_amdgpu_cards_are_read_from_drm_sysfs(tmp_path: Path) -> None:
    source = SysfsGpus.open(str(_amd_sysfs(tmp_path / "sys")))
    assert source is not None
    (card,) = source.sample(NOW)  # not the connector, the Intel card or the card without VRAM
    assert (card.id, card.name, card.uuid) == (0, "AMD 1002:744C", "0000:03:00.0")
    assert (card.mem_used_mb, card.mem_total_mb, card.mem_util_pct) == (6144, 24576, 25)
    assert (card.gpu_util_pct, card.temp_c, card.vram_temp_c) == (42, 45, 60)
    assert (card.power_draw_w, card.fan_speed_pct) == (85, 20)  # µW; pwm 51/255


def test_no_amdgpu_card_means_no_sysfs_source(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    drm_card(root, "card0", "0000:00:02.0", "i915", {"mem_info_vram_total": str(MIB)})
    assert SysfsGpus.open(str(root)) is None
    assert SysfsGpus.open(str(tmp_path / "nothing")) is None


# ---------------------------------------------------------------------------------- order


def test_sources_are_tried_in_llama_swaps_order_after_nvml(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _nvidia_smi(bin_dir)
    _rocm_smi(bin_dir)
    sysfs = str(_amd_sysfs(tmp_path / "sys"))
    path = str(bin_dir)
    nowhere = str(tmp_path / "no-lactd.sock")

    def chosen(nvml=None, lact=nowhere, search=path) -> str | None:  # type: ignore[no-untyped-def]
        source = open_gpu_source(nvml, path=search, lact_socket=lact, sysfs_root=sysfs)
        return None if source is None else source.name

    with lact_daemon(_lact_answers()) as (socket_path, _):
        assert chosen(nvml=FakeNvml(), lact=socket_path) == "NVML"
        assert chosen(lact=socket_path) == "LACT"
    assert chosen() == "nvidia-smi"
    (bin_dir / "nvidia-smi").unlink()
    assert chosen() == "rocm-smi"
    (bin_dir / "rocm-smi").unlink()
    assert chosen() == "sysfs"
    assert open_gpu_source(None, path=path, lact_socket=nowhere, sysfs_root=str(tmp_path)) is None


def test_the_hardware_snapshot_names_an_amd_card_found_by_rocm_smi(tmp_path: Path) -> None:
    source = RocmSmiGpus.open(_rocm_smi(tmp_path / "bin"))
    (accelerator,) = detect_hardware(source)["accelerators"]
    assert accelerator["vendor"] == "amd" and accelerator["kind"] == "gpu"
    assert accelerator["memory"] == {"kind": "dedicated", "capacity_bytes": 32 * 1024 * MIB}
    assert accelerator["driver"] is None and accelerator["model"] == "card0"
