"""Scatter on the left (issue 20, item 2): an integer tensor in a left-hand subscript adds
the right side at the positions it gives, repeated ones accumulating: `H[tok[b], d] += X[b,d]`
into an existing H (an input), `S[seg[n], d] := X[n,d]` into zeros with the scattered dim's
size from sizes={"seg": K}. One row per form against plain torch (index_add_, scatter_add,
index_put with accumulate, bincount) in float64: the forward and the brute-force evaluator,
the gradients of every input (a gather of the incoming one), gradcheck and gradgradcheck,
forward mode against torch.func.jvp, the formulas evaluated as statements, and the Hessian.
"""
from dataclasses import dataclass, field

import pytest
import torch

import reference
from conftest import close, close_on_every_subset, make_tensor

import tensormagic as tm

F64 = torch.float64


@dataclass
class Row:
    id: str
    text: str
    shapes: dict                  # name -> shape, or ("int", high, shape) for an index tensor
    ref: object
    sizes: dict = None
    values: dict = field(default_factory=dict)

    def __str__(self):
        return self.id


TOK = torch.tensor([1, 3, 1, 1, 0, 3])  # repeated: their contributions accumulate
SEG = torch.tensor([0, 0, 2, 2, 2, 3, 0])

ROWS = [
    Row("embedding-gradient", "W[tok[b], d] += E[b, d]", {"W": (5, 3), "tok": ("int", 5, (6,)), "E": (6, 3)},
        lambda W, tok, E: W.index_add(0, tok, E), values={"tok": TOK}),
    Row("segment-sum", "S[seg[n], d] := X[n, d]", {"seg": ("int", 4, (7,)), "X": (7, 2)},
        lambda seg, X: torch.zeros(4, 2, dtype=F64).index_add(0, seg, X), sizes={"seg": 4}, values={"seg": SEG}),
    Row("segment-sum-scatter-add", "S[seg[n], d] := X[n, d]", {"seg": ("int", 4, (7,)), "X": (7, 2)},
        lambda seg, X: torch.zeros(4, 2, dtype=F64).scatter_add(0, seg[:, None].expand(7, 2), X),
        sizes={"seg": 4}, values={"seg": SEG}),
    Row("weighted-histogram", "h[bin[n]] := w[n]", {"bin": ("int", 5, (9,)), "w": (9,)},
        lambda bin, w: torch.zeros(5, dtype=F64).index_add(0, bin, w), sizes={"bin": 5}),  # (bincount:
    # no derivative; equal below)
    Row("two-index-tensors", "M[r[n], c[n]] += v[n]", {"M": (3, 4), "r": ("int", 3, (6,)), "c": ("int", 4, (6,)),
                                                       "v": (6,)},
        lambda M, r, c, v: M.index_put((r, c), v, accumulate=True),
        values={"r": torch.tensor([0, 2, 2, 1, 2, 0]), "c": torch.tensor([3, 3, 3, 0, 1, 3])}),
    Row("scatter-add-along-dim-1", "out[i, idx[i,j]] += src[i, j]",
        {"out": (3, 5), "idx": ("int", 5, (3, 4)), "src": (3, 4)},
        lambda out, idx, src: out.scatter_add(1, idx, src)),
    Row("middle-dim", "Y[b, idx[k], d] += X[b, k, d]", {"Y": (2, 4, 3), "idx": ("int", 4, (5,)), "X": (2, 5, 3)},
        lambda Y, idx, X: Y.index_add(1, idx, X), values={"idx": torch.tensor([3, 0, 3, 1, 3])}),
    Row("expression-scattered", "H[tok[b], d] := tanh(X[b, d]) * w[d]", {"tok": ("int", 5, (6,)), "X": (6, 3),
                                                                          "w": (3,)},
        lambda tok, X, w: torch.zeros(5, 3, dtype=F64).index_add(0, tok, torch.tanh(X) * w),
        sizes={"tok": 5}, values={"tok": TOK}),
    Row("scatter-then-loss", "S[seg[n], d] := X[n, d] * X[n, d]\nL := sin(S[k, d]) * S[k, d]",
        {"seg": ("int", 4, (7,)), "X": (7, 2)},
        lambda seg, X: (lambda S: (torch.sin(S) * S).sum())(torch.zeros(4, 2, dtype=F64).index_add(0, seg, X * X)),
        sizes={"seg": 4}, values={"seg": SEG}),
]
ids = str


