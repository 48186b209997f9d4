"""The layout cost model: every form layout.candidates offers computes the same product and
gradients (forced one by one into the plan), and the planner reads large intermediates in place."""
import itertools
import random
import re

import pytest
import torch

import tensormagic as tm
from tensormagic.compiler import codegen, describe, layout, plan
from tensormagic.runtime.autograd import run
from tensormagic.runtime.compiled import build, compile_program


def _pair_program(statement, shapes, wants, dtype):
    fn = tm.tensorgrad(statement)
    program = plan.build(fn.cell, shapes, set(wants), complex=dtype.is_complex)
    pairs = [op for op in program.ops if op.kind == "pair"]
    return fn, program, pairs


def _check_all_forms(statement, shapes, dtype, wants=None):
    fn = tm.tensorgrad(statement)
    wants = fn.inputs if wants is None else wants
    _, program, pairs = _pair_program(statement, shapes, wants, dtype)
    assert len(pairs) == 1
    op = pairs[0]
    a, b = op.args
    sizes = {}
    for r in (a, b):
        sizes.update(zip(r.labels, program.vars[r.var].shape))
    want_ab = (program.vars[a.var].needs, program.vars[b.var].needs)
    forms = layout.candidates(a.labels, b.labels, set(program.vars[op.out].labels), sizes, want_ab)
    assert forms
    xs = [torch.randn(s, dtype=dtype) for s in shapes]
    eq = _equation(statement)
    leaves = [x.clone().requires_grad_(n in wants) for x, n in zip(xs, fn.inputs)]
    ref = torch.einsum(eq, *leaves)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [x for x in leaves if x.requires_grad], g)
    kinds = set()
    for form in forms:
        op.info["recipe"] = form
        kinds.add(form.kind)
        compiled = compile_program(program, "t", False, dtype, torch.device("cpu"))
        leaves = [x.clone().requires_grad_(n in wants) for x, n in zip(xs, fn.inputs)]
        out = run(compiled, leaves)[0]
        torch.testing.assert_close(out, ref, msg=lambda m: f"{form}\n{compiled.source}\n{m}")
        grads = torch.autograd.grad(out, [x for x in leaves if x.requires_grad], g)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, msg=lambda m: f"{form}\n{compiled.source}\n{m}")
    return kinds


def _equation(statement):
    lhs, rhs = statement.split(":=")
    out = re.findall(r"\[([^\]]*)\]", lhs)
    ops = re.findall(r"\[([^\]]*)\]", rhs)
    return ",".join(o.replace(",", "") for o in ops) + "->" + (out[0].replace(",", "") if out else "")


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("statement,shapes", [
    # ring step: contracted (a, c) apart in one operand; batch broadcast; reduce batch
    ("X[i,j,k] := A[a,i,c,j]*R[c,a,k]", [(3, 2, 4, 5), (4, 3, 2)]),
    ("X[a,i,c,j] := P[a,b,i]*Q[b,c,j]", [(3, 4, 2), (4, 3, 5)]),
    # shared batch out of place, transposed operands
    ("S[b,i,j] := Q[i,b,d]*K[d,j,b]", [(3, 2, 4), (4, 5, 2)]),
    ("Y[i,j] := F[a,b,j,k]*G[b,c,k,i]", [(2, 3, 4, 5), (3, 2, 5, 3)]),
    ("s := T[i,j,k]*U[j,i,k]", [(2, 3, 4), (3, 2, 4)]),
    ("v[i] := M[j,i,k]*w[k,j]", [(3, 4, 2), (2, 3)]),
])
def test_every_form_gives_the_product_and_its_gradients(statement, shapes, dtype):
    kinds = _check_all_forms(statement, shapes, dtype)
    assert "none" in kinds or "shared" in kinds


def test_every_form_with_one_gradient_wanted():
    for wants in (["A"], ["R"]):
        _check_all_forms("X[i,j,k] := A[a,i,c,j]*R[c,a,k]", [(3, 2, 4, 5), (4, 3, 2)], torch.float64, wants)


def test_reduce_and_broadcast_forms_are_offered():
    sizes = dict(a=3, c=4, i=2, j=5, k=2, b=4)
    kinds = {r.kind for r in layout.candidates("aicj", "cak", set("ijk"), sizes)}
    assert {"none", "reduce"} <= kinds
    kinds = {r.kind for r in layout.candidates("abi", "bcj", set("aicj"), sizes)}
    assert "broadcast" in kinds


def test_random_pairs_in_random_orders():
    rng = random.Random(1)
    letters = "abcdef"
    for _ in range(12):
        labels = rng.sample(letters, 5)
        a = rng.sample(labels, rng.randint(2, 4))
        b = rng.sample([i for i in labels if i not in a], 1) + rng.sample(a, rng.randint(1, len(a)))
        rng.shuffle(b)
        shared = [i for i in a if i in b]
        keep = [i for i in a + b if i not in shared or rng.random() < 0.3]
        keep = list(dict.fromkeys(keep))
        if not [i for i in shared if i not in keep]:
            continue
        rng.shuffle(keep)
        sizes = {i: rng.randint(2, 4) for i in labels}
        st = f"C[{','.join(keep)}] := A[{','.join(a)}]*B[{','.join(b)}]" if keep else \
            f"C := A[{','.join(a)}]*B[{','.join(b)}]"
        _check_all_forms(st, [tuple(sizes[i] for i in a), tuple(sizes[i] for i in b)], torch.float64)


