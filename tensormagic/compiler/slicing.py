"""Index slices for a product too large for a memory budget, or to be spread over ranks.

A product Σ A[...] B[...] ... is the sum, over the positions of a sliced index, of the same
product on the operands narrowed to one chunk of that index (for an index of the result, the
chunks fill disjoint blocks of it instead). Slicing indices of the largest intermediates shrinks
every intermediate holding them, at the price of recomputing, once per chunk, the products that
do not hold them: that extra work is what `Slices.extra` reports.

`choose` cuts greedily: while one slice's working memory (`working`: the most its forward and
backward hold at once, simulated product by product, with a margin for layout copies) exceeds
the budget, it halves (or divides by its smallest prime factor) the chunk of the index of the
largest term whose cut adds the fewest multiply-adds; then the path is searched again for the
sliced sizes and kept if it fits and costs less. Chunks always divide their index's size, so
every slice has the same shapes and one planned inner program serves all of them. A budget
counts elements of the call's dtype (Budget: bytes and the element size). Not counted: the
product's operands, its result and the gradients it returns, which exist whole anyway.
"""
import math
from dataclasses import dataclass
from typing import Tuple

from ..language.errors import NotationValueError

MAX_SLICES = 1 << 16   # more slices than this is an error: the Python loop would dominate
MARGIN = 1.25          # the estimate over the values' and gradients' own sizes: layout copies


@dataclass(frozen=True)
class Budget:
    """A memory limit: bytes, and the size of one element of the call's dtype."""
    bytes: int
    itemsize: int

    @property
    def elements(self):
        return self.bytes // self.itemsize

    def text(self, elements):
        return f"{bytes_text(elements * self.itemsize)} ({elements:,} elements of {self.itemsize} bytes)"


def bytes_text(n):
    """2147483648 → '2 GiB' (binary units, as memory_limit reads them)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Slices:
    """How one product is cut: each sliced index in equal chunks, where the sliced indices lie
    in each operand and in the result, and what the cut costs."""
    labels: Tuple[str, ...]        # the sliced indices
    sizes: Tuple[int, ...]         # their sizes
    chunks: Tuple[int, ...]        # their chunk sizes (each divides its size)
    operands: Tuple[tuple, ...]    # per operand: ((dim, k), ...) its dims holding sliced index k
    out: Tuple[tuple, ...]         # ((dim, k), ...): the result's
    spread: bool                   # the slices go round the ranks of torch.distributed
    working: int                   # elements one slice holds at once (the estimate)
    unsliced_working: int          # ... the whole product, unsliced
    flops: int                     # multiply-adds of every slice's forward
    unsliced_flops: int            # ... of the unsliced product, on its own best path

    @property
    def count(self):
        return math.prod(n // c for n, c in zip(self.sizes, self.chunks))

    @property
    def extra(self):
        """Multiply-adds of the sliced forward over the unsliced one, minus 1 (0.25: +25%)."""
        return self.flops / max(self.unsliced_flops, 1) - 1


def nodes(operands, path, out):
    """The pairwise products of a path, in order: (labels it spans, labels its result keeps,
    its two operands: an operand's position, or ("node", k) for the k-th product's result)."""
    pending = [frozenset(o) for o in operands]
    where = list(range(len(operands)))
    found = []
    for pair in path:
        a, b = (pending[i] for i in pair)
        args = tuple(where[i] for i in pair)
        pending = [r for k, r in enumerate(pending) if k not in pair]
        where = [w for k, w in enumerate(where) if k not in pair]
        keep = frozenset((a | b) & set(out).union(*pending))
        found.append((a | b, keep, args))
        pending.append(keep)
        where.append(("node", len(found) - 1))
    return found


def working(operands, tree, sizes, sliced=()):
    """Elements one slice holds at once (an estimate, MARGIN over what the tree's values and
    gradients need when each is released after its last reader). Forward: the sliced
    operands' contiguous copies and every intermediate (the backward reads them). Backward,
    product by product from the last: the values not yet read, the pending gradients, this
    product's gradient twice (it may be copied into matrix layout) and its operands' new ones;
    an operand's gradient is held until the slice is done."""
    size = [_size(keep, sizes) for _, keep, _ in tree]
    copies = sum(_size(o, sizes) for o in operands if set(o) & set(sliced))
    held = copies + sum(size)
    peak, pending, done = held, {len(tree) - 1: size[-1]}, 0
    held -= size[-1]  # the result is not kept for the backward
    for k in reversed(range(len(tree))):
        args = tree[k][2]
        grads = [size[a[1]] if isinstance(a, tuple) else _size(operands[a], sizes) for a in args]
        peak = max(peak, held + sum(pending.values()) + pending[k] + sum(grads) + done)
        del pending[k]
        for a, n in zip(args, grads):
            if isinstance(a, tuple):
                held -= n
                pending[a[1]] = n
            else:
                done += n
    return int(MARGIN * peak)


def flops(tree, sizes):
    return sum(_size(span, sizes) for span, _, _ in tree)


