"""`config-schema.json`: the configuration's JSON Schema, generated from the pydantic models.

Editors validate a `config.yaml` against it (`# yaml-language-server: $schema=…`), so it must
judge a file as the loader does: what the loader accepts validates, and a file refused for its
shape (a map where a string goes, a legacy list where a profile mapping goes, a value outside an
enumeration) does not. Each Go field type declares what it accepts beside its decoder
(config.gotypes); this module adds what yaml.v3 does to every field whatever its type: `null`
keeps the default (or empties a list or a map), and a map of objects takes `null` entries.
Checks that need more than the shape (macros, `${PORT}`, cross-references between models) stay
with the loader; `llamaswap-es check-config` runs them.

Regenerate the checked-in copies with `llamaswap-es config-schema --update`; a test fails when
they differ from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llamaswap_es.config.models import OUR_SECTION, LlamaSwapConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILE_NAME = "config-schema.json"
PACKAGED = Path(__file__).resolve().parent / FILE_NAME
"""The copy shipped inside the package."""
CHECKOUT = Path(__file__).resolve().parents[2] / FILE_NAME
"""The copy at the top of the repository (what editors and llama-swap users look for)."""
_NULL = {"type": "null"}


def _accepts_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in schema.get("enum", []):
        return True
    return any(_accepts_null(option) for option in schema.get("anyOf", []))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, also accepting null (yaml.v3 keeps the default for a null value)."""
    if _accepts_null(schema):
        return schema
    if isinstance(schema.get("type"), str) and "enum" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], _NULL]}
    described = {k: v for k, v in schema.items() if k in ("description", "default")}
    inner = {k: v for k, v in schema.items() if k not in ("description", "default")}
    return {"anyOf": [inner, _NULL], **described}


def _tidy(node: Any) -> Any:
    """Drop pydantic's generated titles; make every object property and map entry nullable."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _tidy(value) for key, value in node.items() if key != "title"}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {name: _nullable(prop) for name, prop in out["properties"].items()}
    extra = out.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" in extra:
        out["additionalProperties"] = _nullable(extra)
    return out


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file: llama-swap's keys and our section."""
    generated = LlamaSwapConfig.model_json_schema(by_alias=True, mode="validation")
    schema = _tidy(generated)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "llamaswap-es configuration",
        "description": (
            "llama-swap's config.yaml, read as llama-swap reads it, plus llamaswap-es's own "
            f"`{OUR_SECTION}:` section. Unknown keys are ignored, except inside "
            f"`{OUR_SECTION}:`. `llamaswap-es check-config` runs the checks a schema cannot."
        ),
        **{key: value for key, value in schema.items() if key not in ("description",)},
    }


def schema_text() -> str:
    """The schema as the checked-in files hold it (stable key order, final newline)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def update_files() -> list[Path]:
    """Rewrite the packaged copy, and the checkout's when there is one; the paths written."""
    text = schema_text()
    written = []
    for path in (PACKAGED, CHECKOUT):
        if path is CHECKOUT and not (CHECKOUT.parent / "pyproject.toml").is_file():
            continue  # an installed package: no checkout to update
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
