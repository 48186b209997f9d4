"""Every language form, one table row each, checked against hand-written torch.

For each row: the engine's forward equals a plain-torch reference (float64,
rtol 1e-8); its gradients wrt every `wrt` input equal torch.autograd.grad of
that reference; gradcheck and gradgradcheck pass; gradients of the other
inputs are never computed; and every derived formula of a single real
statement, read back as a statement of the language, evaluates to the
gradient (formulas are written for real numbers).  The independent evaluator
in reference.py is checked against the same hand-written rows.
"""

import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch.nn.functional import softplus

import reference
from conftest import evaluate_formula, expand_phantom_sums, index_sizes, make_tensor

import tensormagic as tm

F64, C128 = torch.float64, torch.complex128
ein = torch.einsum


@dataclass
class Form:
    id: str
    text: str
    shapes: dict  # name -> shape tuple, or a Python number for a scalar input
    ref: object  # callable(**inputs) -> output of the last statement
    wrt: object = None
    pos: tuple = ()  # inputs drawn in [0.5, 1.5]
    away: tuple = ()  # inputs drawn with |x| >= 0.2
    dtype: torch.dtype = F64
    tensor_scalars: tuple = ()  # Python-number shapes given as 0-dim tensors
    roundtrip: bool = True  # single statement: formulas read back as statements
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.id


def tr(m):
    return ein("ll->", m)


# name: (torch function, input kind): every function of the reference but the flat ones
UNARY = {name: (reference.FUNCTIONS[name], {"positive": "pos", "kinked": "away"}.get(how, "normal"))
         for name, how in reference.DRAW.items() if how != "flat"}


def _unary_rows():
    rows = []
    for name, (f, kind) in UNARY.items():
        sel = {"pos": {"pos": ("X",)}, "away": {"away": ("X",)}, "normal": {}}[kind]
        rows.append(Form(f"fn-{name}", f"Y[i,j] := {name}(X[i,j])", {"X": (3, 4)}, lambda X, f=f: f(X), **sel))
        # the function of a contraction, inside a product: Σ_j sits inside the call
        sel2 = {"pos": {"pos": ("X", "v")}, "away": {"away": ("w",)}, "normal": {}}[kind]
        rows.append(
            Form(
                f"fn-{name}-contracted",
                f"y[i] := w[i] * {name}(X[i,j] * v[j])",
                {"w": (2,), "X": (2, 3), "v": (3,)},
                lambda w, X, v, f=f: w * f(X @ v),
                **sel2,
            )
        )
    return rows


