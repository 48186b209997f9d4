"""fn.check(): a ✓ or ✗ with the max error beside each derived gradient."""
import time

import pytest
import torch

import tensormagic as tm
from tensormagic.runtime.checking import small_shapes

DEMO_CELLS = [
    ("A[i,k] := B[i,j] * C[j,k] * D[l,l]", "B C"),
    ("Z[b,i,k] := X[b,i,j] * Y[b,j,k]", None),
    ("t := M[i,i]", None),
    ("u[k] := T3[i,i,k]", None),
    ("H[b,o] := tanh(X2[b,i] * W[i,o] + c[o])", "W"),
    ("H[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])\nP[n,o] := H[n,h] * W2[h,o] + b2[o]\n"
     "R[n,o] := P[n,o] - Y[n,o]\nloss := R[n,o] * R[n,o] / N", "W1 b1 W2 b2"),
    ("nrm := A1[p,a]*A1[p,x] * A2[a,q,b]*A2[x,q,y] * A3[b,r,c]*A3[y,r,z] * A4[c,s]*A4[z,s]", None),
    ("Xh[i,j,k] := G[a,b,c] * U[i,a] * V[j,b] * W[k,c]\nR[i,j,k] := Xh[i,j,k] - T[i,j,k]\n"
     "loss := R[i,j,k] * R[i,j,k]", "G U V W"),
]


@pytest.mark.parametrize("text, wrt", DEMO_CELLS)
def test_demo_cells_check_out_fast(text, wrt):
    fn = tm.tensorgrad(text, wrt=wrt)
    start = time.perf_counter()
    report = fn.check()
    assert time.perf_counter() - start < 1.0
    assert report.ok, str(report)
    assert [r.name for r in report.results] == list(fn.wrt)
    for r in report.results:
        assert r.badge == "✓" and r.error < 1e-6 and r.scale > 0
        assert f"✓ {fn.formulas[r.name]}    (max error " in str(report)
    assert report.dtype == torch.float64
    assert not report.sampled and "sampled" not in str(report)  # every entry compared


def test_complex_cells_are_checked_in_complex128():
    report = tm.tensorgrad("s := conj(z[i]) * M[i,j] * z[j]").check()
    assert report.ok and report.dtype == torch.complex128, str(report)


def test_a_wrong_formula_fed_through_the_checker_gets_a_cross():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    report = fn.check(formulas={"B": "ΔB[i,j] = ΔA[i,k] * C[j,k] * 1.001"})
    assert not report.ok
    assert report["B"].badge == "✗" and 1e-4 < report["B"].error < 1e-1
    assert report["C"].badge == "✓"
    assert "✗ ΔB[i,j] = ΔA[i,k] * C[j,k] * 1.001    (max error" in str(report)
    # the same formula written correctly passes, so the cross was the formula's fault
    assert fn.check(formulas={"B": "ΔB[i,j] = ΔA[i,k] * C[j,k]"}).ok
    # a transposed index on square matrices: sizes fit, values do not
    sq = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * E[i,j]")
    assert not sq.check(formulas={"C": "ΔC[j,k] = B[i,k] * ΔA[i,j] * E[i,k]"})["C"].ok
    # one whose sizes do not fit is a cross with the reason, not a crash
    bad = fn.check(formulas={"B": "ΔB[i,j] = ΔA[i,k] * C[k,j]"})["B"]
    assert bad.badge == "✗" and "index 'k' has size" in bad.problem


def test_a_wrong_compiled_backward_gets_a_cross():
    """The default check reads the gradient the compiled backward computes."""
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    compile_ = fn._compile

    def tampered(*args):
        compiled = compile_(*args)
        backward = compiled.backward
        compiled.backward = lambda saved, grads: tuple(
            g.mT.reshape(g.shape) if k == 1 and g is not None else g
            for k, g in enumerate(backward(saved, grads)))
        return compiled

    fn._compile = tampered
    report = fn.check()
    assert report["B"].ok and not report["C"].ok and not report.ok
    assert "✗ ΔC[j,k]" in str(report) and "✗" in report._repr_html_()


def test_check_changes_nothing_the_caller_sees():
    fn = tm.tensorgrad("y[i] := log(x[i]) * alpha")
    x = torch.rand(7, dtype=torch.float64) + 1
    fn(x, 2.0)
    code = fn.code
    state = torch.get_rng_state()
    report = fn.check()
    assert report.ok, str(report)  # log: positive inputs were used
    assert torch.equal(torch.get_rng_state(), state)
    assert fn.code == code


