"""How one pairwise contraction runs as a (batched) matrix product, and what its copies cost.

C = A ⊗ B runs as M1 @ M2, M1 = batch × P × K and M2 = batch × K × Q (torch.mm without a
batch). An operand is read in place when each of its index groups (batch, free, contracted)
is a run of its memory order, so that each merges into one stride, in any group order, and
its innermost index is not a batch index: bmm takes such strided views as they are. Batches:

  shared     indices of A, B and C: the usual batch
  reduce     contracted indices made the batch and summed after the product (A and B share
             no kept index): reads an operand whose contracted indices do not merge in place
  broadcast  indices of one operand and C only, the other operand expanded with stride 0

An operand that fits no form is copied once into batch × free × contracted order (or its
transpose), keeping its innermost index innermost where it can: a streaming copy, not a
gather. `candidates` lists the forms with their cost in elements moved, forward and backward
(the copies, the reduce temporaries, gradients that come out in another layout than their
operand's); plan.py chooses among them, and the render functions here write the source.
"""
import functools
import math
from dataclasses import dataclass
from typing import Tuple

COPY = 2      # elements moved per element of a streaming copy (read + write)
GATHER = 6    # ... of a copy whose innermost index changes
BATCH = 256   # a bmm batch entry's overhead, in elements (many small products are slower)


@dataclass(frozen=True)
class Matrix:
    """One operand as the product reads it: batch × first × second."""
    stored: Tuple[str, ...]   # the operand's labels in memory order
    order: Tuple[str, ...]    # the order it is read in (stored, or the order it is copied to)
    batch: Tuple[str, ...]    # its batch labels (() when it has none or is expanded)
    first: Tuple[str, ...]
    second: Tuple[str, ...]
    expand: bool              # the batch is broadcast to it with stride 0

    @property
    def copied(self):
        return self.order != self.stored


@dataclass(frozen=True)
class Recipe:
    kind: str                   # none shared reduce broadcast
    batch: Tuple[str, ...]      # the bmm batch labels, merged in this order
    m1: Matrix                  # batch × P × K
    m2: Matrix                  # batch × K × Q
    a_first: bool               # m1 is A
    produced: Tuple[str, ...]   # the result's labels as the product makes them
    cost: float = 0.0

    @property
    def contracted(self):
        return self.m1.second

    def matrices(self):
        """(A's matrix, B's matrix)."""
        return (self.m1, self.m2) if self.a_first else (self.m2, self.m1)


def natural_labels(a, b, keep):
    """The order a product of a and b creates its result in when nothing else is asked: when
    nothing is contracted (an elementwise or outer product, a broadcast multiply), the larger
    operand's order with the other's indices after it."""
    if set(a) | set(b) <= set(keep):
        return broadcast_orders(a, b)[0]
    batch = tuple(i for i in a if i in b and i in keep)
    left = tuple(i for i in a if i not in b)
    right = tuple(i for i in b if i not in a)
    return batch + left + right


def broadcast_orders(a, b):
    """The orders an elementwise or outer product of a and b can be made in without moving
    either operand's own order: one operand's, then the other's new indices."""
    first, second = (a, b) if len(a) >= len(b) else (b, a)
    return list(dict.fromkeys((tuple(first) + tuple(i for i in second if i not in first),
                               tuple(second) + tuple(i for i in first if i not in second))))


def recipe(a, b, out, sizes, wants=(True, True)):
    """The cheapest form producing exactly `out`, else the cheapest one (its result is then
    permuted); None when nothing is contracted."""
    forms = candidates(a, b, set(out), sizes, wants)
    exact = [r for r in forms if r.produced == tuple(out)]
    return min(exact or forms, key=lambda r: r.cost, default=None)


