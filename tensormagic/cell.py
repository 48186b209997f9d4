"""A whole cell: its statements with sums placed, its inputs and outputs, checked for meaning."""
from dataclasses import dataclass, replace
from typing import Dict, Tuple

from .errors import NotationValueError
from .ir import Statement, Tensor, leaves
from .parse import parse
from .sums import place_sums

RESERVED = ("torch",)


@dataclass(frozen=True)
class Cell:
    statements: Tuple[Statement, ...]   # rhs with Sigma nodes
    inputs: Tuple[str, ...]             # read before assigned, in order of first appearance
    outputs: Tuple[str, ...]            # assigned, in order of last assignment: the result is last
    ndim: Dict[str, int]                # every name's number of dimensions
    shape_only: Tuple[str, ...]         # inputs read only for their shape (targets of '=')


def analyse(text):
    """Parse a cell and check that it means something."""
    statements = parse(text)
    inputs, outputs, ndim, shape_only, assigned = [], [], {}, [], set()

    def read(name, dims, st, span, for_shape=False):
        _check_name(name, st, span)
        if name in ndim and ndim[name] != dims:
            raise _error(st, span, f"'{name}' is used with {ndim[name]} indices elsewhere, "
                                   f"here with {dims}")
        ndim[name] = dims
        if name not in assigned and name not in inputs:
            inputs.append(name)
            if for_shape:
                shape_only.append(name)
        elif not for_shape and name in shape_only and name not in assigned:
            shape_only.remove(name)

    placed = []
    for st in statements:
        _check_left(st)
        if st.op != ":=":
            read(st.target, len(st.indices), st, st.target_span, for_shape=st.op == "=")
        for leaf in leaves(st.rhs):
            dims = len(leaf.indices) if isinstance(leaf, Tensor) else 0
            read(leaf.name, dims, st, leaf.span)
        if st.op == ":=":
            _check_name(st.target, st, st.target_span)
            if st.target in inputs:
                raise _error(st, st.target_span, f"'{st.target}' is read before it is assigned: "
                                                 f"use '=' or '+=' to update an existing tensor")
            ndim[st.target] = len(st.indices)
        if st.target in outputs:
            outputs.remove(st.target)
        outputs.append(st.target)
        assigned.add(st.target)
        placed.append(replace(st, rhs=place_sums(st.rhs, st.indices)))
    return Cell(tuple(placed), tuple(inputs), tuple(outputs), ndim, tuple(shape_only))


def _check_left(st):
    seen = {}
    for index, span in zip(st.indices, st.index_spans):
        if index in seen:
            raise _error(st, span, f"index '{index}' is repeated on the left side")
        seen[index] = span
    on_right = set(free_all(st.rhs))
    for index, span in zip(st.indices, st.index_spans):
        if index not in on_right:
            raise _error(st, span, f"index '{index}' is on the left side but on no tensor on the right")


def free_all(e):
    """Every index used anywhere in e."""
    return [i for leaf in leaves(e) if isinstance(leaf, Tensor) for i in leaf.indices]


def _check_name(name, st, span):
    if name.startswith("_") or name in RESERVED:
        raise _error(st, span, f"the name '{name}' is reserved: names may not start with '_' "
                               f"or be one of {', '.join(RESERVED)}")


def _error(st, span, message):
    col, end = span if span else (None, None)
    return NotationValueError(message, st.text, st.lineno, col, end)

