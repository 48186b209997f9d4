"""Second order (issue 20, item 1): fn.hessian and fn.hvp, derived symbolically, against torch.

Every row of the form tables (test_engine_forms.FORMS, test_engine_language.ROWS) becomes a
scalar loss (its output weighted by a fixed random tensor Ω, unless it is a scalar already);
in float64 its Hessian equals torch.func.hessian of the same loss written in plain torch, and
its Hessian-vector product torch.func.jvp of torch.func.grad. Complex rows take |Y|² as the
loss; torch has no complex Hessian, so the Hessian-vector product is compared with
jvp(grad) and the Hessian with that product along each real unit direction. The shown
formulas are statements: evaluated by the independent reference evaluator (δ is Kronecker's),
they give the same blocks and products.
"""
import re

import pytest
import torch

import reference
import test_engine_forms as forms
import test_engine_language as language
from conftest import expand_phantom_sums, index_sizes, make_tensor

import tensormagic as tm

F64, C128 = torch.float64, torch.complex128
LOSS, WEIGHT = "Λ", "Ω"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Case:
    """A row made a scalar loss: its text, inputs, wrt, and the loss in plain torch."""

    def __init__(self, id, text, vals, ref, wrt, sizes=None, complex=False):
        last = reference.statements(text)[-1]
        self.id, self.sizes, self.complex = id, sizes, complex
        self.vals = {k: (torch.tensor(v, dtype=C128 if complex else F64) if not isinstance(v, torch.Tensor) else v)
                     for k, v in vals.items()}
        if complex:
            self.text = text + f"\n{LOSS} := abs({last.name}{_sub(last)}) ** 2"
            self.loss = lambda **kw: (torch.abs(ref(**kw)) ** 2).sum()
        elif last.indices:
            out = ref(**self.vals)
            self.vals[WEIGHT] = make_tensor(tuple(out.shape))
            self.text = text + f"\n{LOSS} := {last.name}{_sub(last)} * {WEIGHT}{_sub(last)}"
            self.loss = lambda **kw: (ref(**{k: v for k, v in kw.items() if k != WEIGHT}) * kw[WEIGHT]).sum()
        else:
            self.text, self.loss = text, ref
        fn = tm.tensorgrad(text, wrt=wrt, sizes=sizes)
        self.wrt = [n for n in fn.wrt if self.vals[n].is_floating_point() or self.vals[n].is_complex()]

    def __str__(self):
        return self.id

    def fn(self):
        return tm.tensorgrad(self.text, wrt=self.wrt, sizes=self.sizes)

    def as_function(self):
        def f(*args):
            return self.loss(**{**self.vals, **dict(zip(self.wrt, args))})
        return f, tuple(self.vals[n] for n in self.wrt)


def _sub(st):
    return f"[{','.join(st.indices)}]" if st.indices else ""


def _form_cases():
    out = []
    for f in forms.FORMS:
        vals = forms.make_inputs(f)
        out.append(Case(f.id, f.text, vals, f.ref, f.wrt, complex=f.dtype.is_complex))
    return out


def _layer_norm(x, g, h):
    """F.layer_norm in plain ops: torch.func.hessian of F.layer_norm itself gets the mixed
    (weight, input) block wrong in torch 2.13 (forward mode through native_layer_norm's
    backward); of this, it agrees with jacrev of the weight's gradient and with tensormagic."""
    xc = x - x.mean(-1, keepdim=True)
    return xc / torch.sqrt((xc ** 2).mean(-1, keepdim=True) + 1e-5) * g + h


REFERENCES = {"layer-norm": _layer_norm}
# prod's second derivative is derived from its gradient P/x: at an entry equal to zero it is
# not defined (the first-order code is exact there; second order is not): README, Second order.
NOT_AT_ZEROS = {"prod-zeros"}


def _language_cases():
    out = []
    for r in language.ROWS:
        if r.id in NOT_AT_ZEROS:
            continue
        vals = language.make_inputs(r)
        out.append(Case("lang-" + r.id, r.text, vals, REFERENCES.get(r.id, r.ref), r.wrt, r.sizes))
    return out


