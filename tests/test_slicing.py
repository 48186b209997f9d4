"""memory_limit: sliced products against plain torch and its autograd (float64), gradcheck and
gradgradcheck through the slices, blocks of the result, torch.func and torch.compile, the plan,
the budget met in measured memory, and the errors for budgets and options."""
import os
import pickle
import sys

import pytest
import torch

import tensormagic as tm
from conftest import make_tensor, run_magic
from tensormagic.compiler import slicing
from tensormagic.runtime import scale

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import timer  # noqa: E402

RING = "s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]"
RING_SHAPES = [(6, 6, 4)] * 3 + [(4, 4, 4)]


def _ring(*xs):
    return torch.einsum("abi,bcj,cak,ijk->", *xs)


# (statement, shapes, memory_limit in bytes of float64, plain-torch reference)
CASES = {
    "ring": (RING, RING_SHAPES, 2048, _ring),
    # the result's indices sliced too: the slices fill blocks of it
    "chain": ("A[i,m] := B[i,j]*C[j,k]*D[k,l]*E[l,m]", [(8, 6), (6, 4), (4, 6), (6, 8)], 512,
              lambda B, C, D, E: B @ C @ D @ E),
    "batch": ("z[b,i,k] := x[b,i,j]*y[b,j,k]", [(4, 6, 5), (4, 5, 6)], 1024, torch.bmm),
    # a diagonal, one tensor twice, a scalar factor
    "diagonal": ("y[i] := alpha * A[i,j]*A[j,k]*D[k,k]", [(), (6, 6), (6, 6)], 256,
                 lambda alpha, A, D: alpha * A @ A @ torch.diagonal(D)),
    # a sliced product inside a function
    "tanh": ("Y[b,o] := tanh(X[b,i]*W[i,o]*U[i,o])", [(3, 16), (16, 4), (16, 4)], 256,
             lambda X, W, U: torch.tanh(X @ (W * U))),
    # two statements, each with a sliced product; the second reads the first's output twice
    "two": ("H[b,o] := X[b,i]*W[i,j]*W2[j,o]\nL := H[b,o]*V[o]*H[b,p]*V[p]",
            [(4, 6), (6, 5), (5, 3), (3,)], 128, lambda X, W, W2, V: ((X @ W @ W2 @ V) ** 2).sum()),
}


def _slices(fn):
    """The slicings of the last compiled signature (under torch.compile: the last compiled)."""
    compiled = fn._last or list(fn._cache.values())[-1]
    return [op.info["slices"] for op in compiled.program.ops if op.kind == "sliced"]


def _inputs(shapes, dtype=torch.float64):
    return [make_tensor(s, dtype=dtype).requires_grad_() for s in shapes]


