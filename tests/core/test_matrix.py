"""The matrix DSL and solver: spec/core.md §9 scenarios 56, 57 and the DSL part of 59, and the
error texts of spec/config.md §10.3 (the loader adds the `matrix: ` prefix)."""

from __future__ import annotations

import pytest

from llamaswap_es.config.matrix_dsl import MatrixError, compile_matrix, parse_expression
from llamaswap_es.core.matrix_solver import solve

MODELS = ["a", "b", "c", "x", "target"]


def program(sets, vars_=(), costs=(), model_ids=MODELS):
    return compile_matrix(list(sets), list(vars_), list(costs), model_ids)


def test_s56i_costs_pick_the_cheaper_eviction() -> None:
    p = program([("a_c", "a & c"), ("a_b", "a & b")], costs=[("b", 10), ("c", 1)])
    s = solve(p, "a", ("b", "c"))
    assert (s.set_name, s.evict, s.cost) == ("a_b", ("c",), 1)


def test_s56ii_ties_go_to_the_earlier_set() -> None:
    p = program([("first", "a & b"), ("second", "a & c")])
    s = solve(p, "a", ())
    assert (s.set_name, s.evict) == ("first", ())


def test_s56iii_ties_go_to_the_first_alternative() -> None:
    assert solve(program([("s", "a & (b | c)")]), "a", ("b", "c")).evict == ("c",)


def test_s56iv_a_model_in_no_set_runs_alone() -> None:
    s = solve(program([("s", "a & b")]), "x", ("a", "b"))
    assert (s.set_name, s.evict, s.keeps) == (None, ("a", "b"), ("x",))


def test_s56v_a_running_target_evicts_nothing() -> None:
    assert solve(program([("sa", "a"), ("sb", "b")]), "b", ("a", "b")).evict == ()


def test_s56vi_a_superset_alternative_wins() -> None:
    assert solve(program([("s", "target & (a | (a & b))")]), "target", ("a", "b")).evict == ()


VARS = [
    ("g", "gemma"),
    ("q", "qwen"),
    ("m", "mistral"),
    ("v", "voxtral"),
    ("e", "reranker"),
    ("L", "llama70B"),
]
BIG = ["gemma", "qwen", "mistral", "voxtral", "reranker", "llama70B"]


def test_s57i_references_chain() -> None:
    p = program(
        [("llms", "g|q|m"), ("with_tts", "+llms & v"), ("mega", "+with_tts & e")],
        VARS,
        model_ids=BIG,
    )
    s = solve(p, "reranker", ("gemma", "voxtral"))
    assert (s.set_name, s.evict, s.keeps) == ("mega", (), ("gemma", "reranker", "voxtral"))


def test_s57ii_vars_and_costs() -> None:
    p = program(
        [("standard", "(g|q|m) & v"), ("full", "L")], VARS, [("L", 30), ("v", 50)], model_ids=BIG
    )
    s = solve(p, "llama70B", ("voxtral",))
    assert (s.set_name, s.evict, s.cost) == ("full", ("voxtral",), 50)
    s = solve(p, "gemma", ("voxtral",))
    assert (s.set_name, s.evict) == ("standard", ())


def test_s57iii_and_binds_tighter_than_or() -> None:
    assert parse_expression("a | b & c") == (
        "or",
        (("leaf", "a"), ("and", (("leaf", "b"), ("leaf", "c")))),
    )
    p = program([("s", "a | b & c")])
    assert solve(p, "b", ("a", "c")).evict == ("a",)


def test_s57iv_referenced_sets_come_first_in_tie_breaks() -> None:
    p = program([("early", "+late & x"), ("late", "a & b")])
    assert p.order == ("late", "early")
    # both allow a with b; the referenced set wins the tie even though it is written later
    assert solve(p, "a", ("b",)).set_name == "late"


def test_cartesian_product_order() -> None:
    p = program([("s", "(a | b) & (c | x)")])
    assert solve(p, "a", ("b", "c", "x")).evict == ("b", "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'set "s": empty DSL expression'),
        ("   ", 'set "s": empty DSL expression'),
        ("(a", 'set "s": parse: missing closing parenthesis'),
        ("a)", 'set "s": parse: unexpected token ")" after expression'),
        ("()", 'set "s": parse: unexpected token ")"'),
        ("+", "set \"s\": tokenize: expected set name after '+' at position 1"),
        ("+ a", "set \"s\": tokenize: expected set name after '+' at position 1"),
        ("a @ b", "set \"s\": tokenize: unexpected character '@' at position 2"),
        ("a b", 'set "s": parse: unexpected token "b" after expression'),
        ("& a", 'set "s": parse: unexpected token "&"'),
        ("a &", 'set "s": parse: unexpected token ""'),
        ("nobody", 'set "s": unknown var or model "nobody"'),
        ("+missing", 'set "s" references undefined set "missing"'),
    ],
)
def test_s59_dsl_errors(text: str, message: str) -> None:
    with pytest.raises(MatrixError) as err:
        program([("s", text)])
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_s59_cycles_and_config_errors() -> None:
    with pytest.raises(MatrixError, match='circular reference detected involving set "x"'):
        program([("x", "+y"), ("y", "+x")])
    with pytest.raises(MatrixError, match='circular reference detected involving set "x"'):
        program([("x", "a | +x")])
    with pytest.raises(MatrixError, match='evict_cost for "a" must be a positive integer, got 0'):
        program([("s", "a")], costs=[("a", 0)])
    with pytest.raises(MatrixError, match='evict_costs: unknown var or model "zz"'):
        program([("s", "a")], costs=[("zz", 3)])
    with pytest.raises(MatrixError, match='var key "a_b" must contain only alphanumeric'):
        program([("s", "a")], vars_=[("a_b", "a")])
    with pytest.raises(MatrixError, match="be 1-32 characters long"):
        program([("s", "a")], vars_=[("v" * 33, "a")])
    with pytest.raises(MatrixError, match='var key "v" references unknown model "ghost"'):
        program([("s", "a")], vars_=[("v", "ghost")])
    with pytest.raises(MatrixError, match="matrix must define at least one set"):
        program([])


def test_identifiers_accept_unicode_letters_digits_and_punctuation() -> None:
    p = program([("s", "modèle-1.5_x & b")], model_ids=["modèle-1.5_x", "b"])
    assert solve(p, "b", ("modèle-1.5_x",)).evict == ()
