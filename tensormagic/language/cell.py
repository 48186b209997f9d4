"""A whole cell: its statements with sums placed, its inputs and outputs, checked for meaning."""
from dataclasses import dataclass, field, replace
from typing import Dict, Tuple

from .errors import NotationSyntaxError, NotationValueError
from .ir import Affine, Reduce, Statement, Tensor, children, leaves
from .parse import parse
from .printer import subscript_text
from .sums import place_sums

RESERVED = ("torch",)


@dataclass(frozen=True)
class Cell:
    statements: Tuple[Statement, ...]   # rhs with Sigma nodes
    inputs: Tuple[str, ...]             # read before assigned, in order of first appearance
    outputs: Tuple[str, ...]            # assigned, in order of last assignment: the result is last
    ndim: Dict[str, int]                # every name's number of dimensions
    shape_only: Tuple[str, ...]         # inputs read only for their shape (targets of '=')
    index_inputs: Tuple[str, ...] = ()  # integer tensors that gather (tok in W[tok[b],d])
    # Cells made of derived formulas (second order, calculus/second.py) say more than text can:
    like: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # a target's dims: those
    #   of these names, one after the other (ΔW like W; a Hessian block like W then W)
    identity: str = None  # the name read as the identity δ (sized by its first index)
    source: Dict[str, str] = field(default_factory=dict)  # a tangent's target → the target of
    #   the statement it is the tangent of: an index only a Σ names has the size it has there
    pad: Dict[str, int] = field(default_factory=dict)  # tensors read as zero up to p places
    #   outside their bounds at shifted subscripts (pad={"x": 1})
    symmetric: Tuple[str, ...] = ()  # square matrices known symmetric (Hermitian if complex)


def analyse(text, pad=None, symmetric=()):
    """Parse a cell and check that it means something. pad: {tensor: places} read as zero
    outside its bounds at its shifted subscripts; symmetric: inputs that are symmetric
    (Hermitian) matrices."""
    statements = parse(text)
    pad = dict(pad or {})
    _check_padding(statements, pad)
    inputs, outputs, ndim, shape_only, assigned = [], [], {}, [], set()

    def read(name, dims, st, span, for_shape=False):
        _check_name(name, st, span)
        if name in ndim and ndim[name] != dims:
            raise _error(st, span, f"'{name}' is used with {_indices(ndim[name])} elsewhere, "
                                   f"here with {_indices(dims)}")
        ndim[name] = dims
        if name not in assigned and name not in inputs:
            inputs.append(name)
            if for_shape:
                shape_only.append(name)
        elif not for_shape and name in shape_only and name not in assigned:
            shape_only.remove(name)

    placed, index_inputs, valued = [], [], set()
    for st in statements:
        _check_left(st)
        _check_reductions(st, st.rhs, ())
        if st.op != ":=":
            read(st.target, st.ndim, st, st.target_span, for_shape=st.op == "=")
        for index in _scatters(st):
            _check_scatter_index(st, index, assigned)
            read(index.name, len(index.indices), st, index.span)
            if index.name not in index_inputs:
                index_inputs.append(index.name)
        for leaf in leaves(st.rhs):
            dims = leaf.ndim if isinstance(leaf, Tensor) else 0
            read(leaf.name, dims, st, leaf.span)
            for index in leaf.gathers() if isinstance(leaf, Tensor) else ():
                if index.name in assigned:
                    raise _error(st, index.span, f"the index tensor '{index.name}' must be an input "
                                                 f"of the cell (integers, not computed here)")
                if index.name not in index_inputs:
                    index_inputs.append(index.name)
        valued.update(_valued_names(st.rhs))
        if st.op != ":=":
            valued.add(st.target)
        if st.op == ":=":
            _check_name(st.target, st, st.target_span)
            if st.target in inputs:
                raise _error(st, st.target_span, f"'{st.target}' is read before it is assigned: "
                                                 f"use '=' or '+=' to update an existing tensor")
            ndim[st.target] = st.ndim
        if st.target in outputs:
            outputs.remove(st.target)
        outputs.append(st.target)
        assigned.add(st.target)
        placed.append(replace(st, rhs=place_sums(st.rhs, st.indices)))
    for st in statements:
        for leaf in _valued_leaves(st.rhs):
            if leaf.name in index_inputs and leaf.name in valued | assigned:
                raise _error(st, leaf.span, f"'{leaf.name}' indexes another tensor, so it holds "
                                            f"integers: it cannot also be used as a value")
    _check_symmetric(symmetric, inputs, ndim, index_inputs)
    return Cell(tuple(placed), tuple(inputs), tuple(outputs), ndim, tuple(shape_only),
                tuple(index_inputs), pad=pad, symmetric=tuple(symmetric))