def inputs(row):
    vals = {}
    for name, shape in row.shapes.items():
        if name in row.values:
            vals[name] = row.values[name].clone()
        elif shape[0] == "int":
            vals[name] = torch.randint(0, shape[1], shape[2])
        else:
            vals[name] = make_tensor(shape)
    return vals


def floats(vals):
    return [n for n, v in vals.items() if v.is_floating_point()]


def make(row, **kw):
    return tm.tensorgrad(row.text, sizes=row.sizes, **kw)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_forward_matches_torch_and_the_reference_evaluator(row):
    vals = inputs(row)
    fn = make(row)
    assert fn.inputs == tuple(row.shapes) == reference.inputs(row.text)
    assert fn.wrt == tuple(floats(vals))  # index tensors get no gradient
    want = row.ref(**vals)
    close(fn(**vals), want)
    close(reference.evaluate(row.text, vals, row.sizes)[fn.outputs[-1]], want)


@pytest.mark.parametrize("memory", ["high", "low"])
@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradients_of_every_subset_are_gathers(row, memory):
    vals = inputs(row)
    close_on_every_subset(lambda wrt: make(row, wrt=wrt, memory=memory), row.ref, vals, floats(vals))


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradcheck_gradgradcheck_and_forward_mode(row):
    vals = inputs(row)
    fn = make(row)
    names = floats(vals)

    def f(*args):
        return fn(**{**vals, **dict(zip(names, args))})

    def g(*args):
        return row.ref(**{**vals, **dict(zip(names, args))})

    args = tuple(vals[n].clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, args) and torch.autograd.gradgradcheck(f, args)
    primals = tuple(vals[n] for n in names)
    tangents = tuple(torch.randn_like(p) for p in primals)
    close(torch.func.jvp(f, primals, tangents)[1], torch.func.jvp(g, primals, tangents)[1])


@pytest.mark.parametrize("row", [r for r in ROWS if "\n" not in r.text], ids=ids)
def test_formulas_are_gathers_and_evaluate_to_the_gradient(row):
    vals = inputs(row)
    fn = make(row)
    theirs = {n: v.clone().requires_grad_(v.is_floating_point()) for n, v in vals.items()}
    ref = row.ref(**theirs)
    g = torch.randn_like(ref)
    want = dict(zip(fn.wrt, torch.autograd.grad(ref, [theirs[n] for n in fn.wrt], g)))
    out = fn.outputs[-1]
    for name, formula in fn.formulas.items():
        target = reference.statements(formula)[0]
        env = {**vals, "Δ" + out: g}
        got = reference.evaluate(formula.replace(" = ", " := ", 1), env, shapes={target.name: tuple(vals[name].shape)})
        close(got[target.name], want[name])


def test_formula_and_tangent_text():
    fn = tm.tensorgrad("H[tok[b], d] += X[b, d]")
    assert fn.formulas["X"] == "ΔX[b,d] = ΔH[tok[b],d]"
    assert fn.formulas["H"] == "ΔH_in[v,d] = ΔH[v,d]"
    assert fn.tangents["H"] == "dH[tok[b],d] += dX[b,d]"
    assert fn.statement == "H[tok[b],d] += X[b,d]"
    assert r"H_{\mathrm{tok}_{b},d}" in fn.latex()


def test_counting_histogram_needs_no_right_index():
    """h[bin[n]] := 1: the index inside the index tensor is sized by it; 1 is scattered once
    per entry."""
    b = torch.tensor([2, 0, 2, 2, 4])
    fn = tm.tensorgrad("h[bin[n]] := 1", sizes={"bin": 6})
    close(fn(b), torch.bincount(b, minlength=6).to(torch.get_default_dtype()))
    w = make_tensor((5,))
    close(tm.tensorgrad("h[bin[n]] := w[n]", sizes={"bin": 6})(b, w), torch.bincount(b, weights=w, minlength=6))


def test_scatter_runs_as_index_put_never_a_dense_one_hot():
    fn = tm.tensorgrad("W[tok[b], d] += E[b, d]")
    W, E = make_tensor((1000, 4)).requires_grad_(), make_tensor((3, 4)).requires_grad_()
    fn(W, torch.tensor([5, 999, 5]), E).sum().backward()
    assert "index_put" in fn.code and "einsum" not in fn.code and "eye" not in fn.code


