"""The matrix router's DSL: tokenise, parse, validate and expand (spec/config.md §10.3).

The loader validates a matrix with llama-swap's error texts (parse errors, unknown vars or
models, undefined or circular set references) and expands every set into the concrete model
sets it allows, which selector validation needs. The solver itself lives in `core`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamaswap_es.config.models import MatrixConfig

VAR_NAME = re.compile(r"^[a-zA-Z0-9.-]{1,32}$")
MAX_ALTERNATIVES = 65_536
"""Bound on the concrete model sets one expression may expand to (ours: protects memory)."""


class MatrixError(ValueError):
    """A matrix problem; the text is llama-swap's, without the `matrix: ` prefix."""


@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "ref", "|", "&", "(", ")"
    text: str


def _is_ident_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdigit() or ch in "_-."


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch.isspace():
            i += 1
        elif ch in "|&()":
            tokens.append(Token(ch, ch))
            i += 1
        elif ch == "+":
            j = i + 1
            while j < len(expr) and _is_ident_char(expr[j]):
                j += 1
            if j == i + 1:
                raise MatrixError(f"expected set name after '+' at position {i}")
            tokens.append(Token("ref", expr[i + 1 : j]))
            i = j
        elif _is_ident_char(ch):
            j = i
            while j < len(expr) and _is_ident_char(expr[j]):
                j += 1
            tokens.append(Token("ident", expr[i:j]))
            i = j
        else:
            raise MatrixError(f"unexpected character '{ch}' at position {i}")
    return tokens


# An expression tree: ("ident", name) | ("ref", set) | ("or", [..]) | ("and", [..])
Expr = tuple


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Expr:
        expr = self.or_expr()
        extra = self.peek()
        if extra is not None:
            raise MatrixError(f'unexpected token "{_show(extra)}" after expression')
        return expr

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "|":
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_expr(self) -> Expr:
        parts = [self.atom()]
        while (tok := self.peek()) is not None and tok.kind == "&":
            self.pos += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def atom(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise MatrixError('unexpected token ""')
        self.pos += 1
        if tok.kind in ("ident", "ref"):
            return (tok.kind, tok.text)
        if tok.kind == "(":
            inner = self.or_expr()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise MatrixError("missing closing parenthesis")
            self.pos += 1
            return inner
        raise MatrixError(f'unexpected token "{_show(tok)}"')


def _show(tok: Token) -> str:
    return "+" + tok.text if tok.kind == "ref" else tok.text


def parse_dsl(set_name: str, expr: str) -> Expr:
    if not expr.strip():
        raise MatrixError(f'set "{set_name}": empty DSL expression')
    try:
        tokens = tokenize(expr)
    except MatrixError as exc:
        raise MatrixError(f'set "{set_name}": tokenize: {exc}') from None
    try:
        return _Parser(tokens).parse()
    except MatrixError as exc:
        raise MatrixError(f'set "{set_name}": parse: {exc}') from None


def _product(left: list[frozenset[str]], right: list[frozenset[str]]) -> list[frozenset[str]]:
    out: dict[frozenset[str], None] = {}
    for a in left:
        for b in right:
            out[a | b] = None
            if len(out) > MAX_ALTERNATIVES:
                raise MatrixError(f"expands to more than {MAX_ALTERNATIVES} model sets")
    return list(out)


@dataclass(frozen=True)
class CompiledMatrix:
    """Every set expanded to the concrete model sets it allows (real model ids)."""

    sets: dict[str, list[frozenset[str]]]

    def some_set_contains(self, models: set[str]) -> bool:
        return any(models <= alt for family in self.sets.values() for alt in family)


def compile_matrix(matrix: MatrixConfig, model_ids: set[str]) -> CompiledMatrix:
    """Validate in llama-swap's order and expand; errors lack the `matrix: ` prefix."""
    if not matrix.sets:
        raise MatrixError("matrix must define at least one set")
    for var, target in matrix.vars.items():
        if not VAR_NAME.match(var):
            raise MatrixError(
                f"var key \"{var}\" must contain only alphanumeric, '-' or '.' characters and "
                "be 1-32 characters long"
            )
        if target not in model_ids:
            raise MatrixError(f'var key "{var}" references unknown model "{target}"')
    for key, cost in matrix.evict_costs.items():
        if cost <= 0:
            raise MatrixError(f'evict_cost for "{key}" must be a positive integer, got {cost}')
        if key not in matrix.vars and key not in model_ids:
            raise MatrixError(f'evict_costs: unknown var or model "{key}"')
    trees = {name: parse_dsl(name, expr) for name, expr in matrix.sets.items()}
    expanded: dict[str, list[frozenset[str]]] = {}

    def expand(set_name: str, expr: Expr, visiting: tuple[str, ...]) -> list[frozenset[str]]:
        kind = expr[0]
        if kind == "ident":
            name = expr[1]
            if name in matrix.vars:
                return [frozenset({matrix.vars[name]})]
            if name in model_ids:
                return [frozenset({name})]
            raise MatrixError(f'set "{set_name}": unknown var or model "{name}"')
        if kind == "ref":
            return family_of(expr[1], visiting, referrer=set_name)
        families = [expand(set_name, part, visiting) for part in expr[1]]
        if kind == "or":
            merged: dict[frozenset[str], None] = {}
            for family in families:
                merged.update(dict.fromkeys(family))
            return list(merged)
        result = families[0]
        for family in families[1:]:
            try:
                result = _product(result, family)
            except MatrixError as exc:
                raise MatrixError(f'set "{set_name}": {exc}') from None
        return result

    def family_of(
        name: str, visiting: tuple[str, ...], referrer: str | None = None
    ) -> list[frozenset[str]]:
        if name not in trees:
            raise MatrixError(f'set "{referrer}" references undefined set "{name}"')
        if name in visiting:
            raise MatrixError(f'circular reference detected involving set "{name}"')
        if name not in expanded:
            expanded[name] = expand(name, trees[name], (*visiting, name))
        return expanded[name]

    for name in trees:
        family_of(name, ())
    return CompiledMatrix({name: expanded[name] for name in trees})