def choose(operands, out, sizes, path, path_for, budget=None, ranks=1):
    """(chunks {index: chunk size}, path) for a product that must be cut, or None.

    operands: each operand's labels; path: its path unsliced; path_for(sizes): a path for
    other sizes; budget: a Budget (None: any memory); ranks: at least this many slices where
    the sizes allow (torch.distributed's world size)."""
    tree = nodes(operands, path, out)
    if (budget is None or working(operands, tree, sizes) <= budget.elements) and ranks < 2:
        return None
    chunks = _cut(operands, out, sizes, dict(sizes), tree, budget, ranks)
    # the best path for the sliced sizes may differ: kept if it fits and costs less
    other = path_for(chunks)
    found = nodes(operands, other, out)
    cut = [i for i in sizes if chunks[i] < sizes[i]]
    if (budget is None or working(operands, found, chunks, cut) <= budget.elements) and \
            flops(found, chunks) < flops(tree, chunks):
        path = other
    return chunks, path


def summary(operands, out, sizes, chunks, path, inner_path, spread):
    """The Slices of a product cut into `chunks` (path: its path unsliced; inner_path: one
    slice's)."""
    cut = tuple(i for i in sizes if chunks[i] < sizes[i])
    count = math.prod(sizes[i] // chunks[i] for i in cut)
    whole, one = nodes(operands, path, out), nodes(operands, inner_path, out)
    return Slices(cut, tuple(sizes[i] for i in cut), tuple(chunks[i] for i in cut),
                  tuple(_dims(o, cut) for o in operands), _dims(out, cut), spread,
                  working(operands, one, chunks, cut), working(operands, whole, sizes),
                  count * flops(one, chunks), flops(whole, sizes))


def _dims(labels, cut):
    """((dim, k), ...): the dims of a tensor with these labels that hold sliced index cut[k]."""
    return tuple((d, cut.index(i)) for d, i in enumerate(labels) if i in cut)


def _cut(operands, out, sizes, chunks, tree, budget, ranks):
    chunks = dict(chunks)
    while True:
        cut = [i for i in sizes if chunks[i] < sizes[i]]
        now = working(operands, tree, chunks, cut)
        count = math.prod(sizes[i] // chunks[i] for i in cut)
        short = budget is not None and now > budget.elements
        if not short and count >= ranks:
            return chunks
        options = []
        for label in (_largest(operands, tree, chunks) if short else chunks):
            if chunks[label] > 1:
                trial = dict(chunks, **{label: chunks[label] // _factor(chunks[label])})
                if short and working(operands, tree, trial, cut + [label]) >= now:
                    continue
                options.append((flops(tree, trial), working(operands, tree, trial, cut + [label]),
                                label, trial))
        if not options:
            if not short:  # every index is cut to single positions: fewer slices than ranks
                return chunks
            raise _unmet(budget, now, count, "every index of its largest terms is cut to one "
                         "position")
        *_, trial = min(options, key=lambda o: o[:3])
        if math.prod(sizes[i] // trial[i] for i in sizes) > MAX_SLICES:
            raise _unmet(budget, now, count, f"more than {MAX_SLICES:,} slices would be needed")
        chunks = trial


def _largest(operands, tree, sizes):
    """The labels of the largest term of the working memory (an intermediate or an operand)."""
    terms = [keep for _, keep, _ in tree] + [frozenset(o) for o in operands]
    return sorted(max(terms, key=lambda t: _size(t, sizes)), key=str)


def _factor(n):
    """The smallest prime factor of n > 1."""
    return next((p for p in range(2, math.isqrt(n) + 1) if n % p == 0), n)


def _size(labels, sizes):
    return math.prod(sizes[i] for i in labels)


class BudgetError(NotationValueError):
    """A memory_limit no plan can meet. `least`: the smallest working memory found, in elements."""

    def __init__(self, message, least):
        super().__init__(message)
        self.least = least


def _unmet(budget, now, count, why):
    return BudgetError(f"memory_limit={bytes_text(budget.bytes)} cannot be met: the least working "
                       f"memory found for a product is {budget.text(now)} per slice, at {count:,} "
                       f"slices ({why})", now)


def check_values(program, budget, statements):
    """BudgetError when a value that is not a product's (an input, an output or what a
    statement's result is made from) exceeds the budget: only products are sliced."""
    exempt = set(program.inputs) | set(program.outputs)
    exempt |= {op.args[0].var for op in program.ops if op.kind == "emit" and hasattr(op.args[0], "var")}
    exempt |= {op.out for op in program.ops if op.kind in ("view", "input")}
    worst = None
    for k, op in enumerate(program.ops):
        var = program.vars[op.out]
        n = math.prod(var.shape)
        if op.out not in exempt and n > budget.elements and (worst is None or n > worst[0]):
            worst = (n, k, op, var)
    if worst is None:
        return
    n, k, op, var = worst
    what = op.info.get("func", op.kind)
    raise BudgetError(f"memory_limit={bytes_text(budget.bytes)} cannot be met: an intermediate "
                      f"value ({what} over [{','.join(var.labels)}]) holds {budget.text(n)}, and "
                      f"only products are sliced; the smallest memory_limit for these shapes is "
                      f"{bytes_text(n * budget.itemsize)}", n)
