"""Memory: generated code releases what it no longer reads, the backward frees saved
intermediates (and recomputes them when it runs again), peak memory at most autograd's."""
import os
import re
import sys

import pytest
import torch

import tensormagic as tm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import timer  # noqa: E402

RING = "s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]"


def _ring_inputs(n=6, m=4, dtype=torch.float64):
    torch.manual_seed(0)
    return [torch.randn(s, dtype=dtype, requires_grad=True) for s in [(n, n, m)] * 3 + [(m, m, m)]]


def test_backward_twice_recomputes_what_the_first_released():
    fn = tm.tensorgrad(RING)
    xs = _ring_inputs()
    out = fn(*xs)
    out.backward(retain_graph=True)
    first = [x.grad.clone() for x in xs]
    out.backward()
    ref = [x.detach().requires_grad_() for x in xs]
    torch.einsum("abi,bcj,cak,ijk->", *ref).backward()
    for x, f, r in zip(xs, first, ref):
        torch.testing.assert_close(f, r.grad)
        torch.testing.assert_close(x.grad, 2 * r.grad)


def test_generated_code_deletes_each_local_after_its_last_reader():
    fn = tm.tensorgrad(RING)
    fn(*_ring_inputs())
    source = fn.code
    backward = source[source.index("def backward"):]
    assert "_saved.clear()" in backward
    lines = [ln.strip() for ln in backward.splitlines()]
    deleted = {n for ln in lines if ln.startswith("del ") for n in ln[4:].split(", ")}
    assigned = {ln.split(" = ")[0] for ln in lines if re.match(r"_\w+ = ", ln)}
    returned = set(re.findall(r"_g\d+", lines[-1]))
    assert assigned - returned <= deleted
    for name in deleted:  # nothing reads a name after its del
        k = next(i for i, ln in enumerate(lines) if ln.startswith("del ") and name in ln[4:].split(", "))
        assert not any(re.search(rf"\b{name}\b", ln) for ln in lines[k + 1:])


def test_trace_gradient_without_an_identity_matrix():
    fn = tm.tensorgrad("A[i,k] := B[i,j]*C[j,k]*D[l,l]")
    xs = [torch.randn(3, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    fn(*xs).sum().backward()
    assert "torch.eye" not in fn.code and "diag_embed" in fn.code
    torch.testing.assert_close(xs[2].grad, torch.eye(3, dtype=torch.float64) * (xs[0] @ xs[1]).sum())


def _peak(f):
    """Peak bytes allocated during f, from the profiler's memory events (the benchmark's meter)."""
    return timer.peak_bytes(f, "cpu")


@pytest.mark.parametrize("statement,eq,shapes", [
    (RING, "abi,bcj,cak,ijk->", [(24, 24, 16)] * 3 + [(16, 16, 16)]),
    ("A[i,k] := B[i,j]*C[j,k]*D[l,l]", "ij,jk,ll->ik", [(64, 64)] * 3),
    ("Y[i,j] := F[a,b,j,k]*G[b,c,k,i]*H[a,c]", "abjk,bcki,ac->ij", [(16, 16, 8, 8), (16, 16, 8, 8), (16, 16)]),
])
def test_peak_memory_at_most_autograds(statement, eq, shapes):
    torch.manual_seed(0)
    xs = [torch.randn(s, requires_grad=True) for s in shapes]
    fn = tm.tensorgrad(statement)
    g = torch.randn(torch.einsum(eq, *xs).shape)

    def ours():
        fn(*xs).backward(g)

    def theirs():
        torch.einsum(eq, *xs).backward(g)
    for f in (ours, theirs):
        f()
    peaks = []
    for f in (ours, theirs):
        for x in xs:
            x.grad = None
        peaks.append(_peak(f))
    assert peaks[0] <= peaks[1], peaks