FORMS = [
    Form("matmul", "A[i,k] := B[i,j] * C[j,k]", {"B": (3, 4), "C": (4, 5)}, lambda B, C: B @ C),
    Form(
        "matmul-trace-wrt-BC",
        "A[i,k] := B[i,j] * C[j,k] * D[l,l]",
        {"B": (3, 4), "C": (4, 2), "D": (3, 3)},
        lambda B, C, D: (B @ C) * tr(D),
        wrt="B C",
    ),
    Form("trace-all", "A[i,k] := B[i,j] * C[j,k] * D[l,l]", {"B": (3, 4), "C": (4, 2), "D": (3, 3)},
         lambda B, C, D: (B @ C) * tr(D)),
    Form("transpose-times-trace", "A[i,j] := B[j,i] * C[k,k]", {"B": (4, 3), "C": (2, 2)},
         lambda B, C: B.T * tr(C)),
    Form("permute", "A[j,i] := B[i,j]", {"B": (2, 3)}, lambda B: B.T),
    Form("batched-matmul", "z[i,k,b] := x[i,j,b] * y[j,k,b]", {"x": (2, 3, 4), "y": (3, 2, 4)},
         lambda x, y: ein("ijb,jkb->ikb", x, y)),
    Form("trace-iik", "z[k] := x[i,i,k]", {"x": (3, 3, 2)}, lambda x: ein("iik->k", x)),
    Form("trace-iikjj", "z[k] := x[i,i,k,j,j]", {"x": (3, 3, 2, 3, 3)}, lambda x: ein("iikjj->k", x)),
    Form("diag-kept", "d[i] := x[i,i]", {"x": (3, 3)}, lambda x: torch.diagonal(x)),
    # regression: a full trace broadcast along another summed index (δ times a scalar, expanded)
    Form("trace-and-broadcast-summed", "s := x[j,j,i]", {"x": (2, 2, 3)}, lambda x: ein("jji->", x)),
    Form("tensorgrad-3way", "A[i,j] := B[a,b,j,k] * C[b,c,k,i] * D[a,c]",
         {"B": (2, 2, 3, 2), "C": (2, 2, 2, 3), "D": (2, 2)}, lambda B, C, D: ein("abjk,bcki,ac->ij", B, C, D)),
    Form("double-contraction", "Z[a,b] := X[a,i,j] * Y[i,j,b]", {"X": (2, 3, 4), "Y": (3, 4, 5)},
         lambda X, Y: ein("aij,ijb->ab", X, Y)),
    Form("dot", "s := x[i] * y[i]", {"x": (5,), "y": (5,)}, lambda x, y: x @ y),
    Form("dot-brackets", "s[] := x[i] * y[i]", {"x": (5,), "y": (5,)}, lambda x, y: x @ y),
    Form("outer", "O[i,j] := x[i] * y[j]", {"x": (3,), "y": (4,)}, lambda x, y: torch.outer(x, y)),
    Form("outer3", "O[i,j,k] := x[i] * y[j] * z[k]", {"x": (2,), "y": (3,), "z": (4,)},
         lambda x, y, z: ein("i,j,k->ijk", x, y, z)),
    Form("gram-same-tensor-twice", "G[i,j] := x[i,k] * x[j,k]", {"x": (3, 4)}, lambda x: x @ x.T),
    Form("self-square-sum", "s := x[i,j] * x[i,j]", {"x": (3, 4)}, lambda x: (x * x).sum()),
    Form("two-terms", "A[i,k] := B[i,j] * C[j,k] + E[i,k]", {"B": (3, 4), "C": (4, 2), "E": (3, 2)},
         lambda B, C, E: B @ C + E),
    Form("minus", "A[i,k] := B[i,j] * C[j,k] - E[i,k]", {"B": (3, 4), "C": (4, 2), "E": (3, 2)},
         lambda B, C, E: B @ C - E),
    Form("three-terms", "A[i,k] := B[i,j] * C[j,k] - E[i,k] + F[k,i]",
         {"B": (3, 4), "C": (4, 2), "E": (3, 2), "F": (2, 3)}, lambda B, C, E, F: B @ C - E + F.T),
    Form("bias-broadcast", "Y[b,o] := X[b,i] * W[i,o] + bias[o]", {"X": (3, 4), "W": (4, 2), "bias": (2,)},
         lambda X, W, bias: X @ W + bias),
    Form("outer-sum-broadcast", "A[i,j] := x[i] + y[j]", {"x": (3,), "y": (4,)}, lambda x, y: x[:, None] + y),
    Form("single-index-own-term", "A[i] := x[i] + y[j]", {"x": (3,), "y": (4,)}, lambda x, y: x + y.sum()),
    Form("single-index-in-product-term", "A[i] := x[i] * y[j] + z[i]", {"x": (3,), "y": (4,), "z": (3,)},
         lambda x, y, z: x * y.sum() + z),
    Form("sum-over-sum", "s := x[i] + y[i]", {"x": (4,), "y": (4,)}, lambda x, y: (x + y).sum()),
    Form("sum-over-broadcast-sum", "A[k] := w[i] * (x[i] + y[k])", {"w": (3,), "x": (3,), "y": (2,)},
         lambda w, x, y: w @ x + w.sum() * y),
    # a product around a sum stays a product: i is summed over the whole right side, whatever the factor
    Form("scope-times-two", "A[k] := 2 * (x[i] + y[k])", {"x": (3,), "y": (2,)}, lambda x, y: 2 * (x.sum() + 3 * y)),
    Form("scope-times-one", "A[k] := (x[i] + y[k]) * 1", {"x": (3,), "y": (2,)}, lambda x, y: x.sum() + 3 * y),
    Form("scope-double-negation", "A[k] := -(-(x[i] + y[k]))", {"x": (3,), "y": (2,)}, lambda x, y: x.sum() + 3 * y),
    Form("literal-scalar", "A[i,k] := 2.5 * B[i,j] * C[j,k]", {"B": (3, 4), "C": (4, 2)},
         lambda B, C: 2.5 * (B @ C)),
    Form("named-python-scalar", "A[i,k] := alpha * B[i,j] * C[j,k]", {"alpha": 0.7, "B": (3, 4), "C": (4, 2)},
         lambda alpha, B, C: alpha * (B @ C)),
    Form("named-tensor-scalar", "A[i,k] := alpha * B[i,j] * C[j,k] + beta", {"alpha": 0.7, "B": (3, 4),
         "C": (4, 2), "beta": -0.3}, lambda alpha, B, C, beta: alpha * (B @ C) + beta,
         tensor_scalars=("alpha", "beta")),
    Form("scalar-factor-transposed-output", "O[i,j] := 2 * A[j,i] * B[j,i]", {"A": (2, 3), "B": (2, 3)},
         lambda A, B: (2 * A * B).T),
    Form("minus-outer-size-one", "O[i,a,k] := -x[a] * x[i] * y[k]", {"x": (1,), "y": (2,)},
         lambda x, y: -ein("a,i,k->iak", x, x, y)),
    Form("named-scalar-in-call", "s := sin(A[j,i] * x[i] * c) / y[i]", {"A": (2, 1), "x": (1,), "c": 0.7, "y": (1,)},
         lambda A, x, c, y: (torch.sin(A * x * c) / y).sum(), pos=("y",)),
    Form("divide", "A[i,k] := B[i,k] / C[i,k]", {"B": (3, 2), "C": (3, 2)}, lambda B, C: B / C, pos=("C",)),
    Form("divide-by-contraction", "p[i] := e[i] / (e[j] * w[j])", {"e": (4,), "w": (4,)},
         lambda e, w: e / (e @ w), pos=("e", "w")),
    Form("exp-over-x", "s := exp(x[i]) / x[j]", {"x": (4,)}, lambda x: torch.exp(x).sum() * (1 / x).sum(),
         pos=("x",)),
    Form("divide-by-scalar-name", "A[i] := x[i] / alpha", {"x": (3,), "alpha": 1.3},
         lambda x, alpha: x / alpha, tensor_scalars=("alpha",)),
    Form("number-to-tensor-power", "A[i] := 2 ** x[i]", {"x": (4,)}, lambda x: 2**x),
    Form("pow-const", "A[i] := x[i] ** 3", {"x": (4,)}, lambda x: x**3),
    Form("pow-half", "A[i] := x[i] ** 0.5", {"x": (4,)}, lambda x: x**0.5, pos=("x",)),
    Form("pow-of-contraction", "s := (x[i] * y[i]) ** 2", {"x": (4,), "y": (4,)}, lambda x, y: (x @ y) ** 2),
    Form("pow-tensor-exponent", "A[i,j] := x[i] ** y[j]", {"x": (3,), "y": (4,)},
         lambda x, y: x[:, None] ** y[None, :], pos=("x",)),
    Form("pow-scalar-exponent", "A[i] := x[i] ** p", {"x": (3,), "p": 1.7}, lambda x, p: x**p, pos=("x",),
         tensor_scalars=("p",)),
    Form("unary-minus", "A[i,k] := -B[i,j] * C[j,k]", {"B": (3, 4), "C": (4, 2)}, lambda B, C: -(B @ C)),
    Form("unary-minus-term", "A[i] := -x[i] + y[i]", {"x": (3,), "y": (3,)}, lambda x, y: y - x),
    *_unary_rows(),
    Form("function-of-numbers", "A[i] := x[i] * sqrt(3 + 2) - sinh(2 - 3)", {"x": (3,)},
         lambda x: x * 5**0.5 - torch.sinh(torch.tensor(-1.0, dtype=F64))),
    Form("function-of-python-scalar", "A[i] := x[i] * softplus(s) - exp(s)", {"x": (3,), "s": 0.7},
         lambda x, s: x * softplus(torch.as_tensor(s, dtype=F64)) - torch.exp(torch.as_tensor(s, dtype=F64))),
    Form("nested-tanh-layer", "Y[b,c] := tanh(X[b,i] * W[i,o] + c[o]) * V[o,c]",
         {"X": (3, 4), "W": (4, 5), "c": (5,), "V": (5, 2)}, lambda X, W, c, V: torch.tanh(X @ W + c) @ V),
    Form("nested-tanh-layer-distinct", "Y[b,k] := tanh(X[b,i] * W[i,o] + c[o]) * V[o,k]",
         {"X": (3, 4), "W": (4, 5), "c": (5,), "V": (5, 2)}, lambda X, W, c, V: torch.tanh(X @ W + c) @ V),
    Form("exp-rowsum", "S[i] := exp(M[i,j])", {"M": (3, 4)}, lambda M: torch.exp(M).sum(1)),
    Form("exp-of-trace", "s := exp(D[l,l])", {"D": (3, 3)}, lambda D: torch.exp(tr(D))),
    # occurrences that meet only in a sum (or across **) are free there: Σ at the top-level term(s)
    Form("exp-of-sum-free", "s := exp(x[i] + y[i])", {"x": (3,), "y": (3,)}, lambda x, y: torch.exp(x + y).sum()),
    Form("sum-free-per-term", "A[k] := x[i] + y[i] + z[k]", {"x": (3,), "y": (3,), "z": (2,)},
         lambda x, y, z: x.sum() + y.sum() + z),
    Form("squared-error-loss", "L := (H[b,o] * V[o] - T[b]) ** 2", {"H": (4, 3), "V": (3,), "T": (4,)},
         lambda H, V, T: ((H @ V - T) ** 2).sum()),
    # each top-level term is read on its own: another term's occurrences never move a sum
    Form("per-term-regulariser", "L := (H[b,o] * V[o] - T[b]) ** 2 + V[o] * V[o]",
         {"H": (4, 3), "V": (3,), "T": (4,)}, lambda H, V, T: ((H @ V - T) ** 2).sum() + V @ V),
    Form("per-term-skip-connection", "Y[b,o] := tanh(X[b,i] * W[i,o] + c[o]) + X[b,i] * S[i,o]",
         {"X": (3, 4), "W": (4, 2), "c": (2,), "S": (4, 2)},
         lambda X, W, c, S: torch.tanh(X @ W + c) + X @ S),
    Form("per-term-trace-inside-sigmoid", "s := sigmoid(T[i,i,i]) + x[i] * y[i]",
         {"T": (3, 3, 3), "x": (3,), "y": (3,)},
         lambda T, x, y: torch.sigmoid(ein("iii->", T)) + x @ y),
    Form("per-term-free-beside-contracted", "A[k] := exp(x[i]) * z[k] - x[i] * y[i]",
         {"x": (3,), "z": (2,), "y": (3,)}, lambda x, z, y: torch.exp(x).sum() * z - x @ y),
    Form("pow-same-index-free", "s := x[i] ** y[i]", {"x": (4,), "y": (4,)}, lambda x, y: (x**y).sum(),
         pos=("x",)),
    Form("tanh-of-difference", "A[b] := tanh(x[b,o] - y[o]) * v[o]", {"x": (3, 4), "y": (4,), "v": (4,)},
         lambda x, y, v: torch.tanh(x - y) @ v),
    Form("exp-single-index-outside", "A[k] := exp(x[i] + y[k])", {"x": (3,), "y": (2,)},
         lambda x, y: torch.exp(x[:, None] + y).sum(0)),
    Form("single-index-inside-log-is-outside", "L[b] := x[b,c] * t[b,c] - log(exp(x[b,k]))",
         {"x": (3, 4), "t": (3, 4)}, lambda x, t: (x * t).sum(1) - torch.log(torch.exp(x)).sum(1)),
    Form("logsumexp-via-weights", "L[b] := log(exp(x[b,k]) * o[k])", {"x": (3, 4), "o": (4,)},
         lambda x, o: torch.log(torch.exp(x) @ o), pos=("o",)),
    Form("softmax-xent-two-statements", "S[b] := exp(x[b,k])\nL[b] := log(S[b]) - x[b,c] * t[b,c]",
         {"x": (3, 4), "t": (3, 4)}, lambda x, t: torch.logsumexp(x, 1) - (x * t).sum(1), roundtrip=False),
    Form("overwrite", "A[i,k] = B[i,j] * C[j,k]", {"A": (3, 2), "B": (3, 4), "C": (4, 2)},
         lambda A, B, C: B @ C, roundtrip=False),
    Form("accumulate", "A[i,k] += B[i,j] * C[j,k]", {"A": (3, 2), "B": (3, 4), "C": (4, 2)},
         lambda A, B, C: A + B @ C, roundtrip=False),
    Form(
        "two-layer-net-loss",
        "# a two-layer net\n"
        "H[b,h] := tanh(X[b,i] * W1[i,h] + b1[h])\n"
        "Y[b,o] := H[b,h] * W2[h,o] + b2[o]\n"
        "\n"
        "E[b,o] := Y[b,o] - T[b,o]\n"
        "loss := E[b,o] ** 2 / 2   # mean-free squared error\n",
        {"X": (4, 3), "W1": (3, 5), "b1": (5,), "W2": (5, 2), "b2": (2,), "T": (4, 2)},
        lambda X, W1, b1, W2, b2, T: (((torch.tanh(X @ W1 + b1) @ W2 + b2) - T) ** 2).sum() / 2,
        wrt="W1 b1 W2 b2",
        roundtrip=False,
        extra={"all": lambda X, W1, b1, W2, b2, T: _net_all(X, W1, b1, W2, b2, T)},
    ),
    Form(
        "chain-reads-earlier-outputs",
        "A[i,k] := B[i,j] * C[j,k]\nd[i] := A[i,k] * v[k]\nA[i,k] += d[i] * w[k]",
        {"B": (3, 4), "C": (4, 2), "v": (2,), "w": (2,)},
        lambda B, C, v, w: B @ C + torch.outer((B @ C) @ v, w),
        roundtrip=False,
        extra={"all": lambda B, C, v, w: {"A": B @ C + torch.outer((B @ C) @ v, w), "d": (B @ C) @ v}},
    ),
    Form(
        "chain-overwrite-earlier-output",
        "A[i] := x[i] * y[j]\nA[i] = exp(A[i])",
        {"x": (3,), "y": (4,)},
        lambda x, y: torch.exp(x * y.sum()),
        roundtrip=False,
    ),
    Form("greek", "y[α] := W[α,β] * x[β]", {"W": (3, 4), "x": (4,)}, lambda W, x: W @ x),
    Form("complex-matmul", "A[i,k] := B[i,j] * C[j,k]", {"B": (3, 4), "C": (4, 2)}, lambda B, C: B @ C, dtype=C128),
    Form("complex-conj-exp", "y[i] := conj(x[i]) * exp(M[i,j] * x[j])", {"x": (3,), "M": (3, 3)},
         lambda x, M: torch.conj(x) * torch.exp(M @ x), dtype=C128),
    Form("complex-modulus", "A[i] := conj(z[i]) * z[i] + s[i,j] * z[j]", {"z": (3,), "s": (3, 3)},
         lambda z, s: torch.conj(z) * z + s @ z, dtype=C128),
]


