"""A model's GPU memory need estimated from its GGUF facts: weights + KV cache + a fixed overhead.

Pure arithmetic on `GgufFacts` (no numpy, no `gguf`: the server process runs it). The estimate
assumes every layer is offloaded to the GPU, as llama-server does with `-ngl 99` or its automatic
default:

    weights  = the sum of the tensors' sizes (model file and every `--mmproj` file)
    KV cache = ctx x sum over layers (n_head_kv x key_length)   x bytes per element of -ctk
             + ctx x sum over layers (n_head_kv x value_length) x bytes per element of -ctv
    total    = ceil((weights + KV cache) / MiB) + OVERHEAD_MB

`OVERHEAD_MB` stands for what is not in the file: the CUDA context and llama.cpp's compute
buffers (a few hundred MiB on a 7-8B model at ctx 4096). It is an honest guess, which is why a
measured or declared footprint always wins over an estimate (docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamaswap_es.perf.gguf_facts import GgufFacts

MIB = 1024 * 1024

OVERHEAD_MB = 512
"""MiB added to every estimate for the CUDA context and the compute buffers."""

CACHE_TYPE_SIZES: dict[str, tuple[int, int]] = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "q8_0": (32, 34),
    "q4_0": (32, 18),
    "q4_1": (32, 20),
    "iq4_nl": (32, 18),
    "q5_0": (32, 22),
    "q5_1": (32, 24),
}
"""The KV cache types llama-server accepts (`-ctk`/`-ctv`), as (elements per block, bytes per
block): ggml's own sizes (gguf.GGML_QUANT_SIZES; tests check they agree)."""

DEFAULT_CACHE_TYPE = "f16"


class EstimateError(ValueError):
    """The command asks for something the estimate cannot count; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FootprintEstimate:
    """An estimate and its parts, in bytes (the parts) and MiB (the total)."""

    weights_bytes: int
    kv_bytes: int
    ctx: int
    overhead_mb: int
    mb: int
    detail: str


def kv_cache_bytes(facts: GgufFacts, ctx: int, cache_type_k: str, cache_type_v: str) -> int:
    """The KV cache of `ctx` tokens in bytes, per llama.cpp's layout (one K and one V row per
    layer and token, `n_head_kv x key_length` and `n_head_kv x value_length` wide)."""
    k_block, k_size = _cache_type(cache_type_k, "-ctk")
    v_block, v_size = _cache_type(cache_type_v, "-ctv")
    k_elements = ctx * sum(heads * facts.key_length for heads in facts.n_head_kv)
    v_elements = ctx * sum(heads * facts.value_length for heads in facts.n_head_kv)
    return k_elements * k_size // k_block + v_elements * v_size // v_block


def estimate_footprint(
    model: GgufFacts,
    extra: tuple[GgufFacts, ...] = (),
    *,
    ctx: int | None = None,
    cache_type_k: str = DEFAULT_CACHE_TYPE,
    cache_type_v: str = DEFAULT_CACHE_TYPE,
    overhead_mb: int = OVERHEAD_MB,
) -> FootprintEstimate:
    """Estimate the need of `model` (plus `extra` files such as `--mmproj`, weights only) at
    context `ctx` (None or 0: the file's trained context length, as llama-server does)."""
    tokens = ctx or model.context_length
    if tokens <= 0:
        raise EstimateError(
            f"{model.path}: no context size: the command gives none and the file has no "
            f"{model.architecture}.context_length"
        )
    weights = model.tensor_bytes + sum(f.tensor_bytes for f in extra)
    kv = kv_cache_bytes(model, tokens, cache_type_k, cache_type_v)
    mb = -(-(weights + kv) // MIB) + overhead_mb
    names = ", ".join(Path(f.path).name for f in (model, *extra))
    detail = (
        f"weights {_mib(weights)} + KV cache {_mib(kv)} at ctx {tokens:,}"
        f" ({cache_type_k}/{cache_type_v}) + overhead {overhead_mb:,} MiB ({names})"
    )
    return FootprintEstimate(
        weights_bytes=weights, kv_bytes=kv, ctx=tokens, overhead_mb=overhead_mb, mb=mb,
        detail=detail,
    )  # fmt: skip


def _cache_type(name: str, flag: str) -> tuple[int, int]:
    try:
        return CACHE_TYPE_SIZES[name.lower()]
    except KeyError:
        known = ", ".join(CACHE_TYPE_SIZES)
        raise EstimateError(
            f"{flag} {name!r} is not a KV cache type llama.cpp knows ({known})"
        ) from None


def _mib(size: int) -> str:
    """MiB for people: whole MiB, or one decimal below 10 MiB (tiny test models)."""
    value = size / MIB
    return f"{value:,.0f} MiB" if value >= 10 else f"{value:.1f} MiB"
