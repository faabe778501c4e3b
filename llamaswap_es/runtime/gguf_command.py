"""Which GGUF files a model's command loads, and at what context size and KV cache types.

Reads the `cmd` the way the executor runs it (llama-swap's tokenisation, `runtime/process_spec`)
and picks llama-server's flags: `-m/--model` and `--mmproj` (files ending in `.gguf`),
`-c/--ctx-size`, `-ctk/--cache-type-k`, `-ctv/--cache-type-v`, each also as `--flag=value`.
A command that names no `.gguf` file (another runtime, `-hf` downloads) has no estimate: None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llamaswap_es.errors import ProcessError
from llamaswap_es.perf.footprint_estimate import DEFAULT_CACHE_TYPE
from llamaswap_es.runtime.process_spec import ProcessSpec

_FLAGS = {
    "-m": "model",
    "--model": "model",
    "-mm": "mmproj",
    "--mmproj": "mmproj",
    "-c": "ctx",
    "--ctx-size": "ctx",
    "-ctk": "ctk",
    "--cache-type-k": "ctk",
    "-ctv": "ctv",
    "--cache-type-v": "ctv",
}
"""llama-server's flags the estimate reads, by what they set (a later one wins, as there)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GgufCommand:
    """The GGUF side of one model's command: absolute paths, ctx (None: the file's default)."""

    model: str
    model_path: str
    mmproj_paths: tuple[str, ...] = ()
    ctx: int | None = None
    cache_type_k: str = DEFAULT_CACHE_TYPE
    cache_type_v: str = DEFAULT_CACHE_TYPE

    @property
    def files(self) -> tuple[str, ...]:
        return (self.model_path, *self.mmproj_paths)


def gguf_command(spec: ProcessSpec) -> GgufCommand | None:
    """The GGUF files and sizes `spec.cmd` asks for; None when it loads no `.gguf` file.

    Raises `ProcessError` naming the model when the command cannot be parsed or a flag's value
    is bad (`-c abc`), so the user learns which model's `cmd` to fix.
    """
    argv = spec.argv()
    values: dict[str, list[str]] = {key: [] for key in _FLAGS.values()}
    i = 1
    while i < len(argv):
        flag, eq, inline = argv[i].partition("=")
        if flag in _FLAGS:
            if eq:
                values[_FLAGS[flag]].append(inline)
            elif i + 1 < len(argv):
                values[_FLAGS[flag]].append(argv[i + 1])
                i += 1
        i += 1
    models = [v for v in values["model"] if v.lower().endswith(".gguf")]
    if not models:
        return None
    base = spec.cwd or os.getcwd()
    ctx_text = values["ctx"][-1] if values["ctx"] else None
    return GgufCommand(
        model=spec.model_id,
        model_path=_absolute(models[-1], base),
        mmproj_paths=tuple(
            _absolute(v, base) for v in values["mmproj"] if v.lower().endswith(".gguf")
        ),
        ctx=_context(ctx_text, spec.model_id) if ctx_text is not None else None,
        cache_type_k=(values["ctk"] or [DEFAULT_CACHE_TYPE])[-1],
        cache_type_v=(values["ctv"] or [DEFAULT_CACHE_TYPE])[-1],
    )


def _context(text: str, model: str) -> int | None:
    try:
        ctx = int(text)
    except ValueError:
        raise ProcessError(
            f"model {model!r}: cmd's context size {text!r} is not a number"
        ) from None
    if ctx < 0:
        raise ProcessError(f"model {model!r}: cmd's context size {ctx} is negative")
    return ctx or None  # 0: the model's own context length, as llama-server reads it


def _absolute(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))
