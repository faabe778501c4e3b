"""llama-swap's matrix DSL: tokenizer, parser and the compiled program the solver walks.

    expr := and ( '|' and )*        # OR, lowest precedence
    and  := atom ( '&' atom )*      # AND
    atom := IDENT | '+' SETNAME | '(' expr ')'

An identifier is a var name or (failing that) a real model id; `+name` inlines another set.
Errors are `MatrixError` (a `ValueError`) carrying llama-swap's own wording (spec/config.md
§10.3), without the `matrix: ` prefix the config loader adds, so users can search for them.
This is the grammar's only implementation: the config loader validates through
`compile_matrix` (config/matrix.py, which also expands sets for selector checks) and the
reducer compiles the same way from `MatrixPlanner`. Pure: no I/O, no clock. It lives in
`config/` because the config is the language's first reader; the core, a floor above, imports
it from here (the config never imports the core).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# AST nodes are tuples, cheap to build and to walk: ("leaf", model) | ("ref", set name) |
# ("and", (children…)) | ("or", (children…)).
Node = tuple[Any, ...]

_TOK_IDENT, _TOK_REF, _TOK_AND, _TOK_OR, _TOK_LPAREN, _TOK_RPAREN, _TOK_EOF = range(7)
_SINGLE = {"&": _TOK_AND, "|": _TOK_OR, "(": _TOK_LPAREN, ")": _TOK_RPAREN}
_VAR_KEY = re.compile(r"[A-Za-z0-9.-]{1,32}")


class MatrixError(ValueError):
    """A matrix definition (DSL, vars or evict_costs) is invalid; the text is llama-swap's."""


def go_quote(text: str) -> str:
    """Quote like Go's %q (double quotes, escapes), so messages match llama-swap's."""
    return json.dumps(text, ensure_ascii=False)


def _is_ident_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch in "_-."


def tokenize(text: str) -> list[tuple[int, str]]:
    """Split a DSL string into (kind, text) tokens, ending with EOF. Positions count characters."""
    tokens: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SINGLE:
            tokens.append((_SINGLE[ch], ch))
            i += 1
        elif ch == "+":
            i += 1
            start = i
            while i < n and _is_ident_char(text[i]):
                i += 1
            if i == start:
                raise MatrixError(f"expected set name after '+' at position {start}")
            tokens.append((_TOK_REF, text[start:i]))
        elif _is_ident_char(ch):
            start = i
            while i < n and _is_ident_char(text[i]):
                i += 1
            tokens.append((_TOK_IDENT, text[start:i]))
        else:
            raise MatrixError(f"unexpected character '{ch}' at position {i}")
    tokens.append((_TOK_EOF, ""))
    return tokens


