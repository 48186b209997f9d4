"""The plan as data: vars (each value with its index labels and shape), the ops that make
them, and the program they form. codegen turns a program into source; describe into a table."""
from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass
class Var:
    id: int
    labels: Tuple[str, ...]
    shape: Tuple[int, ...]
    needs: bool = False        # depends on an input whose gradient is wanted
    name: Optional[str] = None  # input or output name
    real: bool = True          # real-valued (in a complex program: abs and what only it feeds)


@dataclass(frozen=True)
class Ref:
    """A var read with these index labels (repeats allowed: a diagonal)."""
    var: int
    labels: Tuple[str, ...]


@dataclass
class Op:
    kind: str        # a key of compiler.kinds.KINDS: input einsum1 pair scale add map pow emit cast ...
    out: int
    args: tuple = ()
    info: dict = field(default_factory=dict)


@dataclass
class Program:
    vars: list
    ops: list
    inputs: Tuple[int, ...]    # var ids, in the cell's input order
    outputs: Tuple[int, ...]   # var ids of the final value of each output name
    complex: bool = False
    products: tuple = ()       # (operand refs, output labels, sizes) of each planned product
    starts: tuple = ()         # index of each statement's first op
    symmetric: tuple = ()      # input var ids whose gradient is projected on symmetric matrices
