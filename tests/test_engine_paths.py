"""Off the common paths: regressions for issue 10 (per-term sums, complex with constants,
diagonal spreads, real-valued functions of complex inputs, zero bases, odd constants, size
limits, name collisions, bad arguments, resource bounds).

Every gradient is checked against torch autograd of a plain-torch computation, and with
gradcheck / gradgradcheck in float64 (complex128 for complex inputs).
"""

import pytest
import torch

import tensormagic as tm

F64, C128 = torch.float64, torch.complex128


# -- 1. each top-level term is read on its own --------------------------------------------
@pytest.mark.parametrize("text, shown", [
    ("L := (H[b,o]*V[o] - T[b])**2 + V[o]*V[o]",
     "L := (Σ_b ((Σ_o H[b,o] * V[o]) - T[b])**2) + (Σ_o V[o] * V[o])"),
    ("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o]) + X[b,i]*S[i,o]",
     "Y[b,o] := tanh((Σ_i X[b,i] * W[i,o]) + c[o]) + (Σ_i X[b,i] * S[i,o])"),
    ("s := sigmoid(T[i,i,i]) + x[i]*y[i]",
     "s := sigmoid(Σ_i T[i,i,i]) + (Σ_i x[i] * y[i])"),
])
def test_sums_sit_per_term(text, shown):
    assert tm.tensorgrad(text).statement == shown
