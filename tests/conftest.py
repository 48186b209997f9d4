"""Shared helpers for the engine tests: seeding and float64 input makers."""

import ast
import itertools
import os
import re
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


def close(got, want):
    """The same shape, and float64 values equal to rounding."""
    assert got.shape == want.shape, (got.shape, want.shape)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def close_on_every_subset(make, ref, vals, names):
    """For each non-empty subset wrt of names: make(wrt)'s gradients at a random upstream
    gradient equal those of ref (plain torch, by torch autograd), the others not requiring grad."""
    for k in range(1, len(names) + 1):
        for wrt in itertools.combinations(names, k):
            fn = make(list(wrt))
            mine = {n: v.clone().requires_grad_(n in wrt) for n, v in vals.items()}
            theirs = {n: v.clone().requires_grad_(n in wrt) for n, v in vals.items()}
            out, want = fn(**mine), ref(**theirs)
            g = torch.randn_like(want)
            for a, b in zip(torch.autograd.grad(out, [mine[n] for n in wrt], g),
                            torch.autograd.grad(want, [theirs[n] for n in wrt], g)):
                close(a, b)


def index_sizes(text, vals):
    """Every index's size in a text, read off the shapes of the tensors it indexes."""
    sizes = {}
    for name, inside in re.findall(r"(\w+)\[([^\]]*)\]", text):
        if name in vals and inside.strip():
            for index, n in zip((i.strip() for i in inside.split(",")), torch.as_tensor(vals[name]).shape):
                sizes[index] = n
    return sizes


def expand_phantom_sums(formula, env, sizes):
    """A formula term summed over an index no factor carries is written `Σ_α (body)`:
    it is the body times the size of α. Rewrite it as `(body) * ONEk[α]` (ONEk: ones),
    which the language sums the same way, and put ONEk into env."""
    k = 0
    while "Σ_" in formula:
        at = formula.index("Σ_")
        m = re.match(r"Σ_(\{[^}]*\}|\w+) \(", formula[at:])
        assert m, formula
        indices = [i.strip() for i in m.group(1).strip("{}").split(",")]
        start = at + m.end() - 1
        depth, end = 0, start
        for end in range(start, len(formula)):
            depth += formula[end] == "("
            depth -= formula[end] == ")"
            if depth == 0:
                break
        name = f"ONE{k}"
        # a renamed index (iʹ) has the size of the index it was renamed from (i)
        env[name] = torch.ones([sizes[i.rstrip("ʹ")] for i in indices], dtype=torch.float64)
        formula = formula[:at] + formula[start:end + 1] + f" * {name}[{','.join(indices)}]" + formula[end + 1:]
        k += 1
    return formula


def evaluate_formula(formula, env, shape, sizes=None):
    """Evaluate a formula as a statement with tm.tensorgrad.  A gradient constant along
    some left index leaves it off the right side (by design that is no statement), so
    then the statement is read without those left indices and broadcast along them.
    sizes: index sizes, for the explicit Σ over an index no factor carries."""
    import reference
    import tensormagic as tm

    env = dict(env)
    if formula.split(" = ", 1)[1].strip() == "0":  # a gradient that vanishes (terms cancelled)
        return torch.zeros(shape, dtype=torch.float64)
    formula = expand_phantom_sums(formula, env, sizes or {})
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


@pytest.fixture(scope="module")
def shell():
    """IPython's global test shell (started once per process), formatting what a notebook shows."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    for kind in ("text/latex", "text/html", "image/svg+xml"):
        if kind not in ip.display_formatter.active_types:
            ip.display_formatter.active_types.append(kind)
        ip.display_formatter.formatters[kind].enabled = True  # as in a notebook kernel
    return ip


@pytest.fixture
def ip(shell):
    """The shell with the extension loaded, B C D defined, and a clean slate after."""
    shell.run_line_magic("load_ext", "tensormagic")
    before = set(shell.user_ns)
    torch.manual_seed(0)
    shell.push({"B": torch.randn(2, 3, dtype=torch.float64),
                "C": torch.randn(3, 4, dtype=torch.float64),
                "D": torch.randn(5, 5, dtype=torch.float64)})
    yield shell
    shell.run_line_magic("tensorgrad_verbose", "off")
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def run_magic(ip, line, cell):
    """Run a %%tensorgrad cell, capturing what it prints and displays."""
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_cell_magic("tensorgrad", line, cell)
    return captured
