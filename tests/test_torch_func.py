"""torch.func transforms and forward-mode AD on our callables, against the same transforms of
a plain-torch reference: grad, vmap (inputs requiring grad or not), jacrev, jacfwd, jvp,
hessian, vmap(grad) per-sample gradients and dual numbers (torch.autograd.forward_ad)."""
from dataclasses import dataclass

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import reference
import tensormagic as tm
from conftest import evaluate_formula
from tensormagic.language.ir import leaves

D, Z = torch.float64, torch.complex128


@dataclass
class Case:
    name: str
    text: str
    ref: object        # plain torch, same inputs in the same order
    shapes: tuple
    diff: int          # the input the transforms differentiate with respect to
    dtype: object = D

    def fn(self):
        return tm.tensorgrad(self.text)

    def inputs(self):
        return tuple(torch.randn(s, dtype=self.dtype) * 0.7 for s in self.shapes)

    def loss(self, out):
        """A real scalar of the output, in plain torch."""
        return (out.abs() ** 2).sum() if self.dtype.is_complex else (out * out.detach().sign()).sum()


def _mlp(X, W1, b1, W2, T):
    return ((torch.tanh(X @ W1 + b1) @ W2 - T) ** 2).sum()


CASES = [
    Case("dense", "Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])",
         lambda X, W, c: torch.tanh(X @ W + c), ((3, 4), (4, 5), (5,)), 1),
    Case("quadratic", "q := x[i]*A[i,j]*x[j]",
         lambda x, A: x @ A @ x, ((4,), (4, 4)), 0),
    Case("cell", "H[n,h] := tanh(X[n,i]*W1[i,h] + b1[h])\nP[n,o] := H[n,h]*W2[h,o]\n"
                 "L := (P[n,o] - T[n,o])**2",
         _mlp, ((3, 2), (2, 4), (4,), (4, 2), (3, 2)), 1),
    Case("complex", "y[i] := exp(A[i,j]*z[j]) * conj(z[i])",
         lambda A, z: torch.exp(A @ z) * z.conj(), ((3, 3), (3,)), 1, Z),
]


def close(a, b):
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


def both(case, transform):
    """The transform applied to our callable and to the reference, compared."""
    args = case.inputs()
    ours, ref = case.fn(), case.ref
    close(transform(ours, args), transform(ref, args))


def _at(f, args, k):
    """f as a function of its k-th input only."""
    return lambda x: f(*args[:k], x, *args[k + 1:])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_grad(case):
    both(case, lambda f, a: grad(lambda x: case.loss(_at(f, a, case.diff)(x)))(a[case.diff]))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_grad_of_several_inputs(case):
    argnums = tuple(range(len(case.shapes)))
    both(case, lambda f, a: grad(lambda *x: case.loss(f(*x)), argnums=argnums)(*a))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_vmap(case, requires_grad):
    """Batched over the first input; the differentiated one may be a Parameter (it requires grad)."""
    def transform(f, a):
        batched = torch.stack([a[0], a[0] * 0.5 + 0.1])
        params = [torch.nn.Parameter(x.clone()) if requires_grad else x for x in a[1:]]
        out = vmap(f, in_dims=(0,) + (None,) * len(params))(batched, *params)
        if not requires_grad:
            return out
        return (out, *torch.autograd.grad(case.loss(out), params))
    both(case, transform)


def _real(case, f, a):
    """f of the differentiated input, as a map between real tensors (torch.func's jacobians
    take real inputs): a complex input varies by its real part, a complex output is viewed
    as (real, imaginary) pairs."""
    k = case.diff
    if not case.dtype.is_complex:
        return _at(f, a, k), a[k]
    return (lambda r: torch.view_as_real(_at(f, a, k)(torch.complex(r, a[k].imag)))), a[k].real


