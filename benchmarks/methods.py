"""The methods under test.  Each turns (case, inputs, upstream gradient) into a
`Runner` whose `fwd_bwd()` computes the output and the gradient of every input,
and whose `fwd()` (where it makes sense) runs the forward pass alone.

All one-time work (building an opt_einsum expression, compiling a tensormagic
function, deriving gradient equations) happens in `prepare`, outside timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import opt_einsum as oe
import torch

from cases import Case

Tensors = list[torch.Tensor]


@dataclass
class Runner:
    fwd_bwd: Callable[[], tuple[torch.Tensor, Tensors]]
    fwd: Callable[[], torch.Tensor] | None = None
    fn: object = None  # the compiled tensormagic function, for the report
    reset: Callable[[], None] = lambda: None  # drop the gradients a previous call left


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    applies: Callable[[Case], bool]
    prepare: Callable[[Case, Tensors, torch.Tensor], Runner]


def _autograd_runner(f: Callable[..., torch.Tensor], xs: Tensors,
                     g: torch.Tensor) -> Runner:
    """fwd+bwd through torch autograd: out = f(*xs); out.backward(g)."""
    leaves = [x.detach().requires_grad_(True) for x in xs]

    def fwd_bwd():
        for x in leaves:
            x.grad = None
        out = f(*leaves)
        out.backward(g)
        return out.detach(), [x.grad for x in leaves]

    def fwd():
        return f(*leaves)

    def reset():
        for x in leaves:
            x.grad = None

    return Runner(fwd_bwd, fwd, reset=reset)


# (a) torch.einsum + autograd --------------------------------------------------

def _torch_einsum(case: Case, xs: Tensors, g: torch.Tensor) -> Runner:
    eq = case.equation
    if not case.einsum_ok:
        # torch.einsum takes at most 52 indices: what it would do if it could, opt_einsum's
        # path ('auto') as pairwise torch.einsum calls
        expr = oe.contract_expression(eq, *case.shapes)

        def f(*ts):
            return expr(*ts, backend="torch")
    elif case.dense_tanh:
        def f(x, w, c):
            return torch.tanh(torch.einsum(eq, x, w) + c)
    else:
        def f(*ts):
            return torch.einsum(eq, *ts)
    return _autograd_runner(f, xs, g)


# plain torch (dense case only) ------------------------------------------------

def _plain_torch(case: Case, xs: Tensors, g: torch.Tensor) -> Runner:
    def f(x, w, c):
        return torch.tanh(x @ w + c)
    return _autograd_runner(f, xs, g)


# (b) opt_einsum contract_expression + autograd ---------------------------------

def _opt_einsum(case: Case, xs: Tensors, g: torch.Tensor) -> Runner:
    expr = oe.contract_expression(case.equation, *case.shapes)

    def f(*ts):
        return expr(*ts, backend="torch")
    return _autograd_runner(f, xs, g)


# (c) one full contraction per gradient (TensorGrad.jl strategy) ----------------

def _per_gradient(case: Case, xs: Tensors, g: torch.Tensor) -> Runner:
    eq = case.equation
    grads = [_gradient_einsum(case, k) for k in range(case.n_tensors)]
    xs = [x.detach() for x in xs]

    def fwd_bwd():
        out = torch.einsum(eq, *xs)
        return out, [grad(g, xs) for grad in grads]

    def fwd():
        return torch.einsum(eq, *xs)

    return Runner(fwd_bwd, fwd)


def _gradient_einsum(case: Case, k: int):
    """dL/dX_k = one einsum of the upstream gradient with every other operand.

    Letters of X_k that occur nowhere else (the l of D[l,l]) are summed out of
    that einsum and broadcast back; a repeated letter is written onto the
    diagonal of a zero tensor.
    """
    target = case.operands[k].indices
    others = [op.indices for i, op in enumerate(case.operands) if i != k]
    seen = set(case.output.indices).union(*others)
    unique = "".join(dict.fromkeys(target))
    kept = "".join(c for c in unique if c in seen)
    eq = ",".join([case.output.indices, *others]) + "->" + kept
    view_shape = [case.sizes[c] if c in kept else 1 for c in unique]
    unique_shape = [case.sizes[c] for c in unique]
    full_shape = case.shape(case.operands[k])
    diagonal = len(unique) != len(target)

    def grad(g: torch.Tensor, xs: Tensors) -> torch.Tensor:
        v = torch.einsum(eq, g, *(x for i, x in enumerate(xs) if i != k))
        v = v.reshape(view_shape).expand(unique_shape)
        if not diagonal:
            return v
        out = v.new_zeros(full_shape)
        strides = [sum(s for c2, s in zip(target, out.stride()) if c2 == c)
                   for c in unique]
        out.as_strided(unique_shape, strides).copy_(v)
        return out

    return grad


# (d) tensormagic ---------------------------------------------------------------

def _tensormagic(case: Case, xs: Tensors, g: torch.Tensor,
                 options: dict | None = None) -> Runner:
    import tensormagic as tm

    fn = tm.tensorgrad(case.statement, **(options or {}))
    by_name = {op.name: x for op, x in zip(case.operands, xs)}
    if set(fn.inputs) != set(by_name):
        raise RuntimeError(f"tensormagic inputs {fn.inputs} != {sorted(by_name)}")
    names = [op.name for op in case.operands]
    order = [names.index(n) for n in fn.inputs]

    def f(*ts):
        return fn(*(ts[i] for i in order))
    runner = _autograd_runner(f, xs, g)
    runner.fn = fn
    return runner


def tensormagic_available() -> str | None:
    """None if `tm.tensorgrad` can be used, else the reason it cannot."""
    try:
        import tensormagic as tm
    except Exception as e:  # noqa: BLE001 - report any import failure verbatim
        return f"import tensormagic failed: {type(e).__name__}: {e}"
    if not hasattr(tm, "tensorgrad"):
        return "tensormagic has no tensorgrad()"
    return None


def _einsum_cases(case: Case) -> bool:
    return not case.dense_tanh


def _per_grad_cases(case: Case) -> bool:
    return not case.dense_tanh and case.einsum_ok


BASELINE = "einsum"


def make_methods(tm_options: dict | None = None) -> tuple[Method, ...]:
    """All methods, in table order; tm_options go to tm.tensorgrad."""
    def tm_prepare(case, xs, g):
        return _tensormagic(case, xs, g, tm_options)
    return (
        Method("einsum", "torch.einsum", lambda c: True, _torch_einsum),
        Method("opt_einsum", "opt_einsum expr", _einsum_cases, _opt_einsum),
        Method("per_grad", "einsum per grad", _per_grad_cases, _per_gradient),
        Method("plain", "plain torch", lambda c: c.dense_tanh, _plain_torch),
        Method("tm", "tensormagic", lambda c: True, tm_prepare),
    )
