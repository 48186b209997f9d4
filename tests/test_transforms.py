"""The transform matrix: every row of the language table (test_engine_language.ROWS: reductions,
max/min, shifted, strided and pooling windows, gathers, fixed indices, ties), of the
recognised forms (test_lowering.ROWS: softmax, cross-entropy, layer norm, GELU, SiLU, each run
as its fused primitive), of the scatters on the left (test_engine_scatter.ROWS) and of the
padded reads (test_engine_padding.ROWS) under every torch transform, against the same
transform of the row's plain torch reference, in float64.

Transforms: vmap over the data (in_dims 0, and in_dims 1 / the last dim), vmap over batched
index tensors (with the data batched too), grad, jacrev, jacfwd, hessian, vmap(grad)
(per-sample gradients), jvp, forward-mode dual numbers, and torch.compile(fullgraph=True)
with the default backend (values and gradients). A batch holds the row's own inputs (its ties,
its repeated tokens) as its first sample.
"""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import tensormagic as tm
import test_engine_padding
import test_engine_scatter
from test_engine_language import ROWS, Row, make_inputs
from test_lowering import ROWS as LOWERED

B = 3  # samples in a batch


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


class Case:
    """One row, its inputs, and the two functions compared: ours and the torch reference, each
    taking the floating inputs positionally, then the index tensors."""

    def __init__(self, row):
        self.row = row
        self.vals = make_inputs(row)
        self.fn = tm.tensorgrad(row.text, wrt=row.wrt, sizes=row.sizes, pad=PADS.get(row.id))
        self.floats = [n for n in self.fn.inputs if self.vals[n].is_floating_point()]
        self.ints = [n for n in self.fn.inputs if not self.vals[n].is_floating_point()]
        gen = torch.Generator().manual_seed(7)
        out = row.ref(**self.vals)
        self.cotangent = torch.randn(out.shape, dtype=out.dtype, generator=gen)

    def ours(self, *args):
        return self.fn(**self._named(args))

    def theirs(self, *args):
        return self.row.ref(**self._named(args))

    def _named(self, args):
        return {**self.vals, **dict(zip(self.floats + self.ints, args))}

    def args(self):
        return [self.vals[n] for n in self.floats + self.ints]

    def scalar(self, f):
        """A scalar of f's output (for grad and hessian): its inner product with a cotangent."""
        return lambda *args: (f(*args) * self.cotangent).sum()

    def batch(self, names, dim=0):
        """B samples of each named input stacked along dim, the row's own values first."""
        out = []
        for n in names:
            draws = [self.vals[n]] + [make_inputs(self.row)[n] if n not in self.row.values
                                      else self._varied(n, k) for k in range(1, B)]
            out.append(torch.stack(draws, dim=min(dim, draws[0].dim())))
        return out

    def _varied(self, n, k):
        """Another sample of a fixed input: permuted entries keep its ties and repeats."""
        v = self.vals[n].reshape(-1)
        perm = torch.randperm(v.numel(), generator=torch.Generator().manual_seed(k))
        return v[perm].reshape(self.vals[n].shape)


PADS = {f"padded-{r.id}": r.pad for r in test_engine_padding.ROWS}
SCATTERS = {f"scatter-{r.id}": Row(f"scatter-{r.id}", r.text, r.shapes, r.ref, r.sizes, values=r.values)
            for r in test_engine_scatter.ROWS}
PADDED = {f"padded-{r.id}": Row(f"padded-{r.id}", r.text, r.shapes, r.ref, r.sizes) for r in test_engine_padding.ROWS}
CASES = {row.id: row for row in ROWS} | {f"lowered-{row.id}": row for row in LOWERED} | SCATTERS | PADDED
GATHERING = [key for key, row in CASES.items() if any(isinstance(s, tuple) and s and s[0] == "int"
                                           for s in row.shapes.values())]


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    torch.manual_seed(0)
    return Case(CASES[request.param])


@pytest.fixture(params=GATHERING, scope="module")
def gathering(request):
    torch.manual_seed(0)
    return Case(CASES[request.param])


def _vmapped(f, case, batched, dims):
    """vmap of f over the batched inputs (the others fixed), at these in_dims."""
    names = case.floats + case.ints
    fixed = {n: case.vals[n] for n in names if n not in batched}

    def g(*bs):
        values = {**fixed, **dict(zip(batched, bs))}
        return f(*[values[n] for n in names])
    return vmap(g, in_dims=dims)


def test_vmap_over_the_data(case):
    xs = case.batch(case.floats)
    dims = (0,) * len(xs)
    _close(_vmapped(case.ours, case, case.floats, dims)(*xs),
           _vmapped(case.theirs, case, case.floats, dims)(*xs))


def test_vmap_over_another_dim(case):
    """in_dims 1 (the last dim for a vector), and a mix: the first input batched at 1."""
    xs = case.batch(case.floats, dim=1)
    dims = tuple(min(1, case.vals[n].dim()) for n in case.floats)
    _close(_vmapped(case.ours, case, case.floats, dims)(*xs),
           _vmapped(case.theirs, case, case.floats, dims)(*xs))


