"""Many operands: the cotengra path search (search.py) — used past search.OPERANDS operands
when the product is worth it, cached, and giving the same values and gradients."""
import os
import subprocess
import sys

import opt_einsum
import pytest
import torch

import tensormagic as tm
from tensormagic.compiler import search


def _grid(rows, cols, bond=2, phys=2):
    """<psi|psi> of a rows × cols PEPS: 2·rows·cols tensors."""
    ops, sizes = [], {}
    for bra in (False, True):
        h, v, name = ("H", "V", "B") if bra else ("h", "v", "A")
        for r in range(rows):
            for c in range(cols):
                idx = [f"p{r}{c}"] + ([f"{v}{r - 1}{c}"] if r else []) + \
                      ([f"{v}{r}{c}"] if r < rows - 1 else []) + ([f"{h}{r}{c - 1}"] if c else []) + \
                      ([f"{h}{r}{c}"] if c < cols - 1 else [])
                ops.append((f"{name}{r}{c}", idx))
                sizes.update({i: phys if i[0] == "p" else bond for i in idx})
    statement = "Z := " + "*".join(f"{n}[{','.join(idx)}]" for n, idx in ops)
    letters = {i: opt_einsum.get_symbol(k) for k, i in enumerate(sizes)}
    eq = ",".join("".join(letters[i] for i in idx) for _, idx in ops) + "->"
    shapes = [tuple(sizes[i] for i in idx) for _, idx in ops]
    return statement, eq, shapes


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = search._searched.__wrapped__

    def searched(key, seconds, trials):
        found = real(key, seconds, trials)
        calls.append(found)
        return found
    monkeypatch.setattr(search, "_searched", searched)
    return calls


def test_a_large_product_takes_the_searched_path(spy, monkeypatch):
    monkeypatch.setattr(search, "WORTH", 0)  # small sizes, so that the test is quick
    statement, eq, shapes = _grid(4, 3)
    assert len(shapes) == 24 == search.OPERANDS
    torch.manual_seed(0)
    xs = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    fn = tm.tensorgrad(statement)
    out = fn(*xs)
    assert len(spy) == 1 and spy[0] is not None and len(spy[0]) == len(shapes) - 1
    ref = opt_einsum.contract(eq, *xs, backend="torch")
    torch.testing.assert_close(out, ref)
    for got, want in zip(torch.autograd.grad(out, xs), torch.autograd.grad(ref, xs)):
        torch.testing.assert_close(got, want)


def test_fewer_operands_or_no_search_keep_opt_einsum(spy, monkeypatch):
    monkeypatch.setattr(search, "WORTH", 0)
    statement, _, shapes = _grid(3, 3)  # 18 operands
    tm.tensorgrad(statement)(*[torch.randn(s) for s in shapes])
    assert spy == []
    monkeypatch.setattr(search, "SECONDS", 0)
    statement, _, shapes = _grid(4, 3)
    tm.tensorgrad(statement)(*[torch.randn(s) for s in shapes])
    assert spy == []


def test_a_cheap_product_is_not_searched():
    statement, eq, shapes = _grid(4, 3)  # bond 2: a few million FLOPs
    letters = eq.split("->")[0].split(",")
    sizes = {ch: n for term, shape in zip(letters, shapes) for ch, n in zip(term, shape)}
    assert search.path([list(t) for t in letters], [], sizes) is None


def test_the_search_runs_once_per_product_and_shapes(monkeypatch):
    monkeypatch.setattr(search, "WORTH", 0)
    search._searched.cache_clear()
    statement, _, shapes = _grid(4, 3)
    xs = [torch.randn(s) for s in shapes]
    tm.tensorgrad(statement)(*xs)
    tm.tensorgrad(statement, name="again")(*xs)  # a new callable, the same product
    info = search._searched.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_the_same_product_gets_the_same_path_in_every_process():
    """String hashes (and so set orders) change between processes: the search must not."""
    code = ("import sys; sys.path.insert(0, 'tests'); from test_search import _grid; "
            "from tensormagic.compiler import search; search.WORTH = 0; search.TRIALS = 32; "
            "_, eq, shapes = _grid(4, 3, bond=3); terms = eq.split('->')[0].split(','); "
            "sizes = {c: n for t, s in zip(terms, shapes) for c, n in zip(t, s)}; "
            "print(search.path([list(t) for t in terms], [], sizes))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=root, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
             for seed in ("1", "2")}
    assert len(paths) == 1 and paths.pop().startswith("((")