def test_small_shapes_give_equal_sizes_to_indices_that_must_match():
    fn = tm.tensorgrad("s := conj(z[i]) * M[i,j] * z[j] + E[k,k]")
    shapes = small_shapes(fn)
    assert shapes["z"] == (3,) and shapes["M"] == (3, 3) and len(shapes["E"]) == 2
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    assert small_shapes(fn) == {"B": (3, 2), "C": (2, 4)}


def test_a_backward_that_fails_is_reported_not_raised():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    compile_ = fn._compile

    def broken(*args):
        compiled = compile_(*args)

        def backward(saved, grads):
            raise RuntimeError("boom")
        compiled.backward = backward
        return compiled

    fn._compile = broken
    report = fn.check()
    assert not report.ok
    assert all(r.badge == "✗" and "boom" in r.problem for r in report.results)


LANGUAGE_II = [  # shifted, strided, fixed and gathered subscripts, reductions, sizes=
    ("y[b,o,i,j] := x[b,c,i+a,j+d] * w[o,c,a,d] + bias[o]", None, None),
    ("y[b,i] := max[a](x[b,2*i+a])", None, {"a": 2}),
    ("l := -x[b,0] + x[b,-1]", None, None),
    ("L := -logsumexp[j](z[b,j]) + z[b, t[b]]", None, None),
    ("e[b,d] := W[tok[b], d] * s[d]", "W s", None),
]


@pytest.mark.parametrize("text, wrt, sizes", LANGUAGE_II)
def test_language_ii_cells_check_out(text, wrt, sizes):
    fn = tm.tensorgrad(text, wrt=wrt, sizes=sizes)
    report = fn.check()
    assert report.ok and len(report.results) == len(fn.wrt), str(report)
    assert all(r.scale > 0 for r in report.results)  # nothing trivially zero


def test_small_shapes_follow_shifted_fixed_and_gathered_subscripts():
    fn = tm.tensorgrad("y[b,i] := x[b,2*i+a] * w[a] + v[b,0] + W[tok[b],i]", sizes={"a": 2})
    shapes = small_shapes(fn)
    b = shapes["tok"][0]
    assert shapes["w"] == (2,)                                    # from sizes=
    assert shapes["x"][1] == 2 * (shapes["W"][1] - 1) + (2 - 1) + 1  # reaches every position
    assert shapes["v"][1] >= 3 and shapes["W"][0] == 5 and shapes["x"][0] == shapes["v"][0] == b


# -- large cells: the finite differences are sampled ------------------------------------------
BIG_CONV = ("y[b,o,i,j] := x[b,c,i+u,j+v] * w[o,c,u,v]",
            {"b": 2, "o": 64, "c": 64, "u": 5, "v": 5, "i": 6, "j": 6})  # 102,400 weights


def test_a_large_cell_is_sampled_within_seconds_and_says_so():
    fn = tm.tensorgrad(BIG_CONV[0], sizes=BIG_CONV[1])
    start = time.perf_counter()
    report = fn.check()
    assert time.perf_counter() - start < 5.0
    assert report.ok and report.sampled, str(report)
    assert report["w"].entries == 102_400 and report["x"].entries == 12_800
    assert report["w"].checked == report["x"].checked == 256  # max_entries=512 shared out
    text = str(report)
    assert "(max error" in text and "at 256 of 102,400 entries)" in text
    assert "sampled: 512 of 115,200 entries, at random (max_entries=512, seconds=2.0)" in text
    assert "sampled: 512 of 115,200" in report._repr_html_()


def test_a_sixteen_site_mps_checks_every_entry_in_a_few_seconds():
    n = 16
    terms = ["A0[p0,a0]*A0[p0,b0]"] + [
        f"A{k}[a{k - 1},p{k},a{k}]*A{k}[b{k - 1},p{k},b{k}]" for k in range(1, n - 1)] + [
        f"A{n - 1}[a{n - 2},p{n - 1}]*A{n - 1}[b{n - 2},p{n - 1}]"]
    fn = tm.tensorgrad("nrm := " + " * ".join(terms))
    start = time.perf_counter()
    report = fn.check()
    assert time.perf_counter() - start < 5.0
    assert report.ok and len(report.results) == n, str(report)
    assert not report.sampled and "sampled" not in str(report)  # small enough for all entries


