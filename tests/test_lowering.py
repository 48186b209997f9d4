"""Recognised forms (compiler/lowering.py): each is planned as its one fused torch primitive.

For every row: the primitive is in the generated code (forward and backward), the formulas
shown are still the index-notation derivation, values and the gradients of every input equal
torch.nn.functional's (float64), gradcheck and gradgradcheck pass, and the derived tangent
equals torch.func.jvp of the reference. Near misses (another tensor, another index, not the
variance, a complex value) are not lowered, and are still right.
"""
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp

import tensormagic as tm

F64 = torch.float64
LAYER_NORM = ("mu[b] := mean[i](x[b,i])\n"
              "v[b] := mean[i]((x[b,i] - mu[b]) ** 2)\n"
              "y[b,i] := (x[b,i] - mu[b]) / sqrt(v[b] + 0.00001) * g[i] + h[i]")


@dataclass
class Row:
    id: str
    text: str
    shapes: dict
    ref: object
    calls: tuple          # text the generated code must hold (forward, backward)
    values: dict = field(default_factory=dict)
    sizes: dict = None    # (as test_engine_language's rows: the transform matrix runs both)
    wrt: str = None
    pos: tuple = ()

    def __str__(self):
        return self.id


def mask():
    m = torch.zeros(3, 5, dtype=F64)
    m[0, 3:] = m[2, :2] = -float("inf")
    return m