def _net_all(X, W1, b1, W2, b2, T):
    H = torch.tanh(X @ W1 + b1)
    Y = H @ W2 + b2
    E = Y - T
    return {"H": H, "Y": Y, "E": E, "loss": (E**2).sum() / 2}


# ----------------------------------------------------------------------------
# helpers


def make_inputs(form, dtype=None):
    dtype = dtype or form.dtype
    vals = {}
    for name, shape in form.shapes.items():
        if isinstance(shape, (int, float, complex)):
            vals[name] = torch.tensor(shape, dtype=dtype) if name in form.tensor_scalars else shape
        else:
            kind = "pos" if name in form.pos else "away" if name in form.away else "normal"
            vals[name] = make_tensor(shape, kind, dtype)
    return vals


def leaves(vals, names=None):
    """Fresh leaf copies; those in `names` (default: every tensor) require grad."""
    out = {}
    for k, v in vals.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().clone()
            if names is None or k in names:
                v.requires_grad_(True)
        out[k] = v
    return out


def expected_wrt(form):
    if form.wrt is not None:
        return tuple(form.wrt.split())
    overwritten = {st.name for st in reference.statements(form.text) if st.op == "="}
    return tuple(n for n in reference.inputs(form.text) if n not in overwritten)


def close(got, want, rtol=1e-8, atol=1e-10):
    assert isinstance(got, torch.Tensor), type(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def grad_names(form, vals, fn):
    return [n for n in fn.wrt if isinstance(vals[n], torch.Tensor)]


def ids(rows):
    return [r.id for r in rows]


# ----------------------------------------------------------------------------
# the reference evaluator agrees with the hand-written rows (no engine needed)


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_reference_evaluator_matches_hand_written(form):
    vals = make_inputs(form)
    outs = reference.evaluate(form.text, vals)
    last = reference.statements(form.text)[-1].name
    close(outs[last], form.ref(**vals))
    assert tuple(reference.inputs(form.text)) == tuple(form.shapes)


# ----------------------------------------------------------------------------
# the engine


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_metadata(form):
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    assert fn.inputs == tuple(form.shapes)
    assert fn.outputs == reference.outputs(form.text)
    assert fn.wrt == expected_wrt(form)
    assert fn.name == fn.outputs[-1] + "_fn" == reference.statements(form.text)[-1].name + "_fn"
    assert set(fn.formulas) == set(fn.wrt)
    assert isinstance(fn.statement, str) and isinstance(fn.code, str)


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_forward(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    want = form.ref(**vals)
    close(fn(**vals), want)
    close(fn(*[vals[n] for n in fn.inputs]), want)
    if "all" in form.extra:
        got_all = fn.evaluate(**vals)
        want_all = form.extra["all"](**vals)
        assert set(got_all) == set(fn.outputs) == set(want_all)
        for name in want_all:
            close(got_all[name], want_all[name])


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_gradients_match_autograd_of_reference(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    names = grad_names(form, vals, fn)
    assert names, "every row differentiates something"
    mine, theirs = leaves(vals), leaves(vals)
    out = fn(**mine)
    ref = form.ref(**theirs)
    upstream = torch.randn_like(ref)
    got = torch.autograd.grad(out, [mine[n] for n in names], upstream)
    want = torch.autograd.grad(ref, [theirs[n] for n in names], upstream, allow_unused=True)
    for n, g, w in zip(names, got, want):
        close(g, torch.zeros_like(theirs[n]) if w is None else w)


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_non_wrt_gradients_stay_none(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    mine = leaves(vals)
    out = fn(**mine)
    out.backward(torch.randn_like(out))
    for n, v in mine.items():
        if isinstance(v, torch.Tensor):
            if n in fn.wrt:
                assert v.grad is not None, n
            else:
                assert v.grad is None, n


def _as_function_of_wrt(form, fn, vals):
    names = grad_names(form, vals, fn)
    fixed = leaves(vals, names=())

    def f(*args):
        return fn(**{**fixed, **dict(zip(names, args))})

    return f, tuple(leaves(vals, names)[n] for n in names)


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_gradcheck(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    f, args = _as_function_of_wrt(form, fn, vals)
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_gradgradcheck(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    f, args = _as_function_of_wrt(form, fn, vals)
    assert torch.autograd.gradgradcheck(f, args)


# ----------------------------------------------------------------------------
# formulas are statements of the language

# Formulas are written for real numbers (the code conjugates partials for complex inputs).
ROUNDTRIP = [f for f in FORMS if f.roundtrip and not f.dtype.is_complex]
_DELTA = re.compile(r"δ\[\s*(\w+)\s*,\s*(\w+)\s*\]")


def _formula_inputs(formula, target, text, vals, upstream):
    """Values for the names a formula reads: ΔA upstream, ΔB zeros, δ identity,
    inputs as given, and forward outputs (from the independent reference)."""
    lhs = reference.statements(formula)[0]
    assert lhs.name == "Δ" + target, formula
    shape = tuple(torch.as_tensor(vals[target]).shape)
    sizes = dict(zip(lhs.indices, shape))
    env = {}
    forward = None
    out_name = reference.statements(text)[-1].name
    for n in reference.inputs(formula):
        if n.startswith("ONE"):
            continue  # ones for an explicit Σ (expand_phantom_sums)
        if n == "Δ" + out_name:
            env[n] = upstream
        elif n == "Δ" + target:
            env[n] = torch.zeros(shape, dtype=upstream.dtype)
        elif n == "δ":
            ns = {sizes[a] for a, b in _DELTA.findall(formula)}
            assert len(ns) == 1, "rows are built so every δ has one size"
            env[n] = torch.eye(ns.pop(), dtype=upstream.dtype)
        elif n in vals:
            env[n] = vals[n]
        else:
            forward = forward or reference.evaluate(text, vals)
            env[n] = forward[n]
    return env


@pytest.mark.parametrize("form", ROUNDTRIP, ids=ids(ROUNDTRIP))
def test_formulas_evaluate_to_the_gradient(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    # the independent gradient: autograd of the hand-written reference, numbers as 0-dim tensors
    theirs = {k: (torch.tensor(v, dtype=form.dtype) if not isinstance(v, torch.Tensor) else v) for k, v in vals.items()}
    theirs = leaves(theirs)
    ref = form.ref(**theirs)
    upstream = torch.randn_like(ref)
    wrt = list(fn.wrt)
    want = torch.autograd.grad(ref, [theirs[n] for n in wrt], upstream, allow_unused=True)
    for name, w in zip(wrt, want):
        formula = fn.formulas[name]
        assert isinstance(formula, str) and formula.startswith("Δ" + name), formula
        shape = tuple(theirs[name].shape)
        if formula.split(" = ", 1)[1].strip() == "0":
            close(torch.zeros(shape, dtype=form.dtype), torch.zeros_like(theirs[name]) if w is None else w)
            continue
        ones = {}
        formula = expand_phantom_sums(formula, ones, index_sizes(form.text, vals))
        env = {**_formula_inputs(formula, name, form.text, vals, upstream), **ones}
        got = evaluate_formula(formula, env, shape)
        close(got, torch.zeros_like(theirs[name]) if w is None else w)


def test_design_example_formulas_and_wrt_subset():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    assert fn.inputs == ("B", "C", "D")
    assert fn.wrt == ("B", "C")
    assert set(fn.formulas) == {"B", "C"}
    assert fn.formulas["B"] == "ΔB[i,j] = ΔA[i,k] * C[j,k] * D[l,l]"
    assert fn.formulas["C"] == "ΔC[j,k] = B[i,j] * ΔA[i,k] * D[l,l]"
    B, C, D = (make_tensor(s).requires_grad_() for s in [(3, 4), (4, 2), (3, 3)])
    fn(B, C, D).sum().backward()
    assert B.grad is not None and C.grad is not None and D.grad is None


def test_repeated_index_formula_uses_prime_and_delta():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]")
    f = fn.formulas["D"]
    assert f.startswith("ΔD[l,lʹ] = "), f
    assert "δ[l,lʹ]" in f, f


def test_wrt_as_sequence_and_default():
    text = "A[i,k] := B[i,j] * C[j,k] * D[l,l]"
    assert tm.tensorgrad(text, wrt=["C", "D"]).wrt == ("C", "D")
    assert tm.tensorgrad(text, wrt=("B",)).wrt == ("B",)
    assert tm.tensorgrad(text).wrt == ("B", "C", "D")


def test_name_option():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]", name="mm")
    assert fn.name == "mm"


# ----------------------------------------------------------------------------
# calling conventions and dtypes

MATMUL = FORMS[0]


def test_keyword_and_mixed_calls():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]")
    B, C, D = make_tensor((3, 4)), make_tensor((4, 2)), make_tensor((3, 3))
    want = (B @ C) * tr(D)
    close(fn(B=B, C=C, D=D), want)
    close(fn(D=D, C=C, B=B), want)
    close(fn(B, C, D=D), want)
    close(fn(B, D=D, C=C), want)


def test_evaluate_single_statement_returns_dict():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    B, C = make_tensor((3, 4)), make_tensor((4, 2))
    outs = fn.evaluate(B, C)
    assert set(outs) == {"A"}
    close(outs["A"], B @ C)


@pytest.mark.parametrize("form", [f for f in FORMS if f.dtype == F64 and "complex" not in f.id][:12] +
                         [f for f in FORMS if f.id.startswith("two-layer")], ids=str)
def test_numpy_inputs(form):
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    as_np = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in vals.items()}
    got = fn(**as_np)
    assert isinstance(got, torch.Tensor)
    close(got, form.ref(**vals))


@pytest.mark.parametrize("form", [f for f in FORMS if f.dtype == F64 and not f.tensor_scalars][:20], ids=str)
def test_float32_in_float32_out(form):
    vals32 = make_inputs(form, dtype=torch.float32)
    vals64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in vals32.items()}
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    got = fn(**vals32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), form.ref(**vals64), rtol=1e-4, atol=1e-5)
    mine = leaves(vals32)
    out = fn(**mine)
    out.backward(torch.ones_like(out))
    for n in fn.wrt:
        if isinstance(mine[n], torch.Tensor):
            assert mine[n].grad.dtype == torch.float32


def test_float32_numpy_stays_float32():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    B, C = np.random.rand(3, 4).astype(np.float32), np.random.rand(4, 2).astype(np.float32)
    got = fn(B, C)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), B @ C, rtol=1e-5)


