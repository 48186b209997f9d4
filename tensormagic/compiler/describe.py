"""The plan as a readable table: each contraction of the forward and backward with its cost."""
import math
from dataclasses import dataclass

import opt_einsum

from ..language.ir import unique
from .plan import _cost, _letters
from .program import Ref


@dataclass(frozen=True)
class _Step:
    """One contraction of the plan: its equation, multiply-adds, result size, and the inputs
    whose gradients pass through it (a backward step: those its result leads to). A heading
    (a sliced product's) has no cost and no size."""
    equation: str
    cost: int
    size: int
    carries: frozenset


def _describe_conv(op, var, deps, forward, backward):
    """A convolution: each output entry takes one window of every out-channel's filter."""
    x, w = op.args
    out = var[op.out]
    conv = op.info["conv"]
    filters = math.prod(out.shape[out.labels.index(i)] for i in conv.outs) if conv.outs else 1
    cost = math.prod(out.shape) * math.prod(var[w.var].shape) // filters
    xs = var[x.var]
    name = f"conv({xs.name or 'x'},{_names(w.labels)})"
    forward.append(_Step(f"{name}->{_names(out.labels)}", cost, math.prod(out.shape), deps[op.out]))
    if out.needs:
        for mine in (x, w):
            if var[mine.var].needs:
                backward.append(_Step(f"Δ{_names(out.labels)},{name}->Δ{var[mine.var].name or 'x'}",
                                      cost, math.prod(var[mine.var].shape), deps[mine.var]))


def depends(program):
    """{var id: the names of the inputs whose gradient is wanted that the var depends on}."""
    var = program.vars
    deps = {}
    for op in program.ops:
        if op.kind == "input":
            deps[op.out] = frozenset({var[op.out].name} if var[op.out].needs else ())
        else:
            deps[op.out] = frozenset().union(*(deps.get(a.var, ()) for a in op.args
                                               if isinstance(a, Ref)))
    return deps


def _steps(program, notes=None):
    """(forward steps, backward steps in the order the backward runs them); notes: where a
    sliced product's summary goes."""
    forward, backward = [], []
    _contractions(program, forward, backward, [] if notes is None else notes)
    backward.reverse()
    return forward, backward


def _contractions(program, forward, backward, notes, times=1, indent="", carries=None):
    """The steps of the program's contractions, each cost `times` over (a sliced product's
    inner program: once per slice); carries: what every step carries (a slice's: its product's)."""
    var, deps = program.vars, depends(program)
    for op in program.ops:
        if op.kind == "conv":
            _describe_conv(op, var, deps, forward, backward)
        if op.kind == "sliced":
            _describe_sliced(op, var, deps, forward, backward, notes)
        if op.kind != "pair":
            continue
        a, b = op.args
        out = var[op.out]
        sizes = {}
        for r in (a, b, Ref(op.out, out.labels)):
            sizes.update(zip(r.labels, var[r.var].shape))
        cost = _cost(a.labels + b.labels, sizes) * times
        forward.append(_Step(f"{indent}{_names(a.labels)},{_names(b.labels)}->{_names(out.labels)}",
                             cost, math.prod(out.shape), carries or deps[op.out]))
        if out.needs:  # ΔA = ΔC ⊗ B and ΔB = ΔC ⊗ A, each as costly as the product
            for mine, other in ((a, b), (b, a)):
                if var[mine.var].needs:
                    backward.append(_Step(
                        f"{indent}Δ{_names(out.labels)},{_names(other.labels)}->Δ{_names(mine.labels)}",
                        cost, math.prod(var[mine.var].shape[:len(mine.labels)]),
                        carries or deps[mine.var]))