@pytest.mark.parametrize("jacobian", [jacrev, jacfwd], ids=["jacrev", "jacfwd"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jacobians(case, jacobian):
    def transform(f, a):
        g, x = _real(case, f, a)
        return jacobian(g)(x)
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jvp(case):
    def transform(f, a):
        tangents = tuple(torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(k))
                         for k, x in enumerate(a))
        return jvp(f, a, tangents)
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jvp_with_a_parameter_input(case):
    def transform(f, a):
        params = [torch.nn.Parameter(x.clone()) for x in a]
        k = case.diff
        return jvp(lambda x: f(*params[:k], x, *params[k + 1:]), (a[k],), (torch.ones_like(a[k]),))
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hessian(case):
    if case.dtype.is_complex:  # torch.func.hessian takes real inputs: go through real parts
        def transform(f, a):
            k = case.diff
            real = lambda r: case.loss(_at(f, a, k)(torch.complex(r, a[k].imag)))
            return hessian(real)(a[k].real)
    else:
        def transform(f, a):
            return hessian(lambda x: case.loss(_at(f, a, case.diff)(x)))(a[case.diff])
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_per_sample_gradients(case):
    """vmap(grad): a gradient per sample of the first input."""
    def transform(f, a):
        batched = torch.stack([a[0], a[0] * 0.5 + 0.1, -a[0]])
        k = case.diff

        def loss(first, x):
            rest = list(a[1:])
            rest[k - 1] = x
            return case.loss(f(first, *rest))
        if k == 0:
            return vmap(grad(lambda x: case.loss(f(x, *a[1:]))))(batched)
        return vmap(grad(loss, argnums=1), in_dims=(0, None))(batched, a[k])
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_dual_numbers(case):
    def transform(f, a):
        k = case.diff
        with fwAD.dual_level():
            tangent = torch.ones_like(a[k]) * 0.3
            dual = fwAD.make_dual(a[k], tangent)
            out = fwAD.unpack_dual(f(*a[:k], dual, *a[k + 1:]))
            return out.primal.clone(), out.tangent.clone()
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_dual_numbers_then_backward(case):
    """Forward over reverse: a dual input that also requires grad."""
    def transform(f, a):
        k = case.diff
        x = a[k].clone().requires_grad_()
        with fwAD.dual_level():
            out = fwAD.unpack_dual(f(*a[:k], fwAD.make_dual(x, torch.ones_like(x)), *a[k + 1:]))
            g = torch.autograd.grad(case.loss(out.primal), x)[0]
            return out.tangent.detach().clone(), g
    both(case, transform)


# -- every form of the engine suite: derived tangents against torch's jvp of the reference ---
from test_engine_forms import FORMS, expected_wrt, make_inputs  # noqa: E402


def _tangent_inputs(form, vals):
    """The wrt inputs that are tensors (a Python-number scalar carries no tangent)."""
    return [n for n in expected_wrt(form) if isinstance(vals[n], torch.Tensor)]


@pytest.mark.parametrize("form", FORMS, ids=str)
def test_tangents_of_every_form(form):
    vals = make_inputs(form)
    names = _tangent_inputs(form, vals)
    assert names
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    got, want = _dual_and_jvp(fn, form.ref, vals, names, seed=1)
    assert got is not None
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def _dual_and_jvp(fn, reference, vals, names, seed):
    """The tangent of fn's output with random tangents on `names` (forward-mode dual numbers),
    and torch.func.jvp's of the reference at the same point."""
    gen = torch.Generator().manual_seed(seed)
    tangents = {n: torch.randn(vals[n].shape, dtype=vals[n].dtype, generator=gen) for n in names}

    def ref(*xs):
        return reference(**{**vals, **dict(zip(names, xs))})
    want = jvp(ref, tuple(vals[n] for n in names), tuple(tangents[n] for n in names))[1]
    with fwAD.dual_level():
        duals = {n: fwAD.make_dual(vals[n], tangents[n]) for n in names}
        got = fwAD.unpack_dual(fn(**{**vals, **duals})).tangent
    return got, want


from test_engine_language import ROWS, make_inputs as make_row_inputs  # noqa: E402


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_tangents_of_every_language_row(row):
    """Reductions, max/min, shifted, fixed and gathered subscripts: the generated jvp against
    torch's jvp of the torch.nn.functional reference (at ties, both take the same one-sided
    choice only where the row is smooth, so those rows are compared where smooth)."""
    vals = make_row_inputs(row)
    fn = tm.tensorgrad(row.text, wrt=row.wrt, sizes=row.sizes)
    names = [n for n in fn.wrt if vals[n].is_floating_point()]
    assert names and set(fn.tangents) <= set(fn.outputs)
    got, want = _dual_and_jvp(fn, row.ref, vals, names, seed=3)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


# -- the symbolic tangents (fn.tangents), evaluated as written ---------------------------------
_FUNCS = {**reference.FUNCTIONS, "recip": torch.reciprocal, "step": lambda t: (t > 0).to(t.dtype)}


def _evaluate_ir(e, env, order, sizes):
    """A formula's right side by brute force: every node laid out over all of the formula's
    indices (size 1 where it does not depend on one), each Σ summed where it sits."""
    from tensormagic.language.ir import Add, Const, Mul, Pow, Scalar, Sigma, Tensor
    if isinstance(e, Tensor):
        value, labels = env[e.name], list(e.indices)
        while len(set(labels)) < len(labels):  # a repeated index: the diagonal
            first = next(i for i in labels if labels.count(i) > 1)
            p, q = labels.index(first), labels.index(first, labels.index(first) + 1)
            value = torch.diagonal(value, 0, p, q)
            labels = [i for k, i in enumerate(labels) if k not in (p, q)] + [first]
        value = value.permute([labels.index(i) for i in order if i in labels])
        return value.reshape([sizes[i] if i in labels else 1 for i in order])
    if isinstance(e, (Scalar, Const)):
        value = env[e.name] if isinstance(e, Scalar) else e.value
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(value, dtype=Z if isinstance(value, complex) else D)
        return value.reshape([1] * len(order))
    if isinstance(e, Sigma):
        body = _evaluate_ir(e.body, env, order, sizes)
        body = body.expand([sizes[i] if i in e.indices else n for i, n in zip(order, body.shape)])
        return body.sum([order.index(i) for i in e.indices], keepdim=True)
    parts = [_evaluate_ir(c, env, order, sizes) for c in
             (e.terms if isinstance(e, Add) else e.factors if isinstance(e, Mul) else
              (e.base, e.exponent) if isinstance(e, Pow) else (e.arg,))]
    if isinstance(e, Add):
        return sum(p * s for p, s in zip(parts, e.signs))
    if isinstance(e, Mul):
        out = parts[0]
        for p in parts[1:]:
            out = out * p
        return out
    if isinstance(e, Pow):
        return parts[0] ** parts[1]
    return _FUNCS[e.func](parts[0])


def _all_indices(e):
    from tensormagic.language.ir import Sigma, Tensor, children
    own = list(e.indices) if isinstance(e, (Tensor, Sigma)) else []
    return own + [i for c in children(e) for i in _all_indices(c)]


def _leaf_sizes(e, env, sizes):
    from tensormagic.language.ir import Tensor, children
    if isinstance(e, Tensor):
        sizes.update(zip(e.indices, torch.as_tensor(env[e.name]).shape))
    for c in children(e):
        _leaf_sizes(c, env, sizes)
    return sizes


def _once(form):
    """Every statement creates a new name (no `=`, `+=` or reassignment: one version each)."""
    cell = tm.tensorgrad(form.text).cell
    return all(st.op == ":=" for st in cell.statements) and len(cell.outputs) == len(cell.statements)


def test_tangents_of_the_design_example():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    assert fn.tangents == {"A": "dA[i,k] = dB[i,j] * C[j,k] * D[l,l] + B[i,j] * dC[j,k] * D[l,l]"}
    layer = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])", wrt="W c")
    assert layer.tangents["Y"] == "dY[b,o] = (1 - Y[b,o]**2) * (Σ_i X[b,i] * dW[i,o] + dc[o])"