def test_complex_output_dtype_and_values():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    B, C = make_tensor((3, 4), dtype=C128), make_tensor((4, 2), dtype=C128)
    got = fn(B, C)
    assert got.dtype == C128
    close(got, B @ C)


def test_hessian_vector_product():
    fn = tm.tensorgrad("s := exp(x[i]) * W[i,j] * x[j]")
    x, W = make_tensor((4,)).requires_grad_(), make_tensor((4, 4))
    (g,) = torch.autograd.grad(fn(x, W), x, create_graph=True)
    v = make_tensor((4,))
    (hv,) = torch.autograd.grad(g, x, v)

    def ref(x):
        return torch.exp(x) @ W @ x

    want = torch.autograd.functional.hvp(ref, x.detach(), v)[1]
    close(hv, want)


def test_repeated_calls_with_new_shapes():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    for n, m, p in [(2, 3, 4), (5, 1, 2), (1, 1, 1), (3, 3, 3)]:
        B, C = make_tensor((n, m)), make_tensor((m, p))
        close(fn(B, C), B @ C)


def test_scalar_output_is_zero_dim():
    fn = tm.tensorgrad("s := x[i] * y[i]")
    out = fn(make_tensor((3,)), make_tensor((3,)))
    assert out.dim() == 0


def test_overwrite_does_not_mutate_or_differentiate_old_value():
    fn = tm.tensorgrad("A[i,k] = B[i,j] * C[j,k]")
    A = make_tensor((3, 2)).requires_grad_()
    A0 = A.detach().clone()
    B, C = make_tensor((3, 4)).requires_grad_(), make_tensor((4, 2))
    out = fn(A, B, C)
    close(out, B.detach() @ C)
    out.sum().backward()
    assert A.grad is None and B.grad is not None
    close(A.detach(), A0)


