"""torch.func transforms and forward-mode AD on our callables, against the same transforms of
a plain-torch reference: grad, vmap (inputs requiring grad or not), jacrev, jacfwd, jvp,
hessian, vmap(grad) per-sample gradients and dual numbers (torch.autograd.forward_ad)."""
from dataclasses import dataclass

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import tensormagic as tm

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


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jacrev(case):
    def transform(f, a):
        g, x = _real(case, f, a)
        return jacrev(g)(x)
    both(case, transform)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jacfwd(case):
    def transform(f, a):
        g, x = _real(case, f, a)
        return jacfwd(g)(x)
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