@pytest.mark.parametrize("form", [f for f in FORMS if _once(f)], ids=str)
def test_tangent_formulas_evaluate_to_the_jvp(form):
    """Each formula of fn.tangents, evaluated as written with the values, the outputs and the
    earlier tangents, gives what torch's jvp of the reference gives."""
    vals = make_inputs(form)
    fn = tm.tensorgrad(form.text, wrt=form.wrt)
    names = _tangent_inputs(form, vals)
    assert names and set(fn.tangents) == {f.name for f in fn.tangent_derivation}
    gen = torch.Generator().manual_seed(2)
    outputs = fn.evaluate(**vals)
    env = {**vals, **outputs}
    for n in fn.wrt:  # a Python-number scalar carries no tangent
        env["d" + n] = torch.randn(vals[n].shape, dtype=vals[n].dtype, generator=gen) \
            if n in names else 0.0
    for f in fn.tangent_derivation:
        order = list(dict.fromkeys(_all_indices(f.rhs) + list(f.target.indices)))
        sizes = _leaf_sizes(f.rhs, env, dict(zip(f.target.indices, outputs[f.name].shape)))
        value = _evaluate_ir(f.rhs, env, order, sizes)
        value = value.expand([sizes[i] if i in f.target.indices else n for i, n in zip(order, value.shape)])
        assert all(n == 1 for i, n in zip(order, value.shape) if i not in f.target.indices)
        kept = [i for i in order if i in f.target.indices]
        value = value.reshape([sizes[i] for i in kept]).permute([kept.index(i) for i in f.target.indices])
        text = fn.tangents[f.name]
        if "Σ" not in text:  # Einstein style: it reads back as a statement with the same value
            read = {leaf.name: env[leaf.name] for leaf in leaves(f.rhs)}
            read[f.target.name] = torch.zeros_like(value)  # `=` reads its target's shape
            torch.testing.assert_close(evaluate_formula(text, read, value.shape).to(value.dtype), value)
        env[f.target.name] = value
    want = jvp(lambda *xs: form.ref(**{**vals, **dict(zip(names, xs))}),
               tuple(vals[n] for n in names), tuple(env["d" + n] for n in names))[1]
    last = fn.tangent_derivation[-1]
    assert last.name == fn.outputs[-1]
    torch.testing.assert_close(env[last.target.name].to(want.dtype), want, rtol=1e-8, atol=1e-10)


