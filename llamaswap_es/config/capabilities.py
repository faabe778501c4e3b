"""What a model's `capabilities` block means to clients (spec/api.md §8, §25 items 27 and 29).

`/v1/models` and the `modelStatus` event both describe a model's capabilities the way llama-swap
does: input/output modalities folded into `architecture`, and booleans such as `vision` or
`function_calling`. One derivation, used by both.
"""

from __future__ import annotations

from typing import Any

from llamaswap_es.config.models import ModelConfig


def capability_fields(model: ModelConfig) -> dict[str, Any]:
    """architecture / capabilities / supported_parameters / context_length, each when set."""
    caps = model.capabilities
    ins, outs = list(caps.in_), list(caps.out)
    out: dict[str, Any] = {}
    architecture: dict[str, Any] = {}
    if ins:
        architecture["input_modalities"] = ins
    if outs:
        architecture["output_modalities"] = outs
    if ins and outs:
        architecture["modality"] = f"{'+'.join(ins)}->{'+'.join(outs)}"
    if architecture:
        out["architecture"] = architecture
    flags = {
        "vision": "image" in ins,
        "audio_transcriptions": "audio" in ins and "text" in outs,
        "audio_speech": "text" in ins and "audio" in outs,
        "image_generation": "text" in ins and "image" in outs,
        "image_to_image": "image" in ins and "image" in outs,
        "function_calling": caps.tools,
        "reranker": caps.reranker,
    }
    capabilities = {k: True for k, v in flags.items() if v}
    if capabilities:
        out["capabilities"] = capabilities
    if caps.tools:
        out["supported_parameters"] = ["tools", "tool_choice"]
    if caps.context > 0:
        out["context_length"] = caps.context
    return out


def has_capabilities(model: ModelConfig) -> bool:
    caps = model.capabilities
    return bool(caps.in_ or caps.out or caps.tools or caps.reranker or caps.context > 0)


def aliases_of(config: Any, model_id: str) -> list[str]:
    """Every alias of a model, including those registered from `setParamsByID` keys."""
    return sorted(a for a, m in config.alias_table.items() if m == model_id and a.strip())