@pytest.mark.parametrize("memory", ["high", "low"])
@pytest.mark.parametrize("key", sorted(CASES))
def test_sliced_value_and_gradients_match_autograd(key, memory):
    text, shapes, limit, reference = CASES[key]
    xs = _inputs(shapes)
    fn = tm.tensorgrad(text, memory_limit=limit, memory=memory)
    out = fn(*xs)
    assert _slices(fn) and all(s.count > 1 for s in _slices(fn))
    expected = reference(*xs)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    g = make_tensor(tuple(out.shape))
    got = torch.autograd.grad(out, xs, g)
    want = torch.autograd.grad(expected, xs, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_an_index_of_the_result_is_sliced_into_blocks():
    text, shapes, limit, _ = CASES["chain"]
    fn = tm.tensorgrad(text, memory_limit=limit)
    fn(*_inputs(shapes))
    (s,) = _slices(fn)
    assert s.out, "the chain's result is sliced along i or m"


# small cases with a few slices each (gradcheck runs every slice for every entry)
SMALL = {
    "ring": (RING, [(4, 4, 2)] * 3 + [(2, 2, 2)], 1024),
    "chain": ("A[i,m] := B[i,j]*C[j,k]*D[k,l]*E[l,m]", [(4, 3), (3, 2), (2, 3), (3, 4)], 384),
    "diagonal": (CASES["diagonal"][0], [(), (4, 4), (4, 4)], 192),
    "two": (CASES["two"][0], [(2, 4), (4, 3), (3, 2), (2,)], 192),
}


@pytest.mark.parametrize("key", sorted(SMALL))
def test_gradcheck_and_gradgradcheck_through_the_slices(key):
    text, shapes, limit = SMALL[key]
    fn = tm.tensorgrad(text, memory_limit=limit)
    xs = _inputs(shapes)
    assert torch.autograd.gradcheck(fn, xs)
    assert torch.autograd.gradgradcheck(fn, xs)
    assert _slices(fn) and all(1 < s.count <= 12 for s in _slices(fn))


def test_complex_sliced_product_matches_einsum():
    text, shapes, limit = SMALL["ring"]
    xs = [make_tensor(s, dtype=torch.complex128).requires_grad_() for s in shapes]
    fn = tm.tensorgrad(text, memory_limit=2 * limit)
    out = fn(*xs)
    assert _slices(fn)
    torch.testing.assert_close(out, _ring(*xs))
    got = torch.autograd.grad(out.real, xs)
    want = torch.autograd.grad(_ring(*xs).real, xs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fn, xs)


def test_torch_func_transforms_through_the_slices():
    text, shapes, limit, reference = CASES["tanh"]
    fn = tm.tensorgrad(text, memory_limit=limit)
    X, W, U = (x.detach() for x in _inputs(shapes))
    torch.testing.assert_close(torch.func.grad(lambda w: fn(X, w, U).sum())(W),
                               torch.func.grad(lambda w: reference(X, w, U).sum())(W))
    batch = make_tensor((5, *X.shape))
    torch.testing.assert_close(torch.func.vmap(lambda x: fn(x, W, U))(batch),
                               torch.func.vmap(lambda x: reference(x, W, U))(batch))
    tangent = make_tensor(W.shape)
    _, ours = torch.func.jvp(lambda w: fn(X, w, U), (W,), (tangent,))
    _, theirs = torch.func.jvp(lambda w: reference(X, w, U), (W,), (tangent,))
    torch.testing.assert_close(ours, theirs)
    assert _slices(fn)


def test_torch_compile_traces_the_slices_without_a_graph_break():
    text, shapes, limit = SMALL["chain"]
    reference = CASES["chain"][3]
    fn = tm.tensorgrad(text, memory_limit=limit)
    xs = _inputs(shapes)
    compiled = torch.compile(lambda *a: fn(*a), fullgraph=True, backend="eager")
    out = compiled(*xs)
    torch.testing.assert_close(out, reference(*xs))
    got = torch.autograd.grad(out.sum(), xs)
    want = torch.autograd.grad(reference(*xs).sum(), xs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert _slices(fn)


def test_plan_and_code_show_the_slices_and_their_cost():
    fn = tm.tensorgrad(RING, memory_limit=2048)
    fn(*_inputs(RING_SHAPES))
    (s,) = _slices(fn)
    plan = fn.plan
    assert f"sliced product, {s.count:,} slices" in plan
    assert "recompute each slice's forward" in plan
    assert f"{s.extra:+.1%} for slicing" in plan
    assert f"working memory {s.working:,} elements per slice" in plan
    assert s.working * 8 <= 2048 < s.unsliced_working * 8
    assert "_sliced_forward(" in fn.code and "_sliced_backward(" in fn.code
    assert f"# {s.count:,} slices:" in fn.code


def test_the_plan_picture_draws_one_slice_of_a_sliced_product():
    import re
    fn = tm.tensorgrad(RING, memory_limit=2048)
    fn(*_inputs(RING_SHAPES))
    (s,) = _slices(fn)
    svg = fn.plan_diagram().svg
    texts = re.findall(r">([^<]+)</text>", svg)
    assert {"P[a,b,i]", "Q[b,c,j]", "R[c,a,k]", "T[i,j,k]"} <= set(texts)
    assert sum(t.endswith(f"× {s.count:,} slices") for t in texts) == 3  # three pairwise products
    assert 'data-saved="true"' not in svg  # a slice keeps nothing for the backward


def test_the_budget_counts_the_dtypes_element_size():
    fns = {dtype: tm.tensorgrad(RING, memory_limit=4096) for dtype in (torch.float32, torch.float64)}
    for dtype, fn in fns.items():
        fn(*_inputs(RING_SHAPES, dtype))
    (s32,), (s64,) = _slices(fns[torch.float32]), _slices(fns[torch.float64])
    assert s32.working * 4 <= 4096 and s64.working * 8 <= 4096
    assert s64.count > s32.count


def test_measured_peak_memory_stays_within_the_budget():
    """The profiler's allocations during forward + backward, less the gradients returned,
    against the budget; the unsliced run exceeds it."""
    xs = [torch.randn(s, requires_grad=True) for s in [(24, 24, 16)] * 3 + [(16, 16, 16)]]
    grads = sum(x.numel() * x.element_size() for x in xs)

    def peak(fn):
        def step():
            fn(*xs).backward()
        step()
        return timer.peak_bytes(step, "cpu") - grads
    unsliced = peak(tm.tensorgrad(RING))
    limit = unsliced // 4
    sliced_fn = tm.tensorgrad(RING, memory_limit=limit)
    sliced = peak(sliced_fn)
    assert _slices(sliced_fn)
    assert sliced <= limit < unsliced


def test_pickles_keep_the_options():
    fn = tm.tensorgrad(RING, memory_limit="2KB", distributed=True)
    back = pickle.loads(pickle.dumps(fn))
    assert (back.memory_limit, back.distributed) == (2048, True)


@pytest.mark.parametrize("given,expected", [
    (2 ** 30, 2 ** 30), ("1GB", 2 ** 30), ("2GiB", 2 ** 31), ("512 MiB", 2 ** 29), ("1.5kb", 1536),
    ("100", 100), ("64B", 64), (1e6, 1_000_000), (None, None),
])
def test_memory_limit_reads_bytes_and_binary_units(given, expected):
    assert scale.memory_limit(given) == expected


@pytest.mark.parametrize("given,error,words", [
    ("2XB", ValueError, "units B, KB, MB, GB, TB"), ("GB", ValueError, "not 'GB'"),
    ("-2GB", ValueError, "not '-2GB'"), (0, ValueError, "at least 1 byte"),
    (float("inf"), ValueError, "at least 1 byte"), (True, TypeError, "not bool"),
    ([1024], TypeError, "not list"),
])
def test_a_memory_limit_of_a_wrong_type_or_unit_is_refused(given, error, words):
    with pytest.raises(error, match="memory_limit") as info:
        tm.tensorgrad(RING, memory_limit=given)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_budget_too_small_says_the_least_it_reaches():
    fn = tm.tensorgrad(RING, memory_limit=64)
    with pytest.raises(slicing.BudgetError) as info:
        fn(*_inputs(RING_SHAPES))
    message = str(info.value)
    assert message.startswith("memory_limit=64 B cannot be met: the least working memory found")
    assert "96 B (12 elements of 8 bytes) per slice" in message and "\n" not in message
    assert isinstance(info.value, ValueError) and info.value.least == 12


def test_a_value_no_slice_can_shrink_is_named_with_the_smallest_budget():
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o])", memory_limit=256)
    with pytest.raises(slicing.BudgetError) as info:
        fn(*_inputs([(8, 4), (4, 8)]))
    message = str(info.value)
    assert "only products are sliced" in message and "[b,o]" in message
    assert message.endswith("the smallest memory_limit for these shapes is 512 B")