def _check_padding(statements, pad):
    """A subscript reaching before the start (x[i+a-1]) reads a padded tensor, within its
    padding; a padded tensor is read at a shifted subscript somewhere."""
    shifted = set()
    for st in statements:
        for leaf in leaves(st.rhs):
            for a in getattr(leaf, "access", None) or ():
                if not isinstance(a, Affine) or not a.terms:
                    continue
                shifted.add(leaf.name)
                if a.offset >= 0:
                    continue
                if leaf.name not in pad:
                    raise NotationSyntaxError(
                        f"a subscript may only add: {subscript_text(a)} reads before the start of "
                        f"'{leaf.name}'; pad it to read zeros there, pad={{'{leaf.name}': {-a.offset}}} "
                        f"(--pad {leaf.name}={-a.offset} in the magic)", st.text, st.lineno, *_span(a, leaf))
                if a.offset + pad[leaf.name] < 0:
                    raise _error(st, _span(a, leaf), f"{subscript_text(a)} reaches {-a.offset} places before "
                                                     f"the start of '{leaf.name}', padded by {pad[leaf.name]}")
    for name in pad:
        if name not in shifted:
            where = next(((st, leaf.span) for st in statements for leaf in leaves(st.rhs)
                          if leaf.name == name), None)
            if where is None:
                raise NotationValueError(f"pad names '{name}', which the cell does not read")
            raise _error(where[0], where[1], f"pad names '{name}', which is read at no shifted subscript: "
                                             f"padding applies to shifted ones (x[i+a-1]); a plain "
                                             f"subscript reads the tensor as it is")


def _check_symmetric(names, inputs, ndim, index_inputs):
    """Only an input matrix (two indices, of floats) can be declared symmetric."""
    for name in names:
        if name not in inputs:
            raise NotationValueError(f"symmetric names '{name}', which is not an input of this cell "
                                     f"(inputs: {', '.join(inputs) or 'none'})")
        if name in index_inputs:
            raise NotationValueError(f"symmetric names '{name}', an index tensor (it holds integers)")
        if ndim[name] != 2:
            raise NotationValueError(f"symmetric names '{name}', which has {_indices(ndim[name])}: "
                                     f"a symmetric tensor is a square matrix, W[i,j]")


def _span(a, leaf):
    return a.span or leaf.span or (None, None)


def _valued_leaves(e):
    """The leaves read for their values (not the index tensors of gathers)."""
    if hasattr(e, "name"):
        return [e]
    return [leaf for c in children(e) for leaf in _valued_leaves(c)]


def _valued_names(e):
    return {leaf.name for leaf in _valued_leaves(e)}


def _check_reductions(st, e, bound):
    """Each reduced index occurs in its body, is not a left index, and is used nowhere else."""
    if isinstance(e, Reduce):
        inner = free_all(e.body)
        for index in e.indices:
            if index not in inner:
                raise _error(st, e.span, f"{e.op}[{','.join(e.indices)}] reduces '{index}', "
                                         f"which does not occur inside it")
            if index in st.indices:
                raise _error(st, e.span, f"'{index}' is on the left side, so it cannot be reduced")
            if index in bound:
                raise _error(st, e.span, f"'{index}' is already reduced by an enclosing reduction")
            if _unbound(st.rhs, index, e):
                raise _error(st, e.span, f"'{index}' is reduced here and also used outside "
                                         f"{e.op}[...]: give one of them another name")
        bound = bound + e.indices
    for c in children(e):
        _check_reductions(st, c, bound)


def _unbound(e, index, skip):
    """Occurrences of index outside `skip` that no other reduction binds."""
    if e is skip or (isinstance(e, Reduce) and index in e.indices):
        return 0
    if isinstance(e, Tensor):
        return list(e.occurrences()).count(index)
    return sum(_unbound(c, index, skip) for c in children(e))


def _check_left(st):
    seen = {}
    for index, span in zip(st.indices, st.index_spans):
        if index in seen:
            raise _error(st, span, f"index '{index}' is repeated on the left side")
        seen[index] = span
    on_right = set(free_all(st.rhs))
    scattered = {i for index in _scatters(st) for i in index.indices}  # their tensor sizes them
    for index, span in zip(st.indices, st.index_spans):
        if index not in on_right and index not in scattered:
            raise _error(st, span, f"index '{index}' is on the left side but on no tensor on the right")


def _scatters(st):
    """The index tensors a scatter on the left scatters by (H[tok[b], d]: tok)."""
    return [a for a in st.target_access or () if isinstance(a, Tensor)]


def _check_scatter_index(st, index, assigned):
    """A scatter's index tensor is an input, and its own statement does not read it."""
    if index.name in assigned:
        raise _error(st, index.span, f"the index tensor '{index.name}' must be an input of the cell "
                                     f"(integers, not computed here)")
    for leaf in leaves(st.rhs):
        if leaf.name == index.name:
            raise _error(st, leaf.span, f"'{index.name}' scatters on the left of this statement: its "
                                        f"right side cannot read it too (use another name for a copy)")


def free_all(e):
    """Every index used anywhere in e."""
    return [i for leaf in leaves(e) if isinstance(leaf, Tensor) for i in leaf.indices]


def _check_name(name, st, span):
    if name.startswith("_") or name in RESERVED:
        raise _error(st, span, f"the name '{name}' is reserved: names may not start with '_' "
                               f"or be one of {', '.join(RESERVED)}")


def _indices(n):
    return "1 index" if n == 1 else f"{n} indices"


def _error(st, span, message):
    col, end = span if span else (None, None)
    return NotationValueError(message, st.text, st.lineno, col, end)

