"""Declared structure (issue 20, item 4): symmetric="W" says W[i,j] = W[j,i] (Hermitian,
W[i,j] = conj(W[j,i]), when complex). Its gradient is the symmetric part of the one it would
have, ½(G + Gᵀ) (½(G + Gᴴ)): the projection of torch's gradient onto symmetric (Hermitian)
matrices, as a physicist expects for a Hamiltonian; the shown formula is that projection and
says so. Checked in float64 and complex128 against the projected autograd gradient, by
gradcheck and gradgradcheck through S ↦ (S + Sᵀ)/2, fn.check (which moves along symmetric
directions), the formulas evaluated as statements, and the Hessian on symmetric matrices.
"""
from dataclasses import dataclass

import pytest
import torch

import reference
from conftest import make_tensor

import tensormagic as tm

F64, C128 = torch.float64, torch.complex128


@dataclass
class Row:
    id: str
    text: str
    shapes: dict
    ref: object
    dtype: torch.dtype = F64

    def __str__(self):
        return self.id


ROWS = [
    Row("quadratic-form", "E := x[i] * H[i,j] * x[j]", {"x": (4,), "H": (4, 4)}, lambda x, H: x @ H @ x),
    Row("not-symmetric-in-itself", "E := a[i] * H[i,j] * b[j]", {"a": (3,), "H": (3, 3), "b": (3,)},
        lambda a, H, b: a @ H @ b),
    Row("expectation", "E := H[i,j] * rho[j,i]", {"H": (3, 3), "rho": (3, 3)}, lambda H, rho: torch.trace(H @ rho)),
    Row("squared-and-transposed-reads", "E := H[i,j] * H[j,k] * x[k] + H[j,i] * y[i] * y[j]",
        {"H": (3, 3), "x": (3,), "y": (3,)}, lambda H, x, y: (H @ H @ x).sum() + y @ H.T @ y),
    Row("layer", "Y[b,o] := tanh(X[b,i] * W[i,o])\nE := Y[b,o] * Y[b,o]", {"X": (5, 3), "W": (3, 3)},
        lambda X, W: (torch.tanh(X @ W) ** 2).sum()),
    Row("hermitian-energy", "E := abs(conj(z[i]) * A[i,j] * z[j] + A[k,l] * A[l,k])", {"z": (3,), "A": (3, 3)},
        lambda z, A: torch.abs(z.conj() @ A @ z + torch.trace(A @ A)), C128),
]
ids = str
NAME = {"quadratic-form": "H", "not-symmetric-in-itself": "H", "expectation": "H",
        "squared-and-transposed-reads": "H", "layer": "W", "hermitian-energy": "A"}


def inputs(row, symmetric=True):
    vals = {n: make_tensor(s, dtype=row.dtype) for n, s in row.shapes.items()}
    if symmetric:
        w = vals[NAME[row.id]]
        vals[NAME[row.id]] = 0.5 * (w + (w.mH if w.is_complex() else w.T))
    return vals


def project(g):
    return 0.5 * (g + (g.mH if g.is_complex() else g.T))


def close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("at_symmetric", [True, False], ids=["symmetric-point", "any-point"])
@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradient_is_the_projection_of_autograds(row, at_symmetric):
    vals = inputs(row, at_symmetric)
    name = NAME[row.id]
    fn = tm.tensorgrad(row.text, symmetric=name)
    close(fn(**vals), row.ref(**vals))
    mine = {n: v.clone().requires_grad_() for n, v in vals.items()}
    theirs = {n: v.clone().requires_grad_() for n, v in vals.items()}
    got = dict(zip(mine, torch.autograd.grad(fn(**mine), list(mine.values()))))
    want = dict(zip(theirs, torch.autograd.grad(row.ref(**theirs), list(theirs.values()))))
    for n in vals:
        close(got[n], project(want[n]) if n == name else want[n])


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradcheck_through_the_symmetric_part_and_fn_check(row):
    vals = inputs(row)
    name = NAME[row.id]
    fn = tm.tensorgrad(row.text, symmetric=name)
    names = list(vals)

    def f(*args):
        kw = dict(zip(names, args))
        kw[name] = project(kw[name])
        return fn(**kw)

    args = tuple(v.clone().requires_grad_() for v in vals.values())
    assert torch.autograd.gradcheck(f, args) and torch.autograd.gradgradcheck(f, args)
    assert fn.check().ok and fn.check(**vals).ok


