"""The plan as a readable table: each contraction of the forward and backward with its cost."""
import math

import opt_einsum

from ..language.ir import unique
from .plan import _cost, _letters
from .program import Ref


def _describe_conv(op, var, forward, backward):
    """A convolution: each output entry takes one window of every out-channel's filter."""
    x, w = op.args
    out = var[op.out]
    conv = op.info["conv"]
    filters = math.prod(out.shape[out.labels.index(i)] for i in conv.outs) if conv.outs else 1
    cost = math.prod(out.shape) * math.prod(var[w.var].shape) // filters
    xs = var[x.var]
    name = f"conv({xs.name or 'x'},{_names(w.labels)})"
    forward.append((f"{name}->{_names(out.labels)}", cost, math.prod(out.shape)))
    if out.needs:
        for mine in (x, w):
            if var[mine.var].needs:
                backward.append((f"Δ{_names(out.labels)},{name}->Δ{var[mine.var].name or 'x'}", cost,
                                 math.prod(var[mine.var].shape)))


def describe(program):
    """Each contraction of the forward and of the backward with its multiply-adds (FLOPs/2)
    and result size; the totals beside one full contraction per gradient (TensorGrad.jl's way).
    A sliced product shows its slices, its inner contractions (all slices' multiply-adds, one
    slice's result size) and what slicing costs."""
    var = program.vars
    forward, backward, notes = [], [], []
    _contractions(program, forward, backward, notes)
    backward.reverse()
    fwd, bwd = (sum(r[1] or 0 for r in rows) for rows in (forward, backward))
    lines = [f"{'forward contraction':<44} {'multiply-adds':>14} {'result size':>12}"]
    lines += [_row(*r) for r in forward]
    if backward:
        lines.append(f"{'backward contraction':<44} {'multiply-adds':>14} {'result size':>12}")
        lines += [_row(*r) for r in backward]
    largest = max((r[2] or 0 for r in forward), default=0)
    lines.append(f"forward {fwd:,} + backward {bwd:,} = {fwd + bwd:,} multiply-adds; "
                 f"largest intermediate {largest:,} elements")
    naive = 0
    for operands, out, sizes in program.products:
        naive += _path_cost(operands, out, sizes)
        naive += sum(_path_cost([o for o in operands if o is not r] + [Ref(-1, out)], r.labels, sizes)
                     for r in operands if var[r.var].needs)
    if naive:
        lines.append(f"one full contraction per gradient would take {naive:,} "
                     f"({naive / max(fwd + bwd, 1):.2f}x this plan)")
    return "\n".join(lines + notes)


def _row(eq, cost, size):
    if cost is None:
        return eq
    return f"{eq:<44} {cost:>14,} {'' if size is None else format(size, ','):>12}"


def _contractions(program, forward, backward, notes, times=1, indent=""):
    """Rows (equation, multiply-adds, result size) of the program's contractions, each cost
    `times` over (a sliced product's inner program: once per slice)."""
    var = program.vars
    for op in program.ops:
        if op.kind == "conv":
            _describe_conv(op, var, forward, backward)
        if op.kind == "sliced":
            _describe_sliced(op, var, forward, backward, notes)
        if op.kind != "pair":
            continue
        a, b = op.args
        out = var[op.out]
        sizes = {}
        for r in (a, b, Ref(op.out, out.labels)):
            sizes.update(zip(r.labels, var[r.var].shape))
        cost = _cost(a.labels + b.labels, sizes) * times
        forward.append((f"{indent}{_names(a.labels)},{_names(b.labels)}->{_names(out.labels)}", cost,
                        math.prod(out.shape)))
        if out.needs:  # ΔA = ΔC ⊗ B and ΔB = ΔC ⊗ A, each as costly as the product
            for mine, other in ((a, b), (b, a)):
                if var[mine.var].needs:
                    backward.append((f"{indent}Δ{_names(out.labels)},{_names(other.labels)}->Δ{_names(mine.labels)}",
                                     cost, math.prod(var[mine.var].shape[:len(mine.labels)])))


def _describe_sliced(op, var, forward, backward, notes):
    """A sliced product: a heading row, then its inner contractions for all slices; the
    backward recomputes each slice's forward before its gradients."""
    s = op.info["slices"]
    cut = ", ".join(f"{i} {n // c}×{c}" for i, n, c in zip(s.labels, s.sizes, s.chunks))
    where = ", spread over the ranks" if s.spread else ""
    head = f"sliced product, {s.count:,} slices ({cut}){where}; each slice (sizes per slice):"
    inner_forward, inner_backward = [], []
    _contractions(op.info["inner"], inner_forward, inner_backward, notes, s.count, "  ")
    forward.append((head, None, None))
    forward.extend(inner_forward)
    if var[op.out].needs:
        backward.extend(inner_backward)
        backward.append((f"  recompute each slice's forward", s.flops, None))
        backward.append((head.replace("each slice", "per slice, backward"), None, None))
    notes.append(f"slicing: {s.count:,} slices ({cut}); working memory {s.working:,} elements per "
                 f"slice (unsliced {s.unsliced_working:,}); forward {s.flops:,} multiply-adds, "
                 f"{s.extra:+.1%} for slicing (unsliced {s.unsliced_flops:,})")


def _path_cost(operands, out, sizes):
    letters = _letters(unique([i for r in operands for i in r.labels] + list(out)))
    eq = ",".join("".join(letters[i] for i in r.labels) for r in operands) + "->" + \
        "".join(letters[i] for i in out)
    shapes = [tuple(sizes[i] for i in r.labels) for r in operands]
    _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto")
    return int(info.opt_cost) // 2


def _names(labels):
    return "".join(labels) if all(len(i) == 1 for i in labels) else " ".join(labels)