ROWS = [
    Row("softmax", "p[b,i] := exp(x[b,i] - logsumexp[j](x[b,j]))", {"x": (3, 5)},
        lambda x: torch.softmax(x, 1), ("torch.softmax(", "_softmax_backward_data(")),
    Row("softmax-quotient", "p[b,i] := exp(x[b,i]) / sum[j](exp(x[b,j]))", {"x": (3, 5)},
        lambda x: torch.softmax(x, 1), ("torch.softmax(", "_softmax_backward_data(")),
    Row("softmax-max-shifted", "p[b,i] := exp(x[b,i] - max[j](x[b,j])) / sum[k](exp(x[b,k] - max[j](x[b,j])))",
        {"x": (3, 5)}, lambda x: torch.softmax(x, 1), ("torch.softmax(", "_softmax_backward_data(")),
    Row("softmax-first-index", "p[i,b] := exp(x[i,b] - logsumexp[j](x[j,b]))", {"x": (4, 3)},
        lambda x: torch.softmax(x, 0), ("torch.softmax(x, 0)",)),
    Row("masked-softmax", "p[b,i] := exp(x[b,i] + m[b,i] - logsumexp[j](x[b,j] + m[b,j]))",
        {"x": (3, 5), "m": (3, 5)}, lambda x, m: torch.softmax(x + m, 1), ("torch.softmax(",),
        values={"m": mask()}),
    Row("attention", "S[q,k] := Q[q,d] * K[k,d] / 2\nP[q,k] := exp(S[q,k] - logsumexp[m](S[q,m]))\n"
        "O[q,e] := P[q,k] * V[k,e]", {"Q": (3, 4), "K": (5, 4), "V": (5, 2)},
        lambda Q, K, V: torch.softmax(Q @ K.T / 2, 1) @ V, ("torch.softmax(", "_softmax_backward_data(")),
    Row("log-softmax", "p[b,i] := x[b,i] - logsumexp[j](x[b,j])", {"x": (3, 5)},
        lambda x: torch.log_softmax(x, 1), ("torch.log_softmax(", "_log_softmax_backward_data(")),
    Row("log-softmax-first-index", "p[b,i] := x[b,i] - logsumexp[j](x[j,i])", {"x": (4, 3)},
        lambda x: torch.log_softmax(x, 0), ("torch.log_softmax(x, 0)",)),
    Row("log-softmax-in-a-sum", "p[b,i] := 2 * y[b,i] + x[b,i] - logsumexp[j](x[b,j])",
        {"x": (3, 5), "y": (3, 5)}, lambda x, y: 2 * y + torch.log_softmax(x, 1), ("torch.log_softmax(",)),
    Row("cross-entropy-sum", "L := sum[n](logsumexp[c](z[n,c]) - z[n, y[n]])",
        {"z": (4, 5), "y": ("int", 5, (4,))}, lambda z, y: F.cross_entropy(z, y, reduction="sum"),
        ("torch.log_softmax(", "_cross_entropy_backward(")),
    Row("cross-entropy-mean", "L := mean[n](logsumexp[c](z[n,c]) - z[n, y[n]])",
        {"z": (4, 5), "y": ("int", 5, (4,))}, lambda z, y: F.cross_entropy(z, y), ("_cross_entropy_backward(",)),
    Row("cross-entropy-per-token", "l[b,t] := logsumexp[c](z[b,t,c]) - z[b,t, y[b,t]]",
        {"z": (2, 3, 5), "y": ("int", 5, (2, 3))},
        lambda z, y: F.cross_entropy(z.permute(0, 2, 1), y, reduction="none"), ("_cross_entropy_backward(",)),
    Row("cross-entropy-repeated-targets", "L := sum[n](logsumexp[c](z[n,c]) - z[n, y[n]])",
        {"z": (4, 3), "y": ("int", 3, (4,))}, lambda z, y: F.cross_entropy(z, y, reduction="sum"),
        ("_cross_entropy_backward(",), values={"y": torch.tensor([2, 2, 0, 2])}),
    Row("layer-norm-statements", LAYER_NORM, {"x": (3, 5), "g": (5,), "h": (5,)},
        lambda x, g, h: F.layer_norm(x, (5,), g, h, eps=1e-5),
        ("torch.native_layer_norm(", "native_layer_norm_backward(")),
    Row("layer-norm-inline", "y[b,i] := (x[b,i] - mean[j](x[b,j])) / sqrt(mean[j]((x[b,j] - mean[k](x[b,k]))**2) + 0.001)",
        {"x": (3, 5)}, lambda x: F.layer_norm(x, (5,), eps=1e-3), ("torch.native_layer_norm(",)),
    Row("layer-norm-gain-only", "mu[b] := mean[i](x[b,i])\nv[b] := mean[i]((x[b,i] - mu[b])**2)\n"
        "y[b,i] := g[i] * (x[b,i] - mu[b]) / sqrt(v[b] + 0.00001)", {"x": (3, 5), "g": (5,)},
        lambda x, g: F.layer_norm(x, (5,), g, eps=1e-5), ("torch.native_layer_norm(",)),
    Row("layer-norm-3d", "mu[b,t] := mean[i](x[b,t,i])\nv[b,t] := mean[i]((x[b,t,i] - mu[b,t])**2)\n"
        "y[b,t,i] := (x[b,t,i] - mu[b,t]) / sqrt(v[b,t] + 0.00001) * g[i] + h[i]",
        {"x": (2, 3, 4), "g": (4,), "h": (4,)}, lambda x, g, h: F.layer_norm(x, (4,), g, h, eps=1e-5),
        ("torch.native_layer_norm(",)),
    Row("gelu", "y[b,i] := 0.5 * x[b,i] * (1 + erf(x[b,i] / sqrt(2)))", {"x": (3, 5)}, lambda x: F.gelu(x),
        ("gelu(", "gelu_backward(")),
    Row("gelu-tanh", "y[b,i] := 0.5 * x[b,i] * (1 + tanh(0.7978845608028654 * (x[b,i] + 0.044715 * x[b,i]**3)))",
        {"x": (3, 5)}, lambda x: F.gelu(x, approximate="tanh"), ("approximate='tanh'",)),
    Row("silu", "y[b,i] := x[b,i] * sigmoid(x[b,i])", {"x": (3, 5)}, lambda x: F.silu(x),
        ("silu(", "silu_backward(")),
    Row("silu-mlp", "h[b,o] := X[b,i]*W[i,o] + c[o]\na[b,o] := h[b,o] * sigmoid(h[b,o])\n"
        "y[b,p] := a[b,o]*U[o,p]", {"X": (3, 4), "W": (4, 5), "c": (5,), "U": (5, 2)},
        lambda X, W, c, U: F.silu(X @ W + c) @ U, ("silu(", "silu_backward(")),
]

NEAR_MISSES = [
    Row("softmax-of-another-tensor", "p[b,i] := exp(x[b,i] - logsumexp[j](y[b,j]))", {"x": (3, 5), "y": (3, 5)},
        lambda x, y: torch.exp(x - torch.logsumexp(y, 1, keepdim=True)), ()),
    Row("logsumexp-of-another-expression", "p[b,i] := x[b,i] - logsumexp[j](2 * x[b,j])", {"x": (3, 4)},
        lambda x: x - torch.logsumexp(2 * x, 1, keepdim=True), ()),
    Row("not-the-variance", "mu[b] := mean[i](x[b,i])\nv[b] := mean[i](x[b,i] ** 2)\n"
        "y[b,i] := (x[b,i] - mu[b]) / sqrt(v[b] + 0.00001)", {"x": (3, 5)},
        lambda x: (x - x.mean(1, keepdim=True)) / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-5), ()),
    Row("normalised-index-not-last", "mu[b] := mean[i](x[i,b])\nv[b] := mean[i]((x[i,b] - mu[b])**2)\n"
        "y[i,b] := (x[i,b] - mu[b]) / sqrt(v[b] + 0.00001)", {"x": (5, 3)},
        lambda x: F.layer_norm(x.T, (5,), eps=1e-5).T, ()),
    Row("not-gelu", "y[i] := 0.5 * x[i] * (1 + erf(x[i] / 2))", {"x": (5,)},
        lambda x: 0.5 * x * (1 + torch.erf(x / 2)), ()),
    Row("not-silu", "y[i] := x[i] * sigmoid(z[i])", {"x": (5,), "z": (5,)}, lambda x, z: x * torch.sigmoid(z), ()),
]
FUSED = ("torch.softmax(", "torch.log_softmax(", "native_layer_norm", "gelu(", "silu(")