@pytest.mark.parametrize("row", [r for r in ROWS if r.dtype == F64 and "\n" not in r.text], ids=ids)
def test_formula_is_the_projection_and_says_so(row):
    vals = inputs(row, symmetric=False)
    name = NAME[row.id]
    fn = tm.tensorgrad(row.text, symmetric=name)
    formula = fn.formulas[name]
    i, j = reference.statements(formula)[0].indices
    assert formula.count("0.5 *") >= 2 and "symmetric part ½(G + Gᵀ)" in str(fn)
    theirs = {n: v.clone().requires_grad_() for n, v in vals.items()}
    (want,) = torch.autograd.grad(row.ref(**theirs), [theirs[name]])
    env = {**vals, "ΔE": torch.tensor(1.0, dtype=F64)}
    got = reference.evaluate(formula.replace(" = ", " := ", 1), env)["Δ" + name]
    close(got, project(want))


def test_hessian_and_hvp_on_symmetric_matrices():
    """The Hessian of S ↦ L((S + Sᵀ)/2): P H P, as fn.hessian gives for a symmetric W."""
    row = next(r for r in ROWS if r.id == "layer")
    vals = inputs(row)
    fn = tm.tensorgrad(row.text, symmetric="W", wrt="W")
    want = torch.func.hessian(lambda S: row.ref(vals["X"], project(S)))(vals["W"])
    close(fn.hessian(**vals), want)
    v = make_tensor((3, 3))
    _, hv = torch.func.jvp(torch.func.grad(lambda S: row.ref(vals["X"], project(S))), (vals["W"],), (v,))
    close(fn.hvp(vals["X"], vals["W"], v={"W": v})["W"], hv)


@pytest.mark.parametrize("make, error, words", [
    (lambda: tm.tensorgrad("E := x[i] * H[i,j,k] * x[j] * x[k]", symmetric="H"), tm.NotationValueError,
     ("'H'", "3 indices", "square matrix")),
    (lambda: tm.tensorgrad("Y[i,j] := x[i] * x[j]\nE := Y[i,j] * Y[i,j]", symmetric="Y"), tm.NotationValueError,
     ("'Y'", "not an input")),
    (lambda: tm.tensorgrad("E := H[i,j] * x[i] * y[j]", symmetric="H")(make_tensor((3, 4)), make_tensor((3,)),
                                                                      make_tensor((4,))),
     tm.NotationValueError, ("'H'", "(3, 4)", "square")),
    (lambda: tm.tensorgrad("E := W[tok[b], d] * v[d]", symmetric="tok"), tm.NotationValueError, ("index tensor",)),
    (lambda: tm.tensorgrad("E := H[i,j] * x[i] * x[j]", symmetric=3), TypeError, ("symmetric",)),
], ids=["not-a-matrix", "not-an-input", "not-square-at-call", "an-index-tensor", "wrong-type"])
def test_errors(make, error, words):
    with pytest.raises(error) as info:
        make()
    message = info.value.message if hasattr(info.value, "message") else str(info.value)
    assert "\n" not in message
    for w in words:
        assert w in message, message


def test_pickle_and_names():
    import pickle
    fn = tm.tensorgrad("E := x[i] * H[i,j] * x[j] + x[i] * V[i,j] * x[j]", symmetric="H, V")
    assert fn.symmetric == ("H", "V") == fn.cell.symmetric
    again = pickle.loads(pickle.dumps(fn))
    assert again.symmetric == ("H", "V")