def _largest_copied(statement, shapes):
    """Source of the forward and the largest intermediate's name."""
    fn = tm.tensorgrad(statement)
    xs = [torch.randn(s, requires_grad=True) for s in shapes]
    fn(*xs)
    compiled = fn._last
    program = compiled.program
    pairs = [op for op in program.ops if op.kind == "pair"]
    largest = max(pairs, key=lambda op: program.vars[op.out].shape.numel()
                  if hasattr(program.vars[op.out].shape, "numel") else
                  __import__("math").prod(program.vars[op.out].shape))
    return compiled.source, f"_{largest.out}"


@pytest.mark.parametrize("statement,shapes", [
    ("s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]", [(12, 12, 6)] * 3 + [(6, 6, 6)]),
    ("s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]", [(8, 8, 8)] * 3 + [(8, 8, 8)]),
    ("s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]", [(48, 48, 32)] * 3 + [(32, 32, 32)]),
])
def test_ring_reads_its_largest_intermediate_in_place(statement, shapes):
    source, name = _largest_copied(statement, shapes)
    # no copy of it anywhere: not permuted-and-reshaped, not cloned, not made contiguous
    for line in source.splitlines():
        assert not re.search(rf"\b{name}\.permute\(", line), source
        assert not re.search(rf"\b{name}\b.*\.(contiguous|clone)\(", line), source
        assert not re.search(rf"= {name}\.(mT\.)?reshape", line), source
    assert not re.search(r"_g\d+\.permute.*\n.*_gm\d+ = _g\d+\.reshape", source)


@pytest.mark.parametrize("memory", ["high", "low"])
def test_ring_every_wrt_subset(memory):
    st = "s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]"
    shapes = [(5, 4, 3), (4, 6, 2), (6, 5, 3), (3, 2, 3)]
    xs = [torch.randn(s, dtype=torch.float64) for s in shapes]
    names = "PQRT"
    for n in range(1, 5):
        for wrt in itertools.combinations(names, n):
            fn = tm.tensorgrad(st, wrt=wrt, memory=memory)
            leaves = [x.clone().requires_grad_(k in wrt) for x, k in zip(xs, names)]
            out = fn(*leaves)
            ref_leaves = [x.clone().requires_grad_(k in wrt) for x, k in zip(xs, names)]
            ref = torch.einsum("abi,bcj,cak,ijk->", *ref_leaves)
            torch.testing.assert_close(out, ref)
            got = torch.autograd.grad(out, [x for x in leaves if x.requires_grad])
            want = torch.autograd.grad(ref, [x for x in ref_leaves if x.requires_grad])
            for x, y in zip(got, want):
                torch.testing.assert_close(x, y)


def _copies(source):
    """Copies the generated code makes: operands made contiguous, permuted then reshaped."""
    return len(re.findall(r"\.contiguous\(\)|\.permute\([^)]*\)\.reshape\(", source))


TIE = ("y := T0[d,b,c]*T1[a,c,b]*T2[a,d,c]*T3[a,c]", [(8, 8, 32), (16, 32, 8), (16, 8, 32), (16, 32)])


def test_an_equal_flop_path_with_fewer_copies_wins(monkeypatch):
    """opt_einsum's path copies T2; another path of the same FLOPs reads everything in place."""
    statement, shapes = TIE
    fn = tm.tensorgrad(statement)
    def source(ties):
        monkeypatch.setattr(plan, "TIE_OPERANDS", ties)
        return build(fn.cell, shapes, set(fn.inputs), torch.float64,
                             torch.device("cpu"), "t", False).program
    ties = plan.TIE_OPERANDS
    first, chosen = source(0), source(ties)
    def flops(program):  # forward and backward multiply-adds, from the plan's table
        return re.search(r"forward ([\d,]+) \+ backward ([\d,]+)", describe.describe(program)).groups()
    assert flops(chosen) == flops(first)
    src_first = codegen.generate(first).text
    src_chosen = codegen.generate(chosen).text
    assert _copies(src_chosen) < _copies(src_first), (src_first, src_chosen)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_the_tie_broken_plan_is_right(dtype):
    statement, shapes = TIE
    small = [tuple(min(n, 5) for n in s) for s in shapes]
    for sh in (shapes, small):
        xs = [torch.randn(s, dtype=dtype, requires_grad=True) for s in sh]
        fn = tm.tensorgrad(statement)
        out = fn(*xs)
        ref = torch.einsum("dbc,acb,adc,ac->", *xs)
        torch.testing.assert_close(out, ref)
        g = torch.randn_like(out)
        for got, want in zip(torch.autograd.grad(out, xs, g), torch.autograd.grad(ref, xs, g)):
            torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(fn, [x.detach().requires_grad_() for x in
                                         [torch.randn(s, dtype=torch.float64) for s in small]])