def test_vmap_over_index_tensors(gathering):
    """The rows that gather: the index tensors batched, with the first floating input."""
    case = gathering
    names = case.ints + case.floats[:1]
    xs = case.batch(names)
    dims = (0,) * len(xs)
    _close(_vmapped(case.ours, case, names, dims)(*xs),
           _vmapped(case.theirs, case, names, dims)(*xs))


def _argnums(case):
    return tuple(range(len(case.floats)))


def test_grad(case):
    got = grad(case.scalar(case.ours), argnums=_argnums(case))(*case.args())
    want = grad(case.scalar(case.theirs), argnums=_argnums(case))(*case.args())
    for g, w in zip(got, want):
        _close(g, w)


@pytest.mark.parametrize("jacobian", [jacrev, jacfwd], ids=["jacrev", "jacfwd"])
def test_jacobian(case, jacobian):
    _close(jacobian(case.ours)(*case.args()), jacobian(case.theirs)(*case.args()))


def test_hessian(case):
    _close(hessian(case.scalar(case.ours))(*case.args()), hessian(case.scalar(case.theirs))(*case.args()))


def test_per_sample_gradients(case):
    """vmap(grad): every input batched (index tensors too), each sample's own gradients."""
    names = case.floats + case.ints
    xs = case.batch(names)
    dims = (0,) * len(xs)
    got = _vmapped(grad(case.scalar(case.ours), argnums=_argnums(case)), case, names, dims)(*xs)
    want = _vmapped(grad(case.scalar(case.theirs), argnums=_argnums(case)), case, names, dims)(*xs)
    for g, w in zip(got, want):
        _close(g, w)


def _tangents(case):
    gen = torch.Generator().manual_seed(11)
    return [torch.randn(case.vals[n].shape, dtype=case.vals[n].dtype, generator=gen) for n in case.floats]


def test_jvp(case):
    n = len(case.floats)
    args = case.args()

    def split(f):
        return lambda *xs: f(*xs, *args[n:])
    got = jvp(split(case.ours), tuple(args[:n]), tuple(_tangents(case)))
    want = jvp(split(case.theirs), tuple(args[:n]), tuple(_tangents(case)))
    _close(got[0], want[0])
    _close(got[1], want[1])


def test_forward_mode_dual_numbers(case):
    n = len(case.floats)
    args = case.args()
    with fwAD.dual_level():
        duals = [fwAD.make_dual(a, t) for a, t in zip(args[:n], _tangents(case))]
        got = fwAD.unpack_dual(case.ours(*duals, *args[n:])).tangent
    want = jvp(lambda *xs: case.theirs(*xs, *args[n:]), tuple(args[:n]), tuple(_tangents(case)))[1]
    _close(got, want)


def test_compile_fullgraph(case):
    """torch.compile(fullgraph=True), the default backend (inductor): values and gradients."""
    torch._dynamo.reset()
    compiled = torch.compile(case.ours, fullgraph=True)
    n = len(case.floats)
    mine = [a.detach().clone().requires_grad_() for a in case.args()[:n]]
    theirs = [a.detach().clone().requires_grad_() for a in case.args()[:n]]
    ints = case.args()[n:]
    got, want = compiled(*mine, *ints), case.theirs(*theirs, *ints)
    _close(got, want)
    g = torch.autograd.grad((got * case.cotangent).sum(), mine)
    w = torch.autograd.grad((want * case.cotangent).sum(), theirs)
    for a, b in zip(g, w):
        _close(a, b)


# -- gathers out of range: a ValueError in eager mode, an error (never a read elsewhere) under
# vmap and torch.compile, where the values cannot be inspected before use
EMBED = "E[b,d] := W[tok[b], d]"


@pytest.mark.parametrize("bad", [5, -1], ids=["too-large", "negative"])
def test_out_of_range_tokens_are_refused_under_every_transform(bad):
    fn = tm.tensorgrad(EMBED)
    W = torch.randn(5, 3, dtype=torch.float64)
    tok = torch.tensor([[0, 1, 2], [1, bad, 0]])
    with pytest.raises(tm.NotationValueError, match="index tensor 'tok' holds"):
        fn(W, tok[1])
    with pytest.raises((IndexError, RuntimeError), match="out of (bounds|range)"):
        vmap(fn, in_dims=(None, 0))(W, tok)
    with pytest.raises(Exception, match="out of (bounds|range)"):
        torch.compile(fn, fullgraph=True)(W, tok[1])
    torch._dynamo.reset()


def test_valid_tokens_under_vmap_and_compile_are_not_moved():
    fn = tm.tensorgrad(EMBED)
    W = torch.randn(5, 3, dtype=torch.float64)
    tok = torch.tensor([[0, 4, 2], [4, 4, 0]])
    _close(vmap(fn, in_dims=(None, 0))(W, tok), W[tok])
    _close(torch.compile(fn, fullgraph=True)(W, tok[0]), W[tok[0]])
    torch._dynamo.reset()
