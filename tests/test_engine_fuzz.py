"""Fuzz: random statements with odd constants, deep nesting and long chains.

Whatever the text, tensormagic either works or raises one of its own errors
(tm.NotationError: a SyntaxError or ValueError with a caret), and never hangs:
every statement is built, called and differentiated within a time bound.
"""
import random
import time

import torch

import tensormagic as tm
from tensormagic.language.functions import CALLABLE

NUMBERS = ["0", "1", "2", "0.5", "-1", "3.0", "1e308", "1e-320", "1e400", "2**64", "9**9**9", "10**20",
           "2 ** 10**20", "0**-1", "0.0**0", "(-5-31) ** 2**64", "10**5000", "1j", "(1+1j)", "2.0**10000",
           "99999999999999999999999", "0 ** 0", "(-8) ** 0.5", "1e200 * 1e200", "1/0"]
TENSORS = ["x[i]", "y[j]", "T[i,i]", "T[i,j]", "z[i]", "w"]


def _expr(rng, depth):
    if depth <= 0 or rng.random() < 0.25:
        return rng.choice(TENSORS + NUMBERS)
    kind = rng.randrange(6)
    if kind == 0:
        return f"{rng.choice(CALLABLE)}({_expr(rng, depth - 1)})"
    if kind == 1:
        return f"({_expr(rng, depth - 1)}) ** {rng.choice(NUMBERS + TENSORS[:2])}"
    if kind == 2:
        return "-" * rng.randrange(1, 40) + f"({_expr(rng, depth - 1)})"
    if kind == 3:  # a long chain
        op = rng.choice(["+", "-", "*", "/"])
        return f" {op} ".join(_expr(rng, 0) for _ in range(rng.randrange(2, 300)))
    op = rng.choice(["+", "-", "*", "/", "**"])
    return f"({_expr(rng, depth - 1)}) {op} ({_expr(rng, depth - 1)})"


def _statements(seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        lhs = rng.choice(["s", "y[i]", "O[i,j]"])
        rhs = _expr(rng, rng.choice([2, 4, 8, 70]))
        yield f"{lhs} := {rhs}"


def _run(text, complex_inputs):
    fn = tm.tensorgrad(text)
    gen = torch.Generator().manual_seed(0)
    dtype = torch.complex128 if complex_inputs else torch.float64
    args = {}
    for name in fn.inputs:
        shape = (2,) * fn.cell.ndim[name]
        args[name] = torch.randn(shape, dtype=dtype, generator=gen).requires_grad_()
    out = fn(**args)
    if out.requires_grad:
        out.real.sum().backward() if out.is_complex() else out.sum().backward()
    str(fn)  # the formulas too


def test_fuzz_only_library_errors_and_no_hang():
    start = time.perf_counter()
    outcomes = {"ok": 0, "refused": 0}
    for k, text in enumerate(_statements(seed=10, count=120)):
        began = time.perf_counter()
        try:
            _run(text, complex_inputs=k % 3 == 0)
            outcomes["ok"] += 1
        except tm.NotationError:
            outcomes["refused"] += 1
        assert time.perf_counter() - began < 5, f"slow: {text[:200]}"
    assert outcomes["ok"] > 10 and outcomes["refused"] > 10, outcomes
    assert time.perf_counter() - start < 60
