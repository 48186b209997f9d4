"""Each index's range in one statement, from the shapes it is read with.

Every index runs from 0. A plain subscript (x[i]) gives its index the tensor's size
there, and all plain subscripts of an index must agree; `sizes=` gives an index no
plain subscript fixes (a pooling window; ignored where one does). Shifted subscripts (x[i+a], x[2*i+a]) then
fix the indices still unknown: each takes the largest range keeping every access in
bounds (a "valid" convolution). An index alone in a shifted subscript (x[i+1],
x[2*i]) is narrowed to stay in bounds (d[i] := x[i+1] - x[i] has n-1 entries), and
its plain subscripts may be longer (they are read in part); any other access out of
bounds is an error naming it.

Ranges are decided by name within one statement: a statement whose sibling reductions reuse
a bound name is read after bindings.distinct (a name per binding), and `written` maps the
fresh names back for the messages.
"""
from .errors import NotationValueError
from .bindings import rename
from .ir import Affine, Tensor, leaves
from .printer import subscript_text


def index_sizes(st, env, vars, given=None, written=None, known=None, pad=None):
    """{index: size} for statement st; env maps names to var ids, given is sizes= (by the
    names as written); written: {fresh name: the name as written} (bindings.distinct);
    known: sizes the statement's left side has already (a derived formula's target); pad:
    {name: p}, a tensor read at a shifted subscript as if p zeros lay on either side."""
    sizes, shifted = dict(known or {}), []
    where = {i: (_shown(st.target, st.indices), st.indices.index(i)) for i in sizes if i in st.indices}
    written = written or {}
    alone = _alone(st)
    for name, access, span in _uses(st):
        shape = vars[env[name]].shape
        shown = _shown(name, access, written)
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
                    raise _error(st, span, f"index '{written.get(a, a)}' has size {sizes[a]} in {first} "
                                           f"(dim {first_dim}) "
                                           f"but size {size} in {shown} (dim {dim})")
                sizes.setdefault(a, size)
                where.setdefault(a, (shown, dim))
            elif isinstance(a, Affine) and not a.terms:
                if not -size <= a.offset < size:
                    raise _error(st, span, f"position {a.offset} is out of range in {shown}: "
                                           f"dim {dim} of '{name}' has size {size}")
            elif isinstance(a, Affine) and (pad or {}).get(name):  # reads within [-p, n-1+p]
                p = pad[name]
                shifted.append((Affine(a.terms, a.offset + p), size + 2 * p, shown, span))
            elif isinstance(a, Affine):
                shifted.append((a, size, shown, span))
    used = {i for a, _, _, _ in shifted for _, i in a.terms}
    for index in used:  # only where no shape fixes it: a kernel index elsewhere keeps its size
        if written.get(index, index) in (given or {}):
            sizes.setdefault(index, given[written.get(index, index)])
    _fill_unknown(st, sizes, shifted, written)
    _narrow(sizes, shifted)
    _check(st, sizes, shifted, written)
    return sizes


def _fill_unknown(st, sizes, shifted, written):
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
            i = written.get(i, i)
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


def _check(st, sizes, shifted, written):
    for a, size, shown, span in shifted:
        top = a.offset + sum(c * (sizes[i] - 1) for c, i in a.terms)
        empty = [i for _, i in a.terms if sizes[i] < 1]
        if empty:
            raise _error(st, span, _no_range(a, size, shown, sizes, written, empty[0]))
        if top >= size:
            ranges = ", ".join(f"'{written.get(i, i)}' of size {sizes[i]}"
                               for i in dict.fromkeys(i for _, i in a.terms))
            raise _error(st, span, f"{shown} does not fit: with {ranges} it reaches {top}, "
                                   f"but that dim has size {size}")


def _no_range(a, size, shown, sizes, written, i):
    """Why an index read at a shifted subscript has no valid position at all."""
    others = [(c, j) for c, j in a.terms if j != i and sizes[j] >= 1]
    if not others:
        return (f"{shown} leaves no valid range for '{written.get(i, i)}': the shift {a.offset} "
                f"reaches past the end of a dim of size {size}")
    window = " and ".join(f"'{written.get(j, j)}' of size {sizes[j]}" for _, j in others)
    shift = f" and the shift {a.offset}" if a.offset else ""
    return (f"{shown} leaves no valid range for '{written.get(i, i)}': with {window}{shift} "
            f"it reads more positions than a dim of size {size} holds")


def _uses(st):
    """(name, subscripts, span) of every tensor a statement reads, its old target included."""
    if st.op != ":=":
        yield st.target, st.target_access or st.indices, st.target_span
    for index in st.target_access or ():  # a scatter's index tensors (tok in H[tok[b], d])
        if isinstance(index, Tensor):
            yield index.name, index.indices, index.span
    for leaf in leaves(st.rhs):
        if isinstance(leaf, Tensor):
            yield leaf.name, leaf.access if leaf.access is not None else leaf.indices, leaf.span
        elif not leaf.name.startswith("|"):  # (an index's size |j|, in a derived formula)
            yield leaf.name, (), leaf.span


def _shown(name, access, written=None):
    """A read as the statement writes it."""
    if written:
        access = rename(Tensor(name, (), access=tuple(access)), written).access
    return f"{name}[{','.join(subscript_text(a) for a in access)}]" if access else name


def _error(st, span, message):
    return NotationValueError(message, st.text, st.lineno, *(span or (None, None)))
