"""Estimated footprints from GGUF files: the facts read with llama.cpp's `gguf` package and the
arithmetic on them, checked against numbers counted by hand from the files' tensors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from llamaswap_es.perf.footprint_estimate import (
    CACHE_TYPE_SIZES,
    MIB,
    OVERHEAD_MB,
    EstimateError,
    estimate_footprint,
)
from llamaswap_es.perf.gguf_facts import GgufFactsError, read_gguf_facts
from tests.fixtures.tiny_gguf import tiny_gguf, tiny_kv_bytes, tiny_weights_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tiny_model_facts_match_the_tensors_counted_by_hand() -> None:
    facts = read_gguf_facts(str(tiny_gguf("tiny-a.gguf")))
    assert facts.architecture == "llama"
    assert facts.tensor_bytes == tiny_weights_bytes() == 466_688
    assert facts.n_layer == 2
    assert facts.n_head_kv == (4, 4)
    assert (facts.key_length, facts.value_length) == (16, 16)  # 64 wide / 4 heads
    assert facts.context_length == 2048


def test_estimate_at_the_commands_context_is_weights_plus_kv_plus_overhead() -> None:
    facts = read_gguf_facts(str(tiny_gguf("tiny-b.gguf")))
    estimate = estimate_footprint(facts, ctx=512)
    assert estimate.weights_bytes == 466_688
    assert estimate.kv_bytes == tiny_kv_bytes(512) == 262_144  # 512 x 128 x 2 bytes, K and V
    assert estimate.mb == math.ceil((466_688 + 262_144) / MIB) + OVERHEAD_MB == 513
    assert "KV cache 0.2 MiB at ctx 512 (f16/f16)" in estimate.detail
    assert "tiny-b.gguf" in estimate.detail


def test_default_context_is_the_files_and_cache_types_change_the_kv_size() -> None:
    facts = read_gguf_facts(str(tiny_gguf("tiny-c.gguf")))
    by_default = estimate_footprint(facts)
    assert by_default.ctx == 2048
    assert by_default.kv_bytes == tiny_kv_bytes(2048) == 1_048_576
    quantised = estimate_footprint(facts, ctx=4096, cache_type_k="q8_0", cache_type_v="q4_0")
    assert quantised.kv_bytes == tiny_kv_bytes(4096, k_bytes_per_32=34, v_bytes_per_32=18)


def test_mmproj_weights_add_to_the_models() -> None:
    model = read_gguf_facts(str(tiny_gguf("tiny-a.gguf")))
    projector = read_gguf_facts(str(tiny_gguf("tiny-b.gguf")))
    estimate = estimate_footprint(model, (projector,), ctx=512)
    assert estimate.weights_bytes == 2 * tiny_weights_bytes()
    assert estimate.kv_bytes == tiny_kv_bytes(512)


def test_grouped_query_attention_counts_kv_heads_not_heads(tmp_path: Path) -> None:
    """A file written here: 3 layers, 8 heads but 2 KV heads, keys 32 wide, values 16 wide."""
    path = tmp_path / "gqa.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(1000)
    writer.add_embedding_length(256)
    writer.add_block_count(3)
    writer.add_head_count(8)
    writer.add_head_count_kv(2)
    writer.add_key_length(32)
    writer.add_value_length(16)
    writer.add_tensor("token_embd.weight", np.zeros((10, 256), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    facts = read_gguf_facts(str(path))
    assert facts.tensor_bytes == 10 * 256 * 2
    estimate = estimate_footprint(facts, ctx=100)
    assert estimate.kv_bytes == 100 * 3 * 2 * (32 + 16) * 2


def test_cache_type_sizes_agree_with_ggml() -> None:
    for name, size in CACHE_TYPE_SIZES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name.upper()]] == size, name


def test_unknown_cache_type_names_the_flag() -> None:
    facts = read_gguf_facts(str(tiny_gguf()))
    with pytest.raises(EstimateError, match=r"-ctv 'q9_9' is not a KV cache type"):
        estimate_footprint(facts, cache_type_v="q9_9")


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(GgufFactsError, match=rf"{missing}: no such GGUF file"):
        read_gguf_facts(str(missing))
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"not a gguf file at all")
    with pytest.raises(GgufFactsError, match=rf"{corrupt}: not a readable GGUF file"):
        read_gguf_facts(str(corrupt))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf().read_bytes()[:4000])
    with pytest.raises(GgufFactsError, match=rf"{truncated}: not a readable GGUF file"):
        read_gguf_facts(str(truncated))


def test_the_program_prints_json_and_exits_2_with_the_file_named(tmp_path: Path) -> None:
    def run(*paths: str) -> tuple[int, dict]:
        done = subprocess.run(
            [sys.executable, "-m", "llamaswap_es.perf.gguf_facts", *paths],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    code, answer = run(str(tiny_gguf()))
    assert code == 0
    assert answer["files"][0]["tensor_bytes"] == tiny_weights_bytes()
    code, answer = run(str(tiny_gguf()), str(tmp_path / "gone.gguf"))
    assert code == 2
    assert answer == {"error": f"{tmp_path / 'gone.gguf'}: no such GGUF file"}