def _describe_sliced(op, var, deps, forward, backward, notes):
    """A sliced product: a heading row, then its inner contractions for all slices; the
    backward recomputes each slice's forward before its gradients."""
    s = op.info["slices"]
    cut = ", ".join(f"{i} {n // c}×{c}" for i, n, c in zip(s.labels, s.sizes, s.chunks))
    where = ", spread over the ranks" if s.spread else ""
    head = f"sliced product, {s.count:,} slices ({cut}){where}; each slice (sizes per slice):"
    carries = deps[op.out] | frozenset().union(*(deps.get(a.var, ()) for a in op.args))
    inner_forward, inner_backward = [], []
    _contractions(op.info["inner"], inner_forward, inner_backward, notes, s.count, "  ", carries)
    forward.append(_Step(head, None, None, carries))
    forward.extend(inner_forward)
    if var[op.out].needs:
        backward.extend(inner_backward)
        backward.append(_Step("  recompute each slice's forward", s.flops, None, carries))
        backward.append(_Step(head.replace("each slice", "per slice, backward"), None, None, carries))
    notes.append(f"slicing: {s.count:,} slices ({cut}); working memory {s.working:,} elements per "
                 f"slice (unsliced {s.unsliced_working:,}); forward {s.flops:,} multiply-adds, "
                 f"{s.extra:+.1%} for slicing (unsliced {s.unsliced_flops:,})")


def _row(s):
    if s.cost is None:
        return s.equation
    return f"{s.equation:<44} {s.cost:>14,} {'' if s.size is None else format(s.size, ','):>12}"


def _table(forward, backward):
    lines = [f"{'forward contraction':<44} {'multiply-adds':>14} {'result size':>12}"]
    lines += [_row(s) for s in forward]
    if backward:
        lines.append(f"{'backward contraction':<44} {'multiply-adds':>14} {'result size':>12}")
        lines += [_row(s) for s in backward]
    return lines


def describe(program, gradient=None):
    """Each contraction of the forward and of the backward with its multiply-adds (FLOPs/2)
    and result size; the totals beside one full contraction per gradient (TensorGrad.jl's way).
    gradient: an input's name: only the contractions its gradient passes through (the forward
    ones whose results depend on it, the backward ones that lead to it). A sliced product shows
    its slices, its inner contractions (all slices' multiply-adds, one slice's result size) and
    what slicing costs."""
    notes = []
    forward, backward = _steps(program, notes)
    if gradient is not None:
        _check_gradient(program, gradient)
        return _describe_gradient(gradient, forward, backward)
    fwd, bwd = (sum(s.cost or 0 for s in steps) for steps in (forward, backward))
    lines = _table(forward, backward)
    largest = max((s.size or 0 for s in forward), default=0)
    lines.append(f"forward {fwd:,} + backward {bwd:,} = {fwd + bwd:,} multiply-adds; "
                 f"largest intermediate {largest:,} elements")
    var = program.vars
    naive = 0
    for operands, out, sizes in program.products:
        naive += _path_cost(operands, out, sizes)
        naive += sum(_path_cost([o for o in operands if o is not r] + [Ref(-1, out)], r.labels, sizes)
                     for r in operands if var[r.var].needs)
    if naive:
        lines.append(f"one full contraction per gradient would take {naive:,} "
                     f"({naive / max(fwd + bwd, 1):.2f}x this plan)")
    return "\n".join(lines + notes)


def _check_gradient(program, name):
    inputs = [program.vars[v] for v in program.inputs]
    if name not in [v.name for v in inputs]:
        raise ValueError(f"{name!r} is no input of this plan (inputs: "
                         f"{', '.join(v.name for v in inputs)})")
    if not any(v.needs for v in inputs if v.name == name):
        raise ValueError(f"this plan computes no gradient of {name}")


def _describe_gradient(name, forward, backward):
    mine = [s for s in forward if name in s.carries], [s for s in backward if name in s.carries]
    every = len(forward) + len(backward)
    if not any(mine):
        return f"Δ{name} passes through none of the plan's {every} contractions"
    cost = sum(s.cost or 0 for s in mine[1])
    return "\n".join(_table(*mine) + [
        f"Δ{name} passes through {len(mine[0]) + len(mine[1])} of the plan's {every} contractions; "
        f"its backward ones take {cost:,} of the backward's {sum(s.cost or 0 for s in backward):,} "
        f"multiply-adds"])


def _path_cost(operands, out, sizes):
    letters = _letters(unique([i for r in operands for i in r.labels] + list(out)))
    eq = ",".join("".join(letters[i] for i in r.labels) for r in operands) + "->" + \
        "".join(letters[i] for i in out)
    shapes = [tuple(sizes[i] for i in r.labels) for r in operands]
    _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto")
    return int(info.opt_cost) // 2


def _names(labels):
    return "".join(labels) if all(len(i) == 1 for i in labels) else " ".join(labels)