@pytest.mark.parametrize("wrong", [
    "Δw[o,c,u,v] = -x[b,c,i+u,j+v] * Δy[b,o,i,j]",          # a wrong sign
    "Δw[o,c,u,v] = 0.999 * x[b,c,i+u,j+v] * Δy[b,o,i,j]",   # a factor off everywhere
    "Δw[o,c,u,v] = x[b,c,i+v,j+u] * Δy[b,o,i,j]",           # transposed shifts
])
def test_sampling_still_catches_a_wrong_formula(wrong):
    fn = tm.tensorgrad(BIG_CONV[0], sizes=BIG_CONV[1])
    report = fn.check(formulas={"w": wrong}, max_entries=64)  # 32 of 102,400 entries of w
    assert report.sampled and report["x"].ok and not report["w"].ok, str(report)
    assert f"✗ {wrong}    (max error" in str(report)


def _corrupted(fn, where):
    """fn whose compiled backward gets ΔA wrong at the flat entries `where` of ΔA."""
    compile_ = fn._compile

    def tampered(*args):
        compiled = compile_(*args)
        backward = compiled.backward

        def wrong(saved, grads):
            out = list(backward(saved, grads))
            flat = out[0].reshape(-1).clone()
            flat[where(flat.numel())] += 1.0
            out[0] = flat.reshape(out[0].shape)
            return tuple(out)
        compiled.backward = wrong
        return compiled

    fn._compile = tampered
    return fn


@pytest.mark.parametrize("where", [
    lambda n: slice(n - 1, n),            # the last entry only (a boundary bug): always checked
    lambda n: slice(0, 1),                # the first
    lambda n: slice(n // 2, n // 2 + n // 20),  # a block of 5% in the middle
])
def test_sampling_catches_a_backward_wrong_in_one_region(where):
    fn = _corrupted(tm.tensorgrad("y[i,k] := A[i,j] * B[j,k]", sizes={"i": 80, "j": 60, "k": 3}),
                    where)
    report = fn.check(max_entries=128)
    assert report.sampled and report["A"].entries == 4800, str(report)
    assert not report["A"].ok and report["B"].ok, str(report)


def test_the_time_cap_stops_the_finite_differences():
    fn = tm.tensorgrad(BIG_CONV[0], sizes=BIG_CONV[1])
    fn.check(max_entries=4)  # compiled: the timing below is the finite differences
    start = time.perf_counter()
    report = fn.check(max_entries=None, seconds=0.3)
    assert time.perf_counter() - start < 2.5  # all 115,200 entries would take over a minute
    assert report.ok and report.sampled, str(report)
    assert all(r.checked >= 2 for r in report.results)
    assert "(max_entries=None, seconds=0.3)" in str(report)
    full = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]").check(max_entries=None, seconds=None)
    assert full.ok and not full.sampled and full["B"].checked == full["B"].entries == 6


def test_bad_caps_are_refused():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    with pytest.raises(TypeError, match="max_entries must be an int or None, not str"):
        fn.check(max_entries="10")
    with pytest.raises(ValueError, match="must be positive"):
        fn.check(seconds=0)


# -- at the inputs a person passes (issue 17: fn.check(B, C) was an UnboundLocalError) ----------
def test_check_at_the_inputs_given_positionally_or_by_name():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    B, C, D = torch.randn(2, 3), torch.randn(3, 4), torch.randn(5, 5)  # float32: checked in float64
    for report in (fn.check(B, C, D), fn.check(B=B, C=C, D=D), fn.check(B, C=C, D=D)):
        assert report.ok and report.given and report.shapes == {"B": (2, 3), "C": (3, 4), "D": (5, 5)}
        assert "at the float64 inputs given" in str(report)


def test_check_at_given_inputs_catches_what_only_they_show():
    """relu's gradient checked where every entry is negative: zeros there, and ✓."""
    fn = tm.tensorgrad("y[i] := relu(x[i]) * w[i]")
    report = fn.check(-torch.rand(4) - 0.5, torch.randn(4))
    assert report.ok and report["x"].error < 1e-8


@pytest.mark.parametrize("args, kwargs, words", [
    ((torch.ones(2, 3),), {}, ("takes the cell's inputs (B, C)", "missing: C")),
    ((torch.ones(2, 3), torch.ones(3, 4), torch.ones(1)), {}, ("takes 2 inputs",)),
    ((), {"B": torch.ones(2, 3), "E": torch.ones(1)}, ("unexpected input 'E'",)),
    (({"B": "ΔB[i,j] = ΔA[i,k] * C[j,k]"},), {}, ("formulas are given by keyword",)),
], ids=["missing", "too-many", "unknown-name", "formulas-positionally"])
def test_check_says_what_it_takes(args, kwargs, words):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    with pytest.raises(TypeError) as info:
        fn.check(*args, **kwargs)
    for w in words:
        assert w in str(info.value), str(info.value)
