"""Refuse YAML whose aliases refer to themselves or expand without bound (an "alias bomb").

PyYAML composes `a: &a [*a]` into a list that contains itself and `lol2: [*lol1, *lol1, …]`
chains into a tree that is small in memory but astronomically large once walked: the first
ended in a 3,000-line RecursionError from `check-config` and from the server, the second took
minutes and gigabytes (issue 13). yaml.v3, which llama-swap uses, refuses both; so do we, with
its wording and rule, so a file llama-swap accepts loads here and one it refuses is refused.

The node graph is walked as yaml.v3's decoder walks the document, expanding every alias, and
stops at the first alias that contains itself or as soon as the share of nodes reached through
aliases passes yaml.v3's `allowedAliasRatio`: a bomb is refused after a few thousand steps.
"""

from __future__ import annotations

import re

from yaml import MarkedYAMLError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, SequenceNode

_ANCHOR = re.compile(r"&([^\s,\[\]{}]+)")

# yaml.v3 decode.go: the share of decoded nodes allowed to come from alias expansion.
_RATIO_LOW_COUNT = 400_000
_RATIO_HIGH_COUNT = 4_000_000


class AliasError(MarkedYAMLError):
    """A self-referencing anchor or excessive aliasing, at the anchor's line."""

    def __init__(self, problem: str, mark: Mark):
        super().__init__(problem=problem, problem_mark=mark)


def allowed_alias_ratio(decode_count: int) -> float:
    """yaml.v3's bound: 99% of a small document may come from aliases, 10% of a huge one."""
    if decode_count <= _RATIO_LOW_COUNT:
        return 0.99
    if decode_count >= _RATIO_HIGH_COUNT:
        return 0.10
    span = _RATIO_HIGH_COUNT - _RATIO_LOW_COUNT
    return 0.99 - 0.89 * (decode_count - _RATIO_LOW_COUNT) / span


def check_aliases(root: Node | None, text: str) -> None:
    """Raise `AliasError` (a YAMLError, so callers report it with the file and line) when an
    anchor's value contains itself or aliases expand the document past yaml.v3's bound."""
    if root is None:
        return
    decoded = aliased = 0
    defined: set[int] = set()
    alias_edges: set[tuple[int, int]] = set()  # (parent, child index) written as `*name`
    expanding: list[Node] = []  # the aliases being expanded, outermost first
    # An explicit stack instead of recursion: the point is to survive deep expansions.
    # Entries: (node, parent id, index in the parent, leaving an alias expansion?)
    stack: list[tuple[Node, int, int, bool]] = [(root, 0, 0, False)]
    while stack:
        node, parent, index, leaving = stack.pop()
        if leaving:
            expanding.pop()
            continue
        if expanding:  # walking an alias's value again: its own aliases are known
            is_alias = (parent, index) in alias_edges
        else:  # the document as written: a node met before is an alias of it
            is_alias = id(node) in defined
            if is_alias:
                alias_edges.add((parent, index))
            defined.add(id(node))
        if is_alias:
            decoded += 1  # the alias node itself, then its value, as yaml.v3 counts
            aliased += bool(expanding)
            if any(node is target for target in expanding):
                raise AliasError(
                    f"anchor '{_anchor_name(node, text)}' value contains itself", node.start_mark
                )
            expanding.append(node)
            stack.append((node, parent, index, True))
        decoded += 1
        aliased += bool(expanding)
        if aliased > 100 and decoded > 1000 and aliased / decoded > allowed_alias_ratio(decoded):
            target = expanding[0] if expanding else node
            raise AliasError(
                "document contains excessive aliasing (anchor "
                f"'{_anchor_name(target, text)}' expands to too many values)",
                target.start_mark,
            )
        children = _children(node)
        for child_index in range(len(children) - 1, -1, -1):
            stack.append((children[child_index], id(node), child_index, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _anchor_name(node: Node, text: str) -> str:
    """The anchor's name, read from the text at the node's start (PyYAML does not keep it)."""
    match = _ANCHOR.match(text, node.start_mark.index) if node.start_mark else None
    return match.group(1) if match else "?"