def test_too_many_slices_is_an_error(monkeypatch):
    monkeypatch.setattr(slicing, "MAX_SLICES", 8)
    with pytest.raises(slicing.BudgetError, match="more than 8 slices would be needed"):
        tm.tensorgrad(RING, memory_limit=512)(*_inputs(RING_SHAPES))


def test_distributed_without_a_process_group_is_an_error_at_call_time():
    assert not torch.distributed.is_initialized()
    fn = tm.tensorgrad(RING, memory_limit=2048, distributed=True)  # made without complaint
    with pytest.raises(RuntimeError, match=r"distributed=True needs torch.distributed's default "
                                           r"process group: call torch.distributed.init_process_group"):
        fn(*_inputs(RING_SHAPES))
    assert "sliced product" in fn.plan  # the plan still shows (as on one rank)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        tm.tensorgrad(RING, distributed="yes")


def test_the_magic_takes_memory_limit_and_distributed(ip):
    xs = [make_tensor(s) for s in RING_SHAPES]
    ip.push(dict(zip("PQRT", xs)))
    captured = run_magic(ip, "--memory-limit 2KB", RING)
    assert "bound s" in captured.stdout
    fn = ip.user_ns["s_fn"]
    assert fn.memory_limit == 2048 and _slices(fn)
    torch.testing.assert_close(ip.user_ns["s"], _ring(*xs))
    from IPython.core.error import UsageError
    with pytest.raises(UsageError, match="--memory-limit: memory_limit must be"):
        run_magic(ip, "--memory-limit 2XB", RING)
    from tensormagic.frontends.magic import TensorgradCellError
    with pytest.raises(TensorgradCellError, match="RuntimeError: distributed=True needs"):
        run_magic(ip, "--memory-limit 2KB --distributed", RING)
    with pytest.raises(TensorgradCellError, match="cannot be met"):
        run_magic(ip, "--memory-limit 16", RING)


def test_every_process_plans_the_same_slices():
    """The ranks of distributed=True are processes with their own hash seeds: each plans the
    product itself, so the plan (path, sliced indices, chunks) must not depend on the seed.
    An 18-tensor PEPS norm goes through opt_einsum's auto-hq search, which iterates over sets
    of labels: with string labels its path changed from seed to seed (and so the slices, and
    two ranks summed slices of different plans)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import cases, torch, tensormagic as tm; "
            "case = cases.peps_norm(3, 3, 2); "
            "xs = [torch.randn(case.shape(op)) for op in case.operands]; "
            "fn = tm.tensorgrad(case.statement, memory_limit='16KiB'); fn(*xs); print(fn.code)")
    sources = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=root, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3", "4")}
    assert len(sources) == 1 and "_sliced" in sources.pop()