def candidates(a, b, keep, sizes, wants=(True, True)):
    """Every form of A ⊗ B (labels kept: `keep`) worth considering, each with its cost.
    wants: whether A's and B's gradients are computed (their copies count too)."""
    a, b = tuple(a), tuple(b)
    if len(set(a)) < len(a) or len(set(b)) < len(b):
        return []
    shared = [i for i in a if i in b and i in keep]
    summed = [i for i in a if i in b and i not in keep]
    only_a, only_b = [i for i in a if i not in b], [i for i in b if i not in a]
    if not summed or any(i not in keep for i in only_a + only_b):
        return []
    batches = []
    if shared:
        batches += [("shared", o) for o in _unique([_within(a, shared), _within(b, shared)])]
    else:
        batches.append(("none", ()))
        batches += [("reduce", run) for run in _unique(_runs(a, summed) + _runs(b, summed))
                    if len(run) < len(summed)]
        batches += [("broadcast", run) for run in _runs(a, only_a) + _runs(b, only_b)]
    wide = len(a) + len(b) > 12  # many indices: fewer forms (planning time stays small)
    out = []
    for kind, batch in batches:
        rest = [i for i in summed if i not in batch]
        free_a = _within(a, [i for i in only_a if i not in batch])
        free_b = _within(b, [i for i in only_b if i not in batch])
        for contracted in _unique([_within(a, rest), _within(b, rest)]):
            # a copied operand may put its free indices in either order (reversed: what a
            # later product may need); read in place, only the stored order fits
            for fa in _unique([free_a] + ([] if wide else [free_a[::-1]])):
                for fb in _unique([free_b] + ([] if wide else [free_b[::-1]])):
                    for a_first in (True, False):
                        out.append(_form(a, b, kind, batch, contracted, fa, fb, a_first, sizes, wants))
    return out


def _form(a, b, kind, batch, contracted, free_a, free_b, a_first, sizes, wants):
    in_a = kind != "broadcast" or batch[0] in a
    in_b = kind != "broadcast" or batch[0] in b
    ma = _matrix(a, batch if in_a else (), free_a, contracted, not in_a, a_first)
    mb = _matrix(b, batch if in_b else (), free_b, contracted, not in_b, not a_first)
    m1, m2 = (ma, mb) if a_first else (mb, ma)
    kept = () if kind == "reduce" else batch
    produced = kept + m1.first + m2.second
    cost = 0.0
    nb = math.prod(sizes[i] for i in batch)
    if kind == "reduce":
        cost += COPY * nb * _size(m1.first + m2.second, sizes)
    if batch:
        cost += BATCH * nb
    for m, w in ((ma, wants[0]), (mb, wants[1])):
        n = _size(m.stored, sizes)
        gather = GATHER if m.order[-1] != m.stored[-1] else COPY
        if m.copied:
            cost += n * gather * (2 if w else 1)  # copied in, and its gradient copied back
        elif w and grad_order(m) != m.stored:
            cost += n * (GATHER if grad_order(m)[-1] != m.stored[-1] else COPY)
        if w and m.expand:
            cost += COPY * nb * n  # the gradient summed over the broadcast batch
    return Recipe(kind, batch, m1, m2, a_first, produced, cost)


@functools.lru_cache(maxsize=4096)  # planning meets the same operand forms many times
def _matrix(stored, batch, free, contracted, expand, first):
    """The operand's matrix (first: it is M1, free × contracted; else contracted × free)."""
    rows, cols = (free, contracted) if first else (contracted, free)
    groups = [g for g in (batch, rows, cols) if g]
    order = stored
    if not _fits(stored, groups, batch):
        options = [batch + rows + cols, batch + cols + rows]
        order = next((o for o in options if o[-1] == stored[-1]), options[0])
    return Matrix(stored, order, batch, rows, cols, expand)


def _fits(stored, groups, batch):
    """stored is the groups' runs in some order, and its innermost index is no batch index."""
    if batch and stored[-1] in batch:
        return False
    rest = stored
    while rest:
        g = next((g for g in groups if rest[:len(g)] == g), None)
        if g is None:
            return False
        rest = rest[len(g):]
    return True


def grad_order(m):
    """The labels of an operand's gradient as one (b)mm makes it: batch × first × second, or
    its transpose when that is the operand's order or keeps its innermost index innermost."""
    plain, flipped = m.batch + m.first + m.second, m.batch + m.second + m.first
    if m.order != plain and (m.order == flipped or m.order[-1:] == m.first[-1:]):
        return flipped
    return plain


def _within(order, labels):
    return tuple(i for i in order if i in labels)


def _runs(order, labels, longest=2):
    """The runs (consecutive stretches, up to `longest`) of `order` made only of `labels`."""
    out = []
    for s in range(len(order)):
        for e in range(s + 1, min(len(order), s + longest) + 1):
            if all(i in labels for i in order[s:e]):
                out.append(tuple(order[s:e]))
    return out


def _unique(items):
    return list(dict.fromkeys(items))


def _size(labels, sizes):
    return math.prod(sizes[i] for i in labels)


# -- source ------------------------------------------------------------------------------------
def _dims(values):
    if not values:
        return "()"
    return ", ".join(map(str, values)) + ("," if len(values) == 1 else "")


