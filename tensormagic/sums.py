"""The summation rule: make every implicit Σ an explicit Sigma node where it sits.

An index on the left is never summed. Any other index that occurs several times
is summed over the smallest slot holding all its occurrences; one that occurs
once, over its whole top-level term. Slots are the right-hand side, the terms
of a sum, the arguments of functions, and the operands of ** (products are
transparent: they are what sums multiply through).
"""
from collections import defaultdict

from .ir import Add, Call, Mul, Pow, Sigma, Tensor, children

_SLOT_PARENTS = (Add, Call, Pow)


def place_sums(rhs, kept):
    """rhs with a Sigma wrapped around each slot that sums something; kept: left-hand indices."""
    occurrences = defaultdict(list)
    for path, node in _walk(rhs, ()):
        if isinstance(node, Tensor):
            for index in node.indices:
                occurrences[index].append(path)
    sums_at = defaultdict(list)
    for index, paths in occurrences.items():
        if index in kept:
            continue
        if len(paths) > 1:
            slot = _nearest_slot(rhs, _common_prefix(paths))
        else:
            slot = paths[0][:1] if isinstance(rhs, Add) else ()
        sums_at[slot].append(index)
    return _rebuild(rhs, (), sums_at)


def _walk(node, path):
    yield path, node
    for k, child in enumerate(children(node)):
        yield from _walk(child, path + (k,))


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
    node = _with_children(node, kids)
    if sums_at.get(path):
        node = Sigma(tuple(sums_at[path]), node)
    return node


def _with_children(node, kids):
    if isinstance(node, Add):
        return Add(kids, node.signs)
    if isinstance(node, Mul):
        return Mul(kids)
    if isinstance(node, Call):
        return Call(node.func, kids[0])
    if isinstance(node, Pow):
        return Pow(*kids)
    return node