def make(row):
    gen = torch.Generator().manual_seed(len(row.id))
    vals = {}
    for name, shape in row.shapes.items():
        if name in row.values:
            vals[name] = row.values[name].clone()
        elif shape[0] == "int":
            vals[name] = torch.randint(0, shape[1], shape[2], generator=gen)
        else:
            vals[name] = torch.randn(shape, dtype=F64, generator=gen)
    return vals


def _floats(vals):
    return [n for n, v in vals.items() if v.is_floating_point()]


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_the_form_runs_as_its_fused_primitive(row):
    fn = tm.tensorgrad(row.text)
    vals = make(row)
    fn(**vals)
    for call in row.calls:
        assert call in fn.code, (call, fn.code)
    # what is shown is the derivation in index notation, not the primitive
    shown = str(fn) + "".join(fn.formulas.values())
    assert "torch" not in shown and all(f.startswith("Δ") for f in fn.formulas.values())


@pytest.mark.parametrize("row", ROWS + NEAR_MISSES, ids=str)
def test_values_and_gradients_equal_torch(row):
    fn = tm.tensorgrad(row.text)
    vals = make(row)
    floats = _floats(vals)
    mine = {n: v.clone().requires_grad_(n in floats) for n, v in vals.items()}
    theirs = {n: v.clone().requires_grad_(n in floats) for n, v in vals.items()}
    out, want = fn(**mine), row.ref(**theirs)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    g = torch.randn(want.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, [mine[n] for n in floats], g)
    exp = torch.autograd.grad(want, [theirs[n] for n in floats], g)
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("row", NEAR_MISSES, ids=str)
def test_near_misses_are_not_lowered(row):
    fn = tm.tensorgrad(row.text)
    fn(**make(row))
    assert not any(call in fn.code for call in FUSED), fn.code


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_gradcheck_and_gradgradcheck(row):
    fn = tm.tensorgrad(row.text)
    vals = make(row)
    floats = _floats(vals)
    inputs = [vals[n].requires_grad_() if n in floats else vals[n] for n in fn.inputs]
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_tangents_equal_jvp_of_torch(row):
    fn = tm.tensorgrad(row.text)
    vals = make(row)
    floats = _floats(vals)
    gen = torch.Generator().manual_seed(2)
    tangents = tuple(torch.randn(vals[n].shape, dtype=F64, generator=gen) for n in floats)

    def split(f):
        return lambda *xs: f(**{**vals, **dict(zip(floats, xs))})
    got = jvp(split(fn), tuple(vals[n] for n in floats), tangents)
    want = jvp(split(row.ref), tuple(vals[n] for n in floats), tangents)
    torch.testing.assert_close(got[1], want[1], rtol=1e-9, atol=1e-11)


def test_a_complex_program_is_not_lowered():
    fn = tm.tensorgrad("p[b,i] := exp(z[b,i] - logsumexp[j](z[b,j]))")
    z = torch.randn(2, 3, dtype=torch.complex128)
    torch.testing.assert_close(fn(z), torch.exp(z - torch.logsumexp(z, 1, keepdim=True)))
    assert "torch.softmax(" not in fn.code


def test_every_output_of_a_lowered_cell_is_still_computed():
    """evaluate() returns mu and v too (their own ops stay), and their gradients flow."""
    fn = tm.tensorgrad(LAYER_NORM)
    x = torch.randn(3, 5, dtype=F64, requires_grad=True)
    g, h = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)
    outs = fn.evaluate(x, g, h)
    torch.testing.assert_close(outs["mu"], x.mean(1))
    torch.testing.assert_close(outs["v"], x.var(1, unbiased=False))
    (outs["mu"].sum() + outs["v"].sum() + outs["y"].sum()).backward()
    ref = x.detach().clone().requires_grad_()
    (ref.mean(1).sum() + ref.var(1, unbiased=False).sum() + F.layer_norm(ref, (5,), g, h).sum()).backward()
    torch.testing.assert_close(x.grad, ref.grad)