def test_accumulate_gradient_to_old_value_is_upstream():
    fn = tm.tensorgrad("A[i,k] += B[i,j] * C[j,k]")
    A, B, C = (make_tensor(s).requires_grad_() for s in [(3, 2), (3, 4), (4, 2)])
    g = torch.randn(3, 2, dtype=F64)
    (gA,) = torch.autograd.grad(fn(A, B, C), A, g)
    close(gA, g)


def _subsets(names):
    """Every non-empty subset for up to 4 names; beyond that each single name, each
    leave-one-out set and the whole set (the count stays small, the coverage broad)."""
    if len(names) <= 4:
        return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]
    singles = [(n,) for n in names]
    leave_one_out = [tuple(m for m in names if m != n) for n in names]
    return singles + leave_one_out + [tuple(names)]


@pytest.mark.parametrize("memory", ["high", "low"])
@pytest.mark.parametrize("form", FORMS, ids=ids(FORMS))
def test_every_wrt_subset_and_memory_mode(form, memory):
    """The planned path (pairwise products, saved or recomputed intermediates, pruned
    branches) gives the reference's values and gradients for every choice of wrt."""
    vals = make_inputs(form)
    everything = grad_names(form, vals, tm.tensorgrad(form.text, wrt=form.wrt))
    for wrt in _subsets(everything):
        fn = tm.tensorgrad(form.text, wrt=list(wrt), memory=memory)
        mine, theirs = leaves(vals), leaves(vals)
        out = fn(**mine)
        ref = form.ref(**theirs)
        close(out.detach(), ref.detach())
        upstream = torch.randn_like(ref)
        got = torch.autograd.grad(out, [mine[n] for n in wrt], upstream)
        want = torch.autograd.grad(ref, [theirs[n] for n in wrt], upstream, allow_unused=True)
        for n, g, w in zip(wrt, got, want):
            close(g, torch.zeros_like(theirs[n]) if w is None else w)
        for n in set(mine) - set(wrt):  # never computed, never touched
            if isinstance(mine[n], torch.Tensor):
                assert mine[n].grad is None
