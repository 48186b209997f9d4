"""Each binding of an index has its own range.

A reduction binds the indices it lists inside its argument, so sibling reductions may reuse a
name with different ranges: `max[j](x[j]) * max[j](y[j])` with x of 3 entries and y of 4, or
`sum[j](x[b,j]) + mean[j](x[b,j+1])` (j runs over 4 and over 3 positions). Everything that
decides a range by name (ranges.index_sizes, the plan, the checker's shapes) reads a statement
after `distinct`, which gives every binding after the first of a name a fresh name (jʹ, jʹʹ)
used nowhere in the statement.
"""
from dataclasses import replace

from .ir import Affine, Reduce, Sigma, Tensor, children, leaves, with_children

PRIME = "ʹ"  # U+02B9, a letter: a primed index is still an identifier


def distinct(st):
    """(st with one name per reduction binding, {fresh name: the name as written})."""
    names = _bound_names(st.rhs)
    if len(set(names)) == len(names):  # the common case: every binding has a name of its own
        return st, {}
    taken = _names(st)
    bound, renamed = set(), {}

    def visit(e):
        if isinstance(e, Reduce):
            mapping = {}
            for i in e.indices:
                if i in bound:
                    fresh = i + PRIME
                    while fresh in taken:
                        fresh += PRIME
                    taken.add(fresh)
                    mapping[i] = fresh
                    renamed[fresh] = renamed.get(i, i)
                bound.add(mapping.get(i, i))
            if mapping:
                e = Reduce(e.op, tuple(mapping.get(i, i) for i in e.indices),
                           rename(e.body, mapping), e.span)
        return with_children(e, tuple(visit(c) for c in children(e)))

    return replace(st, rhs=visit(st.rhs)), renamed


def rename(e, mapping):
    """e with its indices renamed (every occurrence: plain, shifted, gathered, bound)."""
    if isinstance(e, Tensor):
        access = None if e.access is None else tuple(_subscript(a, mapping) for a in e.access)
        return Tensor(e.name, tuple(mapping.get(i, i) for i in e.indices), e.span, access)
    if isinstance(e, (Reduce, Sigma)):
        e = replace(e, indices=tuple(mapping.get(i, i) for i in e.indices))
    return with_children(e, tuple(rename(c, mapping) for c in children(e)))


def _subscript(a, mapping):
    if isinstance(a, str):
        return mapping.get(a, a)
    if isinstance(a, Tensor):
        return rename(a, mapping)
    return Affine(tuple((c, mapping.get(i, i)) for c, i in a.terms), a.offset)


def _bound_names(e):
    own = list(e.indices) if isinstance(e, Reduce) else []
    return own + [i for c in children(e) for i in _bound_names(c)]


def _names(st):
    """Every index name the statement uses."""
    names = set(st.indices) | set(_bound_names(st.rhs))
    for leaf in leaves(st.rhs):
        if isinstance(leaf, Tensor):
            names.update(leaf.occurrences())
    return names
