"""The loader's view of a matrix: validated by the compiler the core also uses, then expanded.

The grammar, llama-swap's error texts and their order of checks exist once, in
`llamaswap_es.config.matrix_dsl` (spec/config.md §10.3), so the loader rejects a config with the
very words the scheduler's compiler would use. What only the loader needs is the expansion:
a spillover selector's targets must appear together in one concrete model set (namespace.py),
so every set is expanded into the model sets it allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamaswap_es.config.matrix_dsl import MatrixError, Node, compile_matrix, go_quote
from llamaswap_es.config.models import MatrixConfig

MAX_ALTERNATIVES = 65_536
"""Bound on the concrete model sets one `&` may expand to (ours: protects memory)."""

Family = list[frozenset[str]]
"""The concrete model sets an expression allows, duplicates dropped, in traversal order."""


@dataclass(frozen=True)
class CompiledMatrix:
    """Every set expanded to the concrete model sets it allows (real model ids)."""

    sets: dict[str, Family]

    def some_set_contains(self, models: set[str]) -> bool:
        return any(models <= alt for family in self.sets.values() for alt in family)


def expand_matrix(matrix: MatrixConfig, model_ids: set[str]) -> CompiledMatrix:
    """Validate in llama-swap's order and expand; errors lack the `matrix: ` prefix."""
    program = compile_matrix(
        list(matrix.sets.items()),
        list(matrix.vars.items()),
        list(matrix.evict_costs.items()),
        model_ids,
    )
    families: dict[str, Family] = {}
    for name in program.order:  # referenced sets come first, so every `+ref` is expanded
        families[name] = _expand(program.sets[name], families, name)
    return CompiledMatrix({name: families[name] for name in matrix.sets})


def _expand(node: Node, families: dict[str, Family], set_name: str) -> Family:
    kind = node[0]
    if kind == "leaf":
        return [frozenset((node[1],))]
    if kind == "ref":
        return families[node[1]]
    children = [_expand(child, families, set_name) for child in node[1]]
    if kind == "or":
        return list(dict.fromkeys(alt for family in children for alt in family))
    result = children[0]
    for family in children[1:]:
        out: dict[frozenset[str], None] = {}
        for a in result:
            for b in family:
                out[a | b] = None
                if len(out) > MAX_ALTERNATIVES:
                    raise MatrixError(
                        f"set {go_quote(set_name)}: expands to more than {MAX_ALTERNATIVES} "
                        "model sets"
                    )
        result = list(out)
    return result
