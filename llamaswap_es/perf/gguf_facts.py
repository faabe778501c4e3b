"""What a GGUF file says about a model's GPU memory, read with llama.cpp's own `gguf` package.

Run as a short-lived program, `python -m llamaswap_es.perf.gguf_facts FILE [FILE ...]`, it prints
one JSON object per file on one line: `{"files": [{...facts...}, ...]}`, or `{"error": "..."}`
naming the file with exit status 2. It is a separate process on purpose: `gguf` imports numpy
(tens of MiB), and the server's idle memory has a target, so the server never imports it; the
runtime (`runtime/gguf_estimator.py`) runs this off its event loop and caches the answer by file
path, size and modification time.

The facts are the ones an estimate needs (`perf/footprint_estimate.py` does the arithmetic): the
tensors' total size (the weights), and for the KV cache the layer count, the KV head count (per
layer when the file gives a list), the key and value widths and the trained context length. A
model split into several files (`split.count`, `NAME-00001-of-00003.gguf`) is read whole.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GgufFactsError(Exception):
    """A file that cannot be read as a GGUF model; the message names the file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GgufFacts:
    """One GGUF model (all its split parts together), as the estimate needs it."""

    path: str
    architecture: str
    tensor_bytes: int
    """The sum of every tensor's size in bytes: the weights as they are loaded."""
    n_layer: int = 0
    n_head_kv: tuple[int, ...] = ()
    """KV heads per layer (one entry per layer; a file with one number repeats it)."""
    key_length: int = 0
    value_length: int = 0
    context_length: int = 0
    parts: int = 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["n_head_kv"] = list(self.n_head_kv)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GgufFacts:
        return cls(**{**data, "n_head_kv": tuple(int(n) for n in data.get("n_head_kv", ()))})


def read_gguf_facts(path: str) -> GgufFacts:
    """The facts of the model at `path`; `GgufFactsError` naming the file when it cannot be read
    (missing, not a GGUF file, truncated, or without the keys a model has)."""
    try:
        import gguf  # lazy: numpy comes with it, and only this short-lived program loads it
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise GgufFactsError(f"{path}: the gguf package is not installed ({exc})") from None
    file = Path(path)
    if not file.is_file():
        raise GgufFactsError(f"{path}: no such GGUF file")
    reader = _open(gguf, file)
    arch = str(_value(reader, "general.architecture", path) or "")
    if not arch:
        raise GgufFactsError(f"{path}: not a model file (no general.architecture)")
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    parts = int(_value(reader, "split.count", path) or 1)
    if parts > 1:
        for sibling in _split_siblings(file, parts):
            tensor_bytes += sum(int(t.n_bytes) for t in _open(gguf, sibling).tensors)
    n_layer = int(_value(reader, f"{arch}.block_count", path) or 0)
    n_head = _per_layer(_value(reader, f"{arch}.attention.head_count", path), n_layer)
    n_head_kv = _per_layer(_value(reader, f"{arch}.attention.head_count_kv", path), n_layer)
    if not n_head_kv:
        n_head_kv = n_head  # llama.cpp: no GQA when the file does not say
    n_embd = int(_value(reader, f"{arch}.embedding_length", path) or 0)
    heads = max(n_head, default=0)
    default_width = n_embd // heads if heads else 0
    return GgufFacts(
        path=path,
        architecture=arch,
        tensor_bytes=tensor_bytes,
        n_layer=n_layer,
        n_head_kv=n_head_kv,
        key_length=int(_value(reader, f"{arch}.attention.key_length", path) or default_width),
        value_length=int(_value(reader, f"{arch}.attention.value_length", path) or default_width),
        context_length=int(_value(reader, f"{arch}.context_length", path) or 0),
        parts=parts,
    )


def _open(gguf: Any, file: Path) -> Any:
    try:
        return gguf.GGUFReader(file)
    except Exception as exc:  # ValueError("GGUF magic invalid"), a truncated memmap, ...
        raise GgufFactsError(f"{file}: not a readable GGUF file ({exc})") from None


def _value(reader: Any, key: str, path: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception as exc:
        raise GgufFactsError(f"{path}: cannot read key {key} ({exc})") from None


def _per_layer(value: Any, n_layer: int) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(int(v) for v in value)
    return (int(value),) * n_layer


def _split_siblings(first: Path, count: int) -> list[Path]:
    match = _SPLIT_NAME.match(first.name)
    if match is None:
        raise GgufFactsError(
            f"{first}: says it is split in {count} parts, but its name is not NAME-00001-of-"
            f"{count:05d}.gguf, so the other parts cannot be found"
        )
    stem = match["stem"]
    siblings = [first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(2, count + 1)]
    for sibling in siblings:
        if not sibling.is_file():
            raise GgufFactsError(f"{first}: split part {sibling} is missing")
    return siblings


def main(argv: list[str] | None = None) -> int:
    """Print the facts of every file named, as one JSON line; exit 2 with the error otherwise."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(json.dumps({"error": "usage: python -m llamaswap_es.perf.gguf_facts FILE ..."}))
        return 2
    try:
        facts = [read_gguf_facts(p).to_json() for p in paths]
    except GgufFactsError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps({"files": facts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
