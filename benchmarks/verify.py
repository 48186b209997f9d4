"""Inputs and the correctness check that gates every timing.

The reference is torch autograd in float64 on the very numbers the timed
float32 run sees (inputs drawn in float64, then rounded to float32).
"""

from __future__ import annotations

import opt_einsum as oe
import torch

from cases import Case

# max |x - ref| / max |ref|, per tensor (output and each gradient)
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def make_inputs(case: Case, seed: int = 0, device: str = "cpu"
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """float64 inputs and upstream gradient for `case` (deterministic, drawn on the CPU)."""
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(case.shape(op), generator=gen, dtype=torch.float64)
          * case.element_scale(op) for op in case.operands]
    g = torch.randn(case.output_shape, generator=gen, dtype=torch.float64)
    return [x.to(device) for x in xs], g.to(device)


def reference(case: Case, xs: list[torch.Tensor], g: torch.Tensor):
    """(output, gradients) by torch autograd in float64."""
    leaves = [x.detach().to(torch.float64).requires_grad_(True) for x in xs]
    if case.dense_tanh:
        x, w, c = leaves
        out = torch.tanh(x @ w + c)
    elif case.einsum_ok:
        out = torch.einsum(case.equation, *leaves)
    else:
        out = oe.contract(case.equation, *leaves, backend="torch", optimize="greedy")
    grads = torch.autograd.grad(out, leaves, g.to(torch.float64))
    return out.detach(), list(grads)


def relative_error(got, want) -> float:
    """Largest of max|got - want| / max|want| over output and gradients.

    inf when a tensor is missing, has the wrong shape, or is not finite.
    """
    (out, grads), (ref_out, ref_grads) = got, want
    worst = 0.0
    for a, b in zip([out, *grads], [ref_out, *ref_grads]):
        if a is None or tuple(a.shape) != tuple(b.shape):
            return float("inf")
        a = a.detach().to(torch.float64)
        if not torch.isfinite(a).all():
            return float("inf")
        scale = b.abs().max().item() or 1.0
        worst = max(worst, (a - b).abs().max().item() / scale)
    if len(grads) != len(ref_grads):
        return float("inf")
    return worst
