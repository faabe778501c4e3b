"""The matrix solver: which running models must stop so that a target can run.

Each set's expression denotes a family of model sets (OR = union of families, AND = one member
of each child unioned, `+ref` = the referenced expression). Solving projects every alternative
onto the *relevant* models only (the target plus the running set) as bitmasks, memoising per
node, dropping duplicates and alternatives that are subsets of another. Because every cost is
positive, a superset is strictly better than its subset, so the pruning never changes the answer
(spec/core.md §4.2-4.3). Ties go to the earlier set in the program's order, then to the earlier
alternative within the set.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamaswap_es.config.matrix_dsl import MatrixProgram, Node


@dataclass(frozen=True, slots=True)
class MatrixSolution:
    """The chosen set (None when no set contains the target), what to evict and its cost."""

    set_name: str | None
    evict: tuple[str, ...]
    cost: int
    keeps: tuple[str, ...]
    """The chosen alternative's relevant models (target included), sorted."""


def _prune(family: list[int]) -> list[int]:
    """Drop duplicates and strict subsets, keeping the first occurrence order of the rest."""
    unique = list(dict.fromkeys(family))
    if len(unique) < 2:
        return unique
    return [x for x in unique if not any(y != x and x & y == x for y in unique)]


class _Projector:
    __slots__ = ("bits", "memo", "program")

    def __init__(self, program: MatrixProgram, bits: dict[str, int]) -> None:
        self.program = program
        self.bits = bits
        self.memo: dict[int, list[int]] = {}

    def family(self, node: Node) -> list[int]:
        key = id(node)
        cached = self.memo.get(key)
        if cached is not None:
            return cached
        kind = node[0]
        if kind == "leaf":
            out = [self.bits.get(node[1], 0)]
        elif kind == "ref":
            out = self.family(self.program.sets[node[1]])
        elif kind == "or":
            merged: list[int] = []
            for child in node[1]:
                merged.extend(self.family(child))
            out = _prune(merged)
        else:  # and
            acc = [0]
            for child in node[1]:
                child_family = self.family(child)
                acc = _prune([a | b for a in acc for b in child_family])
            out = acc
        self.memo[key] = out
        return out


def solve(program: MatrixProgram, target: str, running: tuple[str, ...]) -> MatrixSolution:
    """Evictions needed to run `target` beside `running` (sorted ids); evict keeps that order."""
    if target in running:
        return MatrixSolution(set_name=None, evict=(), cost=0, keeps=(target,))
    relevant = (target, *running)
    bits = {model: 1 << i for i, model in enumerate(relevant)}
    target_bit = 1
    costs = program.costs
    projector = _Projector(program, bits)
    best: tuple[int, str, int] | None = None  # (cost, set name, alternative mask)
    for name in program.order:
        for alt in projector.family(program.sets[name]):
            if not alt & target_bit:
                continue
            cost = 0
            for model in running:
                if not alt & bits[model]:
                    cost += costs.get(model, 1)
            if best is None or cost < best[0]:
                best = (cost, name, alt)
    if best is None:
        evict_all = sum(costs.get(m, 1) for m in running)
        return MatrixSolution(set_name=None, evict=running, cost=evict_all, keeps=(target,))
    cost, name, alt = best
    evict = tuple(m for m in running if not alt & bits[m])
    keeps = tuple(sorted(m for m in relevant if alt & bits[m]))
    return MatrixSolution(set_name=name, evict=evict, cost=cost, keeps=keeps)