REAL = [c for c in _form_cases() + _language_cases() if not c.complex]
COMPLEX = [c for c in _form_cases() if c.complex]
ids = str


def close(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------
# values


@pytest.mark.parametrize("case", REAL, ids=ids)
def test_hessian_matches_torch_func_hessian(case):
    f, args = case.as_function()
    want = torch.func.hessian(f, argnums=tuple(range(len(args))))(*args)
    got = case.fn().hessian(**case.vals)
    if len(case.wrt) == 1:
        close(got, want[0][0])
        return
    assert set(got) == {(a, b) for a in case.wrt for b in case.wrt}
    for i, a in enumerate(case.wrt):
        for j, b in enumerate(case.wrt):
            close(got[(a, b)], want[i][j])


@pytest.mark.parametrize("case", REAL, ids=ids)
def test_hvp_matches_jvp_of_grad(case):
    f, args = case.as_function()
    v = {n: torch.randn_like(a) for n, a in zip(case.wrt, args)}
    _, want = torch.func.jvp(torch.func.grad(f, argnums=tuple(range(len(args)))), args,
                             tuple(v[n] for n in case.wrt))
    fn = case.fn()
    got = fn.hvp(*[case.vals[n] for n in fn.inputs], v=v)  # (a cell may have an input named v)
    assert list(got) == case.wrt
    for n, w in zip(case.wrt, want):
        close(got[n], w)


@pytest.mark.parametrize("case", COMPLEX, ids=ids)
def test_complex_hvp_matches_jvp_of_grad(case):
    f, args = case.as_function()
    v = {n: torch.randn_like(a) for n, a in zip(case.wrt, args)}
    _, want = torch.func.jvp(torch.func.grad(f, argnums=tuple(range(len(args)))), args,
                             tuple(v[n] for n in case.wrt))
    fn = case.fn()
    got = fn.hvp(*[case.vals[n] for n in fn.inputs], v=v)
    for n, w in zip(case.wrt, want):
        close(got[n], w)


@pytest.mark.parametrize("case", COMPLEX, ids=ids)
def test_complex_hessian_is_the_product_along_real_directions(case):
    f, args = case.as_function()
    got = case.fn().hessian(**case.vals)
    grad = torch.func.grad(f, argnums=tuple(range(len(args))))
    for j, b in enumerate(case.wrt):
        x = args[j]
        basis = torch.eye(x.numel(), dtype=x.dtype).reshape(x.numel(), *x.shape)
        for k in (0, x.numel() - 1):
            tangents = tuple(basis[k] if m == j else torch.zeros_like(a) for m, a in enumerate(args))
            _, want = torch.func.jvp(grad, args, tangents)
            for i, a in enumerate(case.wrt):
                block = got if len(case.wrt) == 1 else got[(a, b)]
                column = block.reshape(args[i].numel(), x.numel())[:, k].reshape(args[i].shape)
                close(column, want[i])


# ----------------------------------------------------------------------------
# the shown formulas are statements


def _evaluable(text):
    return "|" not in text and "𝟙" not in text and not re.search(r"δ\[[^\]]*-\d+\]", text)


def _as_cell(text, lhs_name):
    """The shown lines as statements: each `X = rhs` as `X := rhs`, the Hessian's
    `∂²L/∂a[i]∂b[j] = rhs` as `lhs_name[i,j] := rhs`."""
    lines = []
    for line in text.splitlines():
        head, rhs = line.split(" = ", 1)
        m = re.match(r"∂²\w+/∂\w+(?:\[([^\]]*)\])?∂\w+(?:\[([^\]]*)\])?$", head)
        if m:
            indices = ",".join(i for i in f"{m.group(1) or ''},{m.group(2) or ''}".split(",") if i)
            head = f"{lhs_name}[{indices}]" if indices else lhs_name
        lines.append(f"{head} := {rhs}")
    return "\n".join(lines)


def _shapes(case, text, extra, final):
    """The shape of each left side in shown lines (ΔX like X, dX like X then the direction,
    `final` as given): a derived formula may be constant along a left index."""
    forward = reference.evaluate(case.text, case.vals, case.sizes)
    known = {**{k: tuple(torch.as_tensor(v).shape) for k, v in case.vals.items()},
             **{k: tuple(v.shape) for k, v in forward.items()}}
    shapes = dict(final)
    for st in reference.statements(text):
        tangent = st.name.startswith("d") and st.name[1:].lstrip("Δ") in known
        base = st.name[1:].lstrip("Δ") if tangent else st.name.lstrip("Δ")
        if st.name not in shapes and base in known:
            shapes[st.name] = known[base] + (tuple(extra) if tangent else ())
    return shapes, forward


def _evaluate_shown(case, text, env_extra, extra_shape, final):
    ones = {}
    text = expand_phantom_sums(text, ones, index_sizes(case.text, case.vals))
    shapes, forward = _shapes(case, text, extra_shape, final)
    env = {**case.vals, **forward, **ones, **env_extra}
    return reference.evaluate(text, env, case.sizes, shapes)


def _single_assignment(case):
    """No name assigned twice, no input updated: the shown formulas then read only the cell's
    own names (otherwise an earlier value is shown as Aʹ, which the cell does not name)."""
    sts = reference.statements(case.text)
    return all(st.op == ":=" for st in sts) and len({st.name for st in sts}) == len(sts)


SHOWN = [c for c in REAL if len(c.wrt) <= 3 and _single_assignment(c)]


@pytest.mark.parametrize("case", SHOWN, ids=ids)
def test_hessian_formulas_evaluate_to_the_hessian(case):
    fn = case.fn()
    f, args = case.as_function()
    want = torch.func.hessian(f, argnums=tuple(range(len(args))))(*args)
    checked = 0
    for (a, b), text in fn.hessian_formulas.items():
        if not _evaluable(text):
            continue
        shape = tuple(case.vals[a].shape) + tuple(case.vals[b].shape)
        outs = _evaluate_shown(case, _as_cell(text, "Hblock"), {}, tuple(case.vals[b].shape), {"Hblock": shape})
        got = outs["Hblock"]
        close(got, want[case.wrt.index(a)][case.wrt.index(b)])
        checked += 1
    if all(_evaluable(t) for t in fn.hessian_formulas.values()):
        assert checked == len(fn.hessian_formulas)


@pytest.mark.parametrize("case", SHOWN, ids=ids)
def test_hvp_formulas_evaluate_to_the_product(case):
    fn = case.fn()
    f, args = case.as_function()
    v = {n: torch.randn_like(a) for n, a in zip(case.wrt, args)}
    _, want = torch.func.jvp(torch.func.grad(f, argnums=tuple(range(len(args)))), args,
                             tuple(v[n] for n in case.wrt))
    for n, w in zip(case.wrt, want):
        text = fn.hvp_formulas[n]
        if not _evaluable(text):
            continue
        outs = _evaluate_shown(case, _as_cell(text, ""), {"v" + m: v[m] for m in case.wrt}, (),
                               {"Hv" + n: tuple(w.shape)})
        close(outs["Hv" + n], w)


# ----------------------------------------------------------------------------
# what the derivation shows


def test_quadratic_form_hessian_is_symmetrised_matrix():
    fn = tm.tensorgrad("L := x[i]*A[i,j]*x[j]", wrt="x")
    assert fn.hessian_formulas[("x", "x")] == "∂²L/∂x[i]∂x[k] = A[i,k] + A[k,i]"
    assert fn.hvp_formulas["x"] == "Hvx[i] = A[i,j] * vx[j] + vx[iʹ] * A[iʹ,i]"
    x, A = make_tensor((6,)), make_tensor((6, 6))
    close(fn.hessian(x, A), A + A.T)


def test_hessian_blocks_for_several_inputs_and_zero_blocks():
    fn = tm.tensorgrad("L := x[i]*A[i,j]*x[j]")
    shown = fn.hessian_formulas
    assert shown[("A", "A")].endswith(" = 0")
    assert shown[("A", "x")] == "∂²L/∂A[i,j]∂x[k] = δ[k,i] * x[j] + x[i] * δ[k,j]"
    x, A = make_tensor((3,)), make_tensor((3, 3))
    H = fn.hessian(x, A)
    assert H[("A", "A")].shape == (3, 3, 3, 3) and not H[("A", "A")].any()
    assert H[("x", "A")].shape == (3, 3, 3)


def test_multi_statement_formulas_list_what_they_read():
    fn = tm.tensorgrad("H[b,h] := tanh(X[b,i]*W[i,h])\nL := H[b,h]*H[b,h]", wrt="W")
    text = fn.hessian_formulas[("W", "W")]
    lines = text.splitlines()
    assert lines[0].startswith("ΔH[b,h] = ") and lines[-1].startswith("∂²L/∂W[i,h]∂W[")
    assert any(line.startswith("dH[b,h,") for line in lines)
    hv = fn.hvp_formulas["W"].splitlines()
    assert hv[-1].startswith("HvW[i,h] = ") and any(line.startswith("dH[b,h] = ") for line in hv)


def test_hessian_is_not_autograd_twice():
    """The Hessian of xᵀAx is one add of A and its transpose: no matrix product, no eye."""
    fn = tm.tensorgrad("L := x[i]*A[i,j]*x[j]", wrt="x")
    x, A = make_tensor((5,)), make_tensor((5, 5)).requires_grad_()
    H = fn.hessian(x, A)
    (source,) = [v for k, v in fn._second.items() if k[0] == "hessian"]
    code = source[1].__code__
    names = set(code.co_names)
    assert "einsum" not in names and "eye" not in names and "matmul" not in names
    assert H.requires_grad  # plain torch ops: differentiable further if asked


def test_hvp_of_several_inputs_uses_only_the_named_directions():
    fn = tm.tensorgrad("L := x[i]*A[i,j]*y[j]")
    x, A, y = make_tensor((3,)), make_tensor((3, 3)), make_tensor((3,))
    vx = make_tensor((3,))
    got = fn.hvp(x, A, y, v={"x": vx})
    assert list(got) == ["x"]
    close(got["x"], torch.zeros(3, dtype=F64))  # ∂²L/∂x² = 0
    got = fn.hvp(x, A, y, v={"x": vx, "y": vx})
    close(got["x"], A @ vx)
    close(got["y"], A.T @ vx)


# ----------------------------------------------------------------------------
# misuse: one clear line


@pytest.mark.parametrize("call, error, words", [
    (lambda fn, x, A: tm.tensorgrad("y[i] := A[i,j]*x[j]").hessian(x, A), tm.NotationValueError,
     ("last output is a scalar", "'y' has 1 index")),
    (lambda fn, x, A: tm.tensorgrad("y[i] := A[i,j]*x[j]").hvp(x, A, v={"x": x}), tm.NotationValueError,
     ("scalar",)),
    (lambda fn, x, A: fn.hvp(x, A, v={"A": A}), tm.NotationValueError, ("'A'", "not in wrt")),
    (lambda fn, x, A: fn.hvp(x, A, v={"x": A}), tm.NotationValueError, ("shape (4, 4)", "(4,)")),
    (lambda fn, x, A: fn.hvp(x, A, v=x), TypeError, ("v={",)),
    (lambda fn, x, A: tm.tensorgrad("L := x[i]*A[i,j]*x[j]", wrt=[]).hessian(x, A), tm.NotationValueError,
     ("wrt is empty",)),
], ids=["hessian-not-scalar", "hvp-not-scalar", "direction-not-in-wrt", "direction-shape", "v-not-dict",
        "nothing-to-differentiate"])
def test_errors(call, error, words):
    fn = tm.tensorgrad("L := x[i]*A[i,j]*x[j]", wrt="x")
    x, A = make_tensor((4,)), make_tensor((4, 4))
    with pytest.raises(error) as info:
        call(fn, x, A)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for w in words:
        assert w in message, message
