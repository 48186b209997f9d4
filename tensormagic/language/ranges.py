"""Each index's range in one statement, from the shapes it is read with.

Every index runs from 0. A plain subscript (x[i]) gives its index the tensor's size
there, and all plain subscripts of an index must agree; `sizes=` gives an index no
plain subscript fixes (a pooling window; ignored where one does). Shifted subscripts (x[i+a], x[2*i+a]) then
fix the indices still unknown: each takes the largest range keeping every access in
bounds (a "valid" convolution). An index alone in a shifted subscript (x[i+1],
x[2*i]) is narrowed to stay in bounds (d[i] := x[i+1] - x[i] has n-1 entries), and
its plain subscripts may be longer (they are read in part); any other access out of
bounds is an error naming it.
"""
from .errors import NotationValueError
from .ir import Affine, Tensor, leaves
from .printer import subscript_text


def index_sizes(st, env, vars, given=None):
    """{index: size} for statement st; env maps names to var ids, given is sizes=."""
    sizes, where, shifted = {}, {}, []
    alone = _alone(st)
    for name, access, span in _uses(st):
        shape = vars[env[name]].shape
        shown = _shown(name, access)
        if len(shape) != len(access):
            what = "as a scalar" if not access else \
                f"with {len(access)} ind{'ex' if len(access) == 1 else 'ices'}"
            hint = f": write one index per dimension, {name}[{','.join('ijklmn'[:len(shape)])}]" \
                if shape and len(shape) <= 6 else ""
            raise _error(st, span, f"'{name}' has shape {tuple(shape)} but is used {what} "
                                   f"in {shown}{hint}")
        for dim, (a, size) in enumerate(zip(access, shape)):
            if isinstance(a, str) and a in alone:  # narrowed below anyway: the smallest
                sizes[a] = min(sizes.get(a, size), size)
                where.setdefault(a, (shown, dim))
            elif isinstance(a, str):
                if a in sizes and sizes[a] != size:
                    first, first_dim = where[a]
                    raise _error(st, span, f"index '{a}' has size {sizes[a]} in {first} (dim {first_dim}) "
                                           f"but size {size} in {shown} (dim {dim})")
                sizes.setdefault(a, size)
                where.setdefault(a, (shown, dim))
            elif isinstance(a, Affine) and not a.terms:
                if not -size <= a.offset < size:
                    raise _error(st, span, f"position {a.offset} is out of range in {shown}: "
                                           f"dim {dim} of '{name}' has size {size}")
            elif isinstance(a, Affine):
                shifted.append((a, size, shown, span))
    used = {i for a, _, _, _ in shifted for _, i in a.terms}
    for index, size in (given or {}).items():
        if index in used:  # only where no shape fixes it: a kernel index elsewhere keeps its size
            sizes.setdefault(index, size)
    _fill_unknown(st, sizes, shifted)
    _narrow(sizes, shifted)
    _check(st, sizes, shifted)
    return sizes


def _fill_unknown(st, sizes, shifted):
    """Indices only shifted subscripts fix: the largest in-bounds range, round by round."""
    while True:
        bounds = {}
        for a, size, _, _ in shifted:
            unknown = {i for _, i in a.terms if i not in sizes}
            if len(unknown) == 1:
                u = unknown.pop()
                bounds[u] = min(bounds.get(u, size), _bound(a, u, size, sizes))
        if not bounds:
            break
        sizes.update(bounds)
    for a, _, shown, span in shifted:
        unknown = [i for _, i in a.terms if i not in sizes]
        if unknown:  # name a reduced index (a window) before a left one
            i = sorted(unknown, key=lambda i: i in st.indices)[0]
            raise _error(st, span, f"index '{i}' in {shown} has no size: no plain subscript fixes it; "
                                   f"give it with sizes={{'{i}': n}} (--sizes {i}=n in the magic)")


def _bound(a, u, size, sizes):
    """The largest range of u keeping a in bounds, the other indices at their sizes."""
    rest = a.offset + sum(c * (sizes[i] - 1) for c, i in a.terms if i != u)
    coef = sum(c for c, i in a.terms if i == u)
    return (size - 1 - rest) // coef + 1


def _alone(st):
    """Indices alone in some shifted subscript (x[i+1], x[2*i])."""
    found = set()
    for _, access, _ in _uses(st):
        for a in access:
            if isinstance(a, Affine) and len({i for _, i in a.terms}) == 1:
                found.add(a.terms[0][1])
    return found


def _narrow(sizes, shifted):
    for a, size, _, _ in shifted:
        alone = {i for _, i in a.terms}
        if len(alone) == 1:
            u = alone.pop()
            sizes[u] = min(sizes[u], _bound(a, u, size, sizes))


def _check(st, sizes, shifted):
    for a, size, shown, span in shifted:
        top = a.offset + sum(c * (sizes[i] - 1) for c, i in a.terms)
        empty = [i for _, i in a.terms if sizes[i] < 1]
        if empty or top >= size:
            ranges = ", ".join(f"'{i}' of size {sizes[i]}" for i in dict.fromkeys(i for _, i in a.terms))
            raise _error(st, span, f"{shown} does not fit: with {ranges} it reaches {top}, "
                                   f"but that dim has size {size}")


def _uses(st):
    """(name, subscripts, span) of every tensor a statement reads, its old target included."""
    if st.op != ":=":
        yield st.target, st.indices, st.target_span
    for leaf in leaves(st.rhs):
        if isinstance(leaf, Tensor):
            yield leaf.name, leaf.access if leaf.access is not None else leaf.indices, leaf.span
        else:
            yield leaf.name, (), leaf.span


def _shown(name, access):
    return f"{name}[{','.join(subscript_text(a) for a in access)}]" if access else name


def _error(st, span, message):
    return NotationValueError(message, st.text, st.lineno, *(span or (None, None)))
