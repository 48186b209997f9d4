"""Shared helpers for the engine tests: seeding and float64 input makers."""

import ast
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.dirname(HERE)):  # `import reference`, `import tensormagic`
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def make_tensor(shape, kind="normal", dtype=torch.float64, generator=None):
    """A random tensor: 'normal', 'pos' (in [0.5, 1.5]) or 'away' (|x| in [0.2, 1.2])."""
    if kind == "pos":
        return torch.rand(shape, dtype=dtype, generator=generator) + 0.5
    if kind == "away":
        real = torch.float64 if dtype == torch.complex128 else dtype
        mag = torch.rand(shape, dtype=real, generator=generator) + 0.2
        sign = torch.randint(0, 2, shape, generator=generator).to(real) * 2 - 1
        return (mag * sign).to(dtype)
    return torch.randn(shape, dtype=dtype, generator=generator) * 0.7


def evaluate_formula(formula, env, shape):
    """Evaluate a formula as a statement with tm.tensorgrad.  A gradient constant along
    some left index leaves it off the right side (by design that is no statement), so
    then the statement is read without those left indices and broadcast along them."""
    import reference
    import tensormagic as tm

    st = reference.statements(formula)[0]
    on_right = {i for _, i in reference._occurrences(st.rhs)}
    kept = [i for i in st.indices if i in on_right]
    if len(kept) == len(st.indices):
        return tm.tensorgrad(formula)(**env)
    env = {k: v for k, v in env.items() if k != st.name}
    lhs = f"{st.name}[{','.join(kept)}]" if kept else st.name
    value = tm.tensorgrad(f"{lhs} := {ast.unparse(st.rhs)}")(**env)
    view = [shape[d] if i in kept else 1 for d, i in enumerate(st.indices)]
    return value.reshape(view).expand(shape)