def permute_src(have, want):
    """Source reordering dims labelled `have` into `want` (nothing for the identity, .mT for
    a swap of the last two)."""
    perm = tuple(have.index(i) for i in want)
    n = len(perm)
    if perm == tuple(range(n)):
        return ""
    if n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2):
        return ".mT"
    return f".permute({_dims(perm)})"


def reshape_src(shape, have):
    """Source of a reshape to `shape` (nothing when the shape is already that)."""
    return "" if tuple(shape) == tuple(have) else f".reshape({_dims(shape)})"


def mT(text):
    """The matrix transpose of a matrix expression."""
    return text[:-3] if text.endswith(".mT") else text + ".mT"


def _keys(order, m):
    """order → its runs, named b (batch), f (first), s (second)."""
    groups = {"b": m.batch, "f": m.first, "s": m.second}
    keys, rest = [], tuple(order)
    while rest:
        k = next(k for k, g in groups.items() if g and rest[:len(g)] == g)
        keys.append(k)
        rest = rest[len(groups[k]):]
    return keys, groups


def copy_src(text, m, sizes):
    """The copy of an operand that can't be read in place: its runs in m.order, merged."""
    keys, groups = _keys(m.order, m)
    shape = [_size(groups[k], sizes) for k in keys]
    text += permute_src(m.stored, m.order)
    merged = reshape_src(shape, [sizes[i] for i in m.order])
    return text + (merged or ".contiguous()")


def matrix_src(text, m, sizes, nb, copied=False):
    """The operand as a (batch ×) first × second matrix view; nb: the batch size (None: no
    batch); copied: text is the operand's copy (copy_src)."""
    keys, groups = _keys(m.order, m)
    have = [_size(groups[k], sizes) for k in keys] if copied else [sizes[i] for i in m.stored]
    want = (["b"] if nb is not None else []) + ["f", "s"]
    slots = keys + [k for k in want if k not in keys]
    text += reshape_src([_size(groups[k], sizes) for k in slots], have)
    text += permute_src(slots, want)
    if m.expand:
        text += f".expand({nb}, -1, -1)"
    return text


def result_src(text, r, sizes, out):
    """The product's (b)mm result `text` → the result with labels `out`."""
    nb = _size(r.batch, sizes) if r.batch else None
    have = ([nb] if nb is not None else []) + [_size(r.m1.first, sizes), _size(r.m2.second, sizes)]
    if r.kind == "reduce":
        text += ".sum(0)"
        have = have[1:]
    text += reshape_src([sizes[i] for i in r.produced], have)
    return text + permute_src(r.produced, tuple(out))


def grad_src(g, r, sizes, out):
    """The incoming gradient (labels `out`) as the product's batch × P × Q matrix."""
    nb = _size(r.batch, sizes) if r.batch else None
    text = g + permute_src(tuple(out), r.produced)
    shape = [_size(r.m1.first, sizes), _size(r.m2.second, sizes)]
    if r.kind == "reduce":
        return text + reshape_src([1] + shape, [sizes[i] for i in r.produced]) + f".expand({nb}, -1, -1)"
    return text + reshape_src(([nb] if nb is not None else []) + shape, [sizes[i] for i in r.produced])


def operand_grad_src(gm, other, m, is_m1, r, sizes, conj):
    """The gradient of the operand read as `m` (M1 when is_m1), from the gradient matrix gm and
    the other matrix's source, laid out as the operand is stored."""
    c = ".conj()" if conj else ""
    labels = grad_order(m)
    transposed = labels != m.batch + m.first + m.second
    mm = "torch.bmm" if r.batch else "torch.mm"
    if is_m1:   # ΔM1 = ΔC M2ᴴ, or its transpose conj(M2) ΔCᵀ
        text = f"{mm}({other}{c}, {mT(gm)})" if transposed else f"{mm}({gm}, {mT(other)}{c})"
    else:       # ΔM2 = M1ᴴ ΔC, or its transpose ΔCᵀ conj(M1)
        text = f"{mm}({mT(gm)}, {other}{c})" if transposed else f"{mm}({mT(other)}{c}, {gm})"
    nb = _size(r.batch, sizes) if r.batch else None
    have = [_size(m.first, sizes), _size(m.second, sizes)]
    have = have[::-1] if transposed else have
    if m.expand:
        text += ".sum(0)"
    elif nb is not None:
        have = [nb] + have
    text += reshape_src([sizes[i] for i in labels], have)
    return text + permute_src(labels, m.stored)