def _readable(fn):
    return all(not any(c in t for c in "Σ𝟙|") for t in fn.tangents.values())


# Formulas hold almost everywhere: rows at ties or zeros (roundtrip=False) are left out, as
# for the gradient formulas.
READABLE_ROWS = [r for r in ROWS if r.roundtrip and _readable(tm.tensorgrad(r.text, wrt=r.wrt, sizes=r.sizes))]


@pytest.mark.parametrize("row", READABLE_ROWS, ids=str)
def test_language_tangent_formulas_read_back_as_statements(row):
    """Where fn.tangents are statements of the language (explicit reductions, shifted and
    gathered subscripts), the engine evaluates each in turn to the jvp's tangents."""
    vals = make_row_inputs(row)
    fn = tm.tensorgrad(row.text, wrt=row.wrt, sizes=row.sizes)
    names = [n for n in fn.wrt if vals[n].is_floating_point()]
    gen = torch.Generator().manual_seed(4)
    env = {**vals, **fn.evaluate(**vals)}
    env.update({"d" + n: torch.randn(vals[n].shape, dtype=vals[n].dtype, generator=gen) for n in names})
    for f in fn.tangent_derivation:
        read = {leaf.name: env[leaf.name] for leaf in leaves(f.rhs)}
        read[f.target.name] = torch.zeros_like(env[f.name])
        env[f.target.name] = evaluate_formula(fn.tangents[f.name], read, env[f.name].shape)
    with fwAD.dual_level():
        duals = {n: fwAD.make_dual(vals[n], env["d" + n]) for n in names}
        want = fwAD.unpack_dual(fn(**{**vals, **duals})).tangent
    torch.testing.assert_close(env["d" + fn.outputs[-1]], want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("text, ref", [
    ("y[i] := abs(z[i])", lambda z, x: z.abs()),
    ("y[i] := sgn(z[i])", lambda z, x: z.sgn()),
    ("y[i] := abs(z[i]) * x[i] + conj(z[i]) * z[i]", lambda z, x: z.abs() * x + z.conj() * z),
    ("y[i] := exp(z[i] * x[i]) / z[i]", lambda z, x: torch.exp(z * x) / z),
])
def test_tangents_of_complex_functions(text, ref):
    """Non-holomorphic |z| and sgn(z), a real input beside a complex one: torch's tangents."""
    z = torch.randn(4, dtype=Z)
    x = torch.randn(4, dtype=D)
    fn = tm.tensorgrad(text)
    tz, tx = torch.randn(4, dtype=Z), torch.randn(4, dtype=D)
    args = (z, x) if "x" in fn.inputs else (z,)
    tangents = (tz, tx)[:len(args)]
    want = jvp(lambda *a: ref(*a, *([None] * (2 - len(a)))), args, tangents)[1]
    with fwAD.dual_level():
        got = fwAD.unpack_dual(fn(*(fwAD.make_dual(a, t) for a, t in zip(args, tangents)))).tangent
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_every_kind_has_its_tangent():
    """Forward mode lives beside each kind's backward: a new kind must say its tangent."""
    from tensormagic.compiler.kinds import KINDS
    from tensormagic.compiler.kinds.base import Kind
    missing = [name for name, kind in KINDS.items()
               if not kind.leaf and type(kind).tangent is Kind.tangent]
    assert not missing
