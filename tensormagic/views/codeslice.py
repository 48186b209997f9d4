"""Which lines of the generated backward compute each input's gradient: the math ↔ code link.

The backward returns one gradient per input, in the inputs' order. A gradient's lines are the
backward slice of that returned value: the statements whose results flow into it, found by
following the names each statement assigns and reads in the source's syntax tree (Python's
ast, not the text: comments and spacing play no part). The prologue that unpacks the saved
forward values is plumbing, not computation: the values a slice takes from it are listed as
what it reads from the forward instead.
"""
import ast
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class GradientSlice:
    name: str                 # the input
    lines: Tuple[int, ...]    # line numbers (1-based) in the whole source, in order
    saved: Tuple[str, ...]    # the forward's values (and inputs) those lines read
    text: str                 # those lines, dedented: a listing of their own


def gradient_slices(code, inputs):
    """{input: its GradientSlice} for each input whose gradient the backward in `code` (the
    source of fn.code) computes; an input whose gradient is None is left out."""
    backward = _function(ast.parse(code), "backward")
    returned = backward.body[-1].value
    if not isinstance(returned, ast.Tuple) or len(returned.elts) != len(inputs):
        raise ValueError(f"the backward returns no gradient per input ({', '.join(inputs)})")
    prologue, body = _split(backward.body[:-1])
    saved = _assigned(prologue)
    source = code.splitlines()
    out = {}
    for name, value in zip(inputs, returned.elts):
        if isinstance(value, ast.Constant) and value.value is None:
            continue
        steps, needed = _slice(body, _read(value))
        lines = tuple(n for s in steps for n in range(s.lineno, s.end_lineno + 1))
        reads = tuple(sorted(needed & saved))
        out[name] = GradientSlice(name, lines, reads, "\n".join(source[n - 1].strip() for n in lines))
    return out


def _function(tree, name):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ValueError(f"the source defines no {name}()")


def _split(statements):
    """(the statements that read _saved, the rest): the prologue unpacks the forward's values
    and empties the list it came in."""
    prologue = [s for s in statements if "_saved" in _read(s)]
    return prologue, [s for s in statements if s not in prologue]


def _slice(statements, needed):
    """The statements whose results flow into the names `needed` (walking back from the end),
    and the names still needed before the first of them."""
    needed, taken = set(needed), []
    for s in reversed(statements):
        if isinstance(s, ast.Delete):
            continue
        written = _assigned([s])
        if written & needed:
            taken.append(s)
            needed = (needed - written) | _read(s)
    return taken[::-1], needed


def _assigned(statements):
    """The names these statements bind."""
    return {n.id for s in statements for n in ast.walk(s)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _read(node):
    """The names a statement or expression reads."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
