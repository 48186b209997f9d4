"""The summation rule: make every implicit Σ an explicit Sigma node where it sits.

An index on the left is never summed. Einstein's rule, term by term: each top-level
term of the right-hand side is read on its own. An index whose occurrences in that
term meet in a product (B[i,j]*C[j,k]) or inside one tensor (D[l,l]) is summed over
the smallest slot holding them. Any other index (one occurrence in the term, or
occurrences that only meet in a sum, x[b] - y[b], or across **) is free where it
stands and is summed over that whole term, outside any function. Slots are the
right-hand side, the terms of a sum, the arguments of functions, and the operands
of ** (products are transparent: they are what sums multiply through).
The indices an explicit reduction lists (sum[j](...), max[j](...)) are bound inside it
and never touched here; its body is a slot, as are the arguments of max(a, b).
"""
from collections import defaultdict

from .ir import Add, Binary, Call, Mul, Pow, Reduce, Sigma, Tensor, children, with_children

_SLOT_PARENTS = (Add, Call, Pow, Binary, Reduce)


def place_sums(rhs, kept):
    """rhs with a Sigma wrapped around each slot that sums something; kept: left-hand indices.
    Each top-level term is read on its own: occurrences in one term never move another's sum."""
    return _rebuild(rhs, (), sums_at(rhs, kept))


def sums_at(rhs, kept):
    """{path of a node: the indices place_sums sums there}, without rebuilding rhs."""
    terms = rhs.terms if isinstance(rhs, Add) else (rhs,)
    found = defaultdict(list)
    for k, term in enumerate(terms):
        top = (k,) if isinstance(rhs, Add) else ()
        occurrences = defaultdict(list)
        for path, node, bound in _walk(term, top, ()):
            if isinstance(node, Tensor):
                for index in node.occurrences():
                    if index not in bound:  # an explicit reduction sums it
                        occurrences[index].append(path)
        for index, paths in occurrences.items():
            if index in kept:
                continue
            meet = _common_prefix(paths)
            if len(paths) > 1 and isinstance(_node_at(rhs, meet), (Mul, Tensor)):
                found[_nearest_slot(rhs, meet)].append(index)
            else:  # free where it stands: summed over its whole top-level term
                found[top].append(index)
    return found


def _walk(node, path, bound):
    """(path, node, the indices a reduction above binds), parents first: a stack, not nested
    generators, whose cost grows with the depth (a deep network's gradient is deep)."""
    stack = [(path, node, bound)]
    while stack:
        path, node, bound = stack.pop()
        yield path, node, bound
        if isinstance(node, Reduce):
            bound = bound + node.indices
        kids = children(node)
        stack.extend((path + (k,), kids[k], bound) for k in range(len(kids) - 1, -1, -1))


def _common_prefix(paths):
    prefix = paths[0]
    for p in paths[1:]:
        n = 0
        while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def _node_at(root, path):
    for k in path:
        root = children(root)[k]
    return root


def _nearest_slot(root, path):
    while path and not isinstance(_node_at(root, path[:-1]), _SLOT_PARENTS):
        path = path[:-1]
    return path


def _rebuild(node, path, sums_at):
    kids = tuple(_rebuild(c, path + (k,), sums_at) for k, c in enumerate(children(node)))
    node = with_children(node, kids)
    if sums_at.get(path):
        node = Sigma(tuple(sums_at[path]), node)
    return node