def test_hessian_through_a_scatter():
    row = next(r for r in ROWS if r.id == "scatter-then-loss")
    vals = inputs(row)
    fn = make(row)
    H = fn.hessian(**vals)
    want = torch.func.hessian(lambda X: row.ref(vals["seg"], X))(vals["X"])
    close(H, want)
    v = make_tensor(vals["X"].shape)
    _, hv = torch.func.jvp(torch.func.grad(lambda X: row.ref(vals["seg"], X)), (vals["X"],), (v,))
    close(fn.hvp(vals["seg"], vals["X"], v={"X": v})["X"], hv)


def test_accumulating_scatter_hessian_and_hvp():
    tok, W = TOK, make_tensor((5, 3))
    fn = tm.tensorgrad("H[tok[b], d] += tanh(X[b, d])\nL := sin(H[v, d]) * W[v, d]", wrt="H X")
    H0, X = make_tensor((5, 3)), make_tensor((6, 3))

    def f(H, X):
        return (torch.sin(H.index_add(0, tok, torch.tanh(X))) * W).sum()

    got, want = fn.hessian(H0, tok, X, W), torch.func.hessian(f, argnums=(0, 1))(H0, X)
    for i, a in enumerate("HX"):
        for j, b in enumerate("HX"):
            close(got[(a, b)], want[i][j])


# ----------------------------------------------------------------------------
# misuse


@pytest.mark.parametrize("text, error, at, words", [
    ("H[tok[b], d] += X[tok[b], d]", tm.NotationValueError, "tok[b], d]", ("'tok' scatters on the left",)),
    ("H[tok[b], d] += tok[b] * X[b, d]", tm.NotationValueError, "tok[b] *", ("'tok' scatters",)),
    ("H[tok[b], d] = X[b, d]", tm.NotationSyntaxError, "= X", ("adds", "+=")),
    ("t[b] := u[b]\nH[t[b], d] += X[b, d]", tm.NotationValueError, "t[b], d]", ("'t'", "input")),
    ("H[tok[b+1], d] += X[b, d]", tm.NotationSyntaxError, "b+1", ("plain indices",)),
    ("H[tok[b], 0] += X[b, d]", tm.NotationSyntaxError, "0]", ("integer tensor that scatters",)),
], ids=["index-read-on-the-right", "index-as-a-value-on-the-right", "overwrite", "computed-index",
        "shifted-index-inside", "number-on-the-left"])
def test_errors(text, error, at, words):
    with pytest.raises(error) as info:
        tm.tensorgrad(text)
    e = info.value
    for w in words:
        assert w in e.message, e.message
    line = text.splitlines()[(e.lineno or 1) - 1]
    assert e.col == line.rindex(at), e.short()


@pytest.mark.parametrize("call, words", [
    (lambda: tm.tensorgrad("S[seg[n], d] := X[n, d]")(torch.tensor([0, 1]), make_tensor((2, 3))),
     ("sizes={'seg': n}", "--sizes seg=n")),
    (lambda: tm.tensorgrad("W[tok[b], d] += E[b, d]")(make_tensor((4, 2)), torch.tensor([1, 4]), make_tensor((2, 2))),
     ("'tok' holds 4", "size 4")),
    (lambda: tm.tensorgrad("W[tok[b], d] += E[b, d]")(make_tensor((4, 2)), torch.tensor([1, -1]), make_tensor((2, 2))),
     ("'tok' holds -1",)),
    (lambda: tm.tensorgrad("W[tok[b], d] += E[b, d]")(make_tensor((4, 2)), torch.tensor([1.0, 2.0]),
                                                     make_tensor((2, 2))), ("integers",)),
], ids=["no-size-for-the-scattered-dim", "index-too-large", "index-negative", "float-index"])
def test_call_time_errors_name_the_index_tensor(call, words):
    with pytest.raises(tm.NotationValueError) as info:
        call()
    for w in words:
        assert w in str(info.value), str(info.value)


def test_check_and_export(tmp_path):
    import importlib.util
    fn = tm.tensorgrad("S[seg[n], d] := X[n, d] * w[d]", sizes={"seg": 4})
    assert fn.check().ok
    seg, X, w = SEG, make_tensor((7, 2)), make_tensor((2,))
    want = fn(seg, X, w)
    path = tmp_path / "scatter_ops.py"
    fn.export(str(path))
    spec = importlib.util.spec_from_file_location("scatter_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    close(module.S_fn(seg, X, w), want)
