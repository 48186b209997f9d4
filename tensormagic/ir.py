"""The one data model: immutable expression trees over indexed tensors."""
from dataclasses import dataclass, field
from typing import Tuple, Union

Span = Tuple[int, int]


@dataclass(frozen=True)
class Tensor:
    name: str
    indices: Tuple[str, ...]
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Scalar:
    name: str
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Const:
    value: Union[int, float, complex]


@dataclass(frozen=True)
class Add:
    terms: tuple
    signs: Tuple[int, ...]


@dataclass(frozen=True)
class Mul:
    factors: tuple


@dataclass(frozen=True)
class Call:
    func: str
    arg: object


@dataclass(frozen=True)
class Pow:
    base: object
    exponent: object


@dataclass(frozen=True)
class Sigma:
    """Σ over `indices` of `body`: where a sum sits, made explicit."""
    indices: Tuple[str, ...]
    body: object


Expr = Union[Tensor, Scalar, Const, Add, Mul, Call, Pow, Sigma]


@dataclass(frozen=True)
class Statement:
    target: str
    indices: Tuple[str, ...]
    op: str  # ":=", "=", "+="
    rhs: Expr
    text: str
    lineno: int
    target_span: Span = field(default=None, compare=False)
    index_spans: tuple = field(default=(), compare=False)


def children(e):
    if isinstance(e, Add):
        return e.terms
    if isinstance(e, Mul):
        return e.factors
    if isinstance(e, Call):
        return (e.arg,)
    if isinstance(e, Pow):
        return (e.base, e.exponent)
    if isinstance(e, Sigma):
        return (e.body,)
    return ()


def with_children(e, kids):
    """e rebuilt over new children (the inverse of children())."""
    if isinstance(e, Add):
        return Add(kids, e.signs)
    if isinstance(e, Mul):
        return Mul(kids)
    if isinstance(e, Call):
        return Call(e.func, kids[0])
    if isinstance(e, Pow):
        return Pow(*kids)
    if isinstance(e, Sigma):
        return Sigma(e.indices, kids[0])
    return e


def signed_sum(pieces, signs):
    """'a + b - c' from pieces and their signs (a leading minus for a negative first term)."""
    out = ""
    for k, (piece, sign) in enumerate(zip(pieces, signs)):
        if k == 0:
            out = piece if sign > 0 else f"-{piece}"
        else:
            out += f" + {piece}" if sign > 0 else f" - {piece}"
    return out


def unique(seq):
    """Items of seq in order of first appearance, without repeats."""
    return tuple(dict.fromkeys(seq))


def free(e):
    """The indices an expression's value depends on, in order of first appearance."""
    if isinstance(e, Tensor):
        return unique(e.indices)
    if isinstance(e, Sigma):
        return tuple(i for i in free(e.body) if i not in e.indices)
    return unique(i for c in children(e) for i in free(c))


def leaves(e):
    """Every Tensor and Scalar leaf, left to right."""
    if isinstance(e, (Tensor, Scalar)):
        yield e
    for c in children(e):
        yield from leaves(c)
