"""The one data model: immutable expression trees over indexed tensors."""
from dataclasses import dataclass, field
from typing import Tuple, Union

Span = Tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """A shifted subscript: Σ coef·index + offset (x[2*i+a+1]; a negative offset, x[i+a-1],
    reads before the start of a padded tensor); with no terms, a fixed position (x[b,0]; a
    negative offset counts from the end, x[b,-1])."""
    terms: Tuple[Tuple[int, str], ...]
    offset: int = 0
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Tensor:
    """A tensor read at `indices`. A plain read has access None; any other subscript (shifted,
    fixed, gathered) keeps one entry per dimension in `access` (an index name, an Affine, or
    the integer Tensor it gathers by), and `indices` lists the indices it depends on."""
    name: str
    indices: Tuple[str, ...]
    span: Span = field(default=None, compare=False)
    access: tuple = None

    @property
    def ndim(self):
        return len(self.access) if self.access is not None else len(self.indices)

    def occurrences(self):
        """Every index its subscripts mention, with repetition (A[b,idx[b]] mentions b twice)."""
        if self.access is None:
            return self.indices
        return tuple(i for a in self.access for i in
                     ((a,) if isinstance(a, str) else a.occurrences() if isinstance(a, Tensor)
                      else tuple(i for _, i in a.terms)))

    def gathers(self):
        """The index tensors this read gathers by."""
        return tuple(a for a in self.access or () if isinstance(a, Tensor))


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
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Pow:
    base: object
    exponent: object


@dataclass(frozen=True)
class Sigma:
    """Σ over `indices` of `body`: where a sum sits, made explicit."""
    indices: Tuple[str, ...]
    body: object


@dataclass(frozen=True)
class Reduce:
    """An explicit reduction op[indices](body): sum prod max min logsumexp mean."""
    op: str
    indices: Tuple[str, ...]
    body: object
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Binary:
    """Elementwise max(a, b) or min(a, b)."""
    func: str
    left: object
    right: object
    span: Span = field(default=None, compare=False)


@dataclass(frozen=True)
class Indicator:
    """1 where a == b, else 0: only in derived formulas (the gradient of max and min)."""
    left: object
    right: object


REDUCTIONS = ("sum", "prod", "max", "min", "logsumexp", "mean")

Expr = Union[Tensor, Scalar, Const, Add, Mul, Call, Pow, Sigma, Reduce, Binary]


@dataclass(frozen=True)
class Statement:
    target: str
    indices: Tuple[str, ...]   # the left side's indices (never summed), those inside a scatter's
    #                            index tensor included: H[tok[b], d] has (b, d)
    op: str  # ":=", "=", "+="
    rhs: Expr
    text: str
    lineno: int
    target_span: Span = field(default=None, compare=False)
    index_spans: tuple = field(default=(), compare=False)
    target_access: tuple = None  # a scatter on the left: one entry per dim of the target, an
    #                              index name or the integer Tensor it scatters by (tok[b])

    @property
    def target_read(self):
        """The target as its subscripts read it (H[tok[b],d] for a scatter)."""
        if self.target_access is None:
            return Tensor(self.target, self.indices)
        return Tensor(self.target, self.indices, None, self.target_access)

    @property
    def ndim(self):
        return len(self.target_access) if self.target_access is not None else len(self.indices)


def children(e):
    if isinstance(e, Add):
        return e.terms
    if isinstance(e, Mul):
        return e.factors
    if isinstance(e, Call):
        return (e.arg,)
    if isinstance(e, Pow):
        return (e.base, e.exponent)
    if isinstance(e, (Sigma, Reduce)):
        return (e.body,)
    if isinstance(e, (Binary, Indicator)):
        return (e.left, e.right)
    return ()


def with_children(e, kids):
    """e rebuilt over new children (the inverse of children())."""
    if isinstance(e, Add):
        return Add(kids, e.signs)
    if isinstance(e, Mul):
        return Mul(kids)
    if isinstance(e, Call):
        return Call(e.func, kids[0], e.span)
    if isinstance(e, Pow):
        return Pow(*kids)
    if isinstance(e, Sigma):
        return Sigma(e.indices, kids[0])
    if isinstance(e, Reduce):
        return Reduce(e.op, e.indices, kids[0], e.span)
    if isinstance(e, Binary):
        return Binary(e.func, *kids, e.span)
    if isinstance(e, Indicator):
        return Indicator(*kids)
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
    if isinstance(e, (Sigma, Reduce)):
        return tuple(i for i in free(e.body) if i not in e.indices)
    return unique(i for c in children(e) for i in free(c))


def leaves(e):
    """Every Tensor and Scalar leaf, left to right."""
    if isinstance(e, (Tensor, Scalar)):
        yield e
    if isinstance(e, Tensor):
        yield from e.gathers()
    for c in children(e):
        yield from leaves(c)