class _Parser:
    __slots__ = ("pos", "tokens")

    def __init__(self, tokens: list[tuple[int, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[int, str]:
        return self.tokens[self.pos]

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.peek()[0] == _TOK_OR:
            self.pos += 1
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else ("or", tuple(children))

    def parse_and(self) -> Node:
        children = [self.parse_atom()]
        while self.peek()[0] == _TOK_AND:
            self.pos += 1
            children.append(self.parse_atom())
        return children[0] if len(children) == 1 else ("and", tuple(children))

    def parse_atom(self) -> Node:
        kind, text = self.peek()
        if kind == _TOK_IDENT:
            self.pos += 1
            return ("leaf", text)
        if kind == _TOK_REF:
            self.pos += 1
            return ("ref", text)
        if kind == _TOK_LPAREN:
            self.pos += 1
            inner = self.parse_or()
            if self.peek()[0] != _TOK_RPAREN:
                raise MatrixError("missing closing parenthesis")
            self.pos += 1
            return inner
        raise MatrixError(f"unexpected token {go_quote(text)}")


def parse_expression(text: str) -> Node:
    """Parse one DSL expression into an AST (identifiers not yet resolved)."""
    if not text.strip():
        raise MatrixError("empty DSL expression")
    try:
        tokens = tokenize(text.strip())
    except MatrixError as exc:
        raise MatrixError(f"tokenize: {exc}") from None
    parser = _Parser(tokens)
    try:
        root = parser.parse_or()
        kind, rest = parser.peek()
        if kind != _TOK_EOF:
            raise MatrixError(f"unexpected token {go_quote(rest)} after expression")
    except MatrixError as exc:
        raise MatrixError(f"parse: {exc}") from None
    return root


@dataclass(frozen=True, slots=True)
class MatrixProgram:
    """A compiled matrix: resolved expressions, the solver's set order and the eviction costs."""

    sets: dict[str, Node]
    """Set name -> expression whose leaves are real model ids and refs are set names."""
    order: tuple[str, ...]
    """Tie-break order: a dependency-first walk (a referenced set precedes its referrer)."""
    costs: dict[str, int]
    """Model id -> eviction cost (unlisted models cost 1)."""


def validate_vars(vars_: Sequence[tuple[str, str]], model_ids: Iterable[str]) -> dict[str, str]:
    """Check var keys and targets the way llama-swap does; returns var name -> model id."""
    known = set(model_ids)
    out: dict[str, str] = {}
    for key, model in vars_:
        if not _VAR_KEY.fullmatch(key):
            raise MatrixError(
                f"var key {go_quote(key)} must contain only alphanumeric, '-' or '.' characters "
                "and be 1-32 characters long"
            )
        if model not in known:
            raise MatrixError(f"var key {go_quote(key)} references unknown model {go_quote(model)}")
        out[key] = model
    return out


def resolve_costs(
    evict_costs: Sequence[tuple[str, int]], variables: dict[str, str], model_ids: Iterable[str]
) -> dict[str, int]:
    """Map evict_costs keys (var names first, then model ids) to model ids; values must be > 0."""
    known = set(model_ids)
    out: dict[str, int] = {}
    for key, cost in evict_costs:
        if not isinstance(cost, int) or isinstance(cost, bool) or cost <= 0:
            raise MatrixError(
                f"evict_cost for {go_quote(key)} must be a positive integer, got {cost}"
            )
        if key in variables:
            out[variables[key]] = cost
        elif key in known:
            out[key] = cost
        else:
            raise MatrixError(f"evict_costs: unknown var or model {go_quote(key)}")
    return out


def _resolve(
    node: Node, set_name: str, variables: dict[str, str], known: set[str], sets: set[str]
) -> Node:
    kind = node[0]
    if kind == "leaf":
        name = node[1]
        if name in variables:
            return ("leaf", variables[name])
        if name in known:
            return node
        raise MatrixError(f"set {go_quote(set_name)}: unknown var or model {go_quote(name)}")
    if kind == "ref":
        if node[1] not in sets:
            raise MatrixError(
                f"set {go_quote(set_name)} references undefined set {go_quote(node[1])}"
            )
        return node
    return (kind, tuple(_resolve(c, set_name, variables, known, sets) for c in node[1]))


def _refs(node: Node) -> list[str]:
    """Referenced set names in the order they appear (left to right)."""
    if node[0] == "ref":
        return [node[1]]
    if node[0] == "leaf":
        return []
    out: list[str] = []
    for child in node[1]:
        out.extend(_refs(child))
    return out


def _topological_order(sets: dict[str, Node], base_order: Sequence[str]) -> tuple[str, ...]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str) -> None:
        mark = state.get(name)
        if mark == 2:
            return
        if mark == 1:
            raise MatrixError(f"circular reference detected involving set {go_quote(name)}")
        state[name] = 1
        for ref in _refs(sets[name]):
            visit(ref)
        state[name] = 2
        order.append(name)

    for name in base_order:
        visit(name)
    return tuple(order)


def compile_matrix(
    sets: Sequence[tuple[str, str]],
    vars_: Sequence[tuple[str, str]] = (),
    evict_costs: Sequence[tuple[str, int]] = (),
    model_ids: Iterable[str] = (),
) -> MatrixProgram:
    """Validate and compile a matrix in llama-swap's order of checks.

    `sets` is in the order ties are broken by (the loader decides it, spec/config.md §10.3);
    `model_ids` are the real ids an identifier may name. Raises `MatrixError` naming the set.
    """
    known = set(model_ids)
    if not sets:
        raise MatrixError("matrix must define at least one set")
    variables = validate_vars(vars_, known)
    costs = resolve_costs(evict_costs, variables, known)
    names = {name for name, _ in sets}
    resolved: dict[str, Node] = {}
    for name, text in sets:  # each set parsed, then its names resolved, before the next
        if not isinstance(text, str):
            raise MatrixError(f"failed to decode DSL for set {go_quote(name)}: not a string")
        try:
            node = parse_expression(text)
        except MatrixError as exc:
            raise MatrixError(f"set {go_quote(name)}: {exc}") from None
        resolved[name] = _resolve(node, name, variables, known, names)
    order = _topological_order(resolved, [name for name, _ in sets])
    return MatrixProgram(sets=resolved, order=order, costs=costs)
