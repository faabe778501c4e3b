"""Which GGUF files a model's command loads, and the estimator's subprocess and cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamaswap_es.errors import ProcessError
from llamaswap_es.perf.footprint_estimate import EstimateError
from llamaswap_es.runtime.gguf_command import GgufCommand, gguf_command
from llamaswap_es.runtime.gguf_estimator import GgufEstimator
from llamaswap_es.runtime.process_spec import ProcessSpec
from tests.fixtures.tiny_gguf import tiny_gguf, tiny_kv_bytes, tiny_weights_bytes


def spec(cmd: str, cwd: str | None = "/models") -> ProcessSpec:
    return ProcessSpec(model_id="m", cmd=cmd, proxy="http://127.0.0.1:9", cwd=cwd)


def test_llama_server_flags_are_read_in_every_spelling() -> None:
    command = gguf_command(
        spec(
            "llama-server --port 9 -m q/model.gguf --mmproj=/abs/proj.gguf -c 4096 \\\n"
            "  --ctx-size 8192 -ctk q8_0 --cache-type-v=q4_0"
        )
    )
    assert command == GgufCommand(
        model="m", model_path="/models/q/model.gguf", mmproj_paths=("/abs/proj.gguf",),
        ctx=8192, cache_type_k="q8_0", cache_type_v="q4_0",
    )  # fmt: skip


def test_a_command_without_a_gguf_file_has_no_estimate() -> None:
    assert gguf_command(spec("vllm serve Qwen/Qwen2.5-7B --port 9")) is None
    assert gguf_command(spec("llama-server -hf ggml-org/gemma-3-1b-it-GGUF")) is None


def test_context_zero_means_the_files_own_and_a_bad_one_names_the_model() -> None:
    command = gguf_command(spec("llama-server -m a.gguf -c 0"))
    assert command is not None and command.ctx is None
    with pytest.raises(ProcessError, match=r"model 'm': cmd's context size 'lots' is not a"):
        gguf_command(spec("llama-server -m a.gguf -c lots"))


async def test_facts_are_read_once_per_file_version(tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_gguf().read_bytes())
    estimator = GgufEstimator()
    command = GgufCommand(model="m", model_path=str(copy), ctx=512)
    first = await estimator.estimate(command)
    assert (first.weights_bytes, first.kv_bytes) == (tiny_weights_bytes(), tiny_kv_bytes(512))
    bigger = await estimator.estimate(GgufCommand(model="m2", model_path=str(copy), ctx=1024))
    assert bigger.kv_bytes == tiny_kv_bytes(1024)
    assert estimator.reads == 1, "the same file is read once, whatever the context"
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await estimator.estimate(command)
    assert estimator.reads == 2, "a replaced file is read again"


async def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    estimator = GgufEstimator()
    gone = tmp_path / "gone.gguf"
    with pytest.raises(EstimateError, match=rf"{gone}: cannot read the GGUF file"):
        await estimator.estimate(GgufCommand(model="m", model_path=str(gone)))
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"\0" * 100)
    with pytest.raises(EstimateError, match=rf"{corrupt}: not a readable GGUF file"):
        await estimator.estimate(GgufCommand(model="m", model_path=str(corrupt)))


async def test_a_reader_that_cannot_run_is_named() -> None:
    estimator = GgufEstimator(python="/nowhere/python3")
    with pytest.raises(EstimateError, match=r"cannot run the GGUF reader /nowhere/python3"):
        await estimator.estimate(GgufCommand(model="m", model_path=str(tiny_gguf())))
