"""Padding (issue 20, item 3): pad={"x": p} reads x as zero up to p places outside its bounds
at its shifted subscripts, which may then subtract a constant (x[i+a-1]); plain subscripts
read it as it is. One row per form, against torch.nn.functional's padded operations in
float64: the forward, the gradients of every input, gradcheck and gradgradcheck, the
brute-force evaluator (reference.py pads too), the derived formulas evaluated as statements
(δ is Kronecker's there: zero where the subscript reaches outside), and the Hessian.
"""
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import reference
from conftest import close, close_on_every_subset, make_tensor

import tensormagic as tm

F64 = torch.float64


@dataclass
class Row:
    id: str
    text: str
    shapes: dict
    ref: object
    pad: dict
    sizes: dict = None

    def __str__(self):
        return self.id


def _same2d(x, w, bias):
    return F.conv2d(x, w, bias, padding="same")


ROWS = [
    Row("conv1d-same", "y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]", {"x": (2, 3, 6), "w": (4, 3, 3)},
        lambda x, w: F.conv1d(x, w, padding=1), {"x": 1}),
    Row("conv1d-pad2-k5", "y[b,o,i] := x[b,c,i+a-2] * w[o,c,a]", {"x": (2, 2, 7), "w": (3, 2, 5)},
        lambda x, w: F.conv1d(x, w, padding=2), {"x": 2}),
    Row("conv1d-full", "y[b,o,i] := x[b,c,i+a-2] * w[o,c,a]", {"x": (1, 2, 5), "w": (2, 2, 3)},
        lambda x, w: F.conv1d(x, w, padding=2), {"x": 2}),
    Row("conv1d-stride2", "y[b,o,i] := x[b,c,2*i+a-1] * w[o,c,a]", {"x": (2, 2, 9), "w": (3, 2, 3)},
        lambda x, w: F.conv1d(x, w, stride=2, padding=1), {"x": 1}),
    Row("conv2d-same-bias", "y[b,o,i,j] := x[b,c,i+a-1,j+d-1] * w[o,c,a,d] + bias[o]",
        {"x": (1, 2, 5, 4), "w": (3, 2, 3, 3), "bias": (3,)}, _same2d, {"x": 1}),
    Row("depthwise-same", "y[b,c,i] := x[b,c,i+a-1] * w[c,a]", {"x": (2, 3, 6), "w": (3, 3)},
        lambda x, w: F.conv1d(x, w[:, None], padding=1, groups=3), {"x": 1}),
    Row("backward-difference", "d[i] := x[i] - x[i-1]", {"x": (6,)},
        lambda x: x - F.pad(x, [1, 0])[:-1], {"x": 1}),
    Row("avgpool-counting-pad", "m[b,i] := mean[a](x[b,2*i+a-1])", {"x": (2, 7)},
        lambda x: F.avg_pool1d(x[:, None], 3, 2, padding=1)[:, 0], {"x": 1}, {"a": 3}),
    Row("conv-then-tanh-loss", "y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]\nL := tanh(y[b,o,i]) * y[b,o,i]",
        {"x": (2, 2, 5), "w": (2, 2, 3)}, lambda x, w: (torch.tanh(F.conv1d(x, w, padding=1)) *
                                                         F.conv1d(x, w, padding=1)).sum(), {"x": 1}),
]
ids = str


def inputs(row):
    return {n: make_tensor(s) for n, s in row.shapes.items()}


def make(row, **kw):
    return tm.tensorgrad(row.text, pad=row.pad, sizes=row.sizes, **kw)


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_forward_matches_torch_and_the_reference_evaluator(row):
    vals = inputs(row)
    want = row.ref(**vals)
    close(make(row)(**vals), want)
    outs = reference.evaluate(row.text, vals, row.sizes, pad=row.pad)
    close(outs[reference.outputs(row.text)[-1]], want)


@pytest.mark.parametrize("memory", ["high", "low"])
@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradients_of_every_subset(row, memory):
    close_on_every_subset(lambda wrt: make(row, wrt=wrt, memory=memory), row.ref, inputs(row),
                          list(row.shapes))


@pytest.mark.parametrize("row", ROWS, ids=ids)
def test_gradcheck_and_gradgradcheck(row):
    vals = inputs(row)
    fn = make(row)
    args = tuple(vals[n].requires_grad_() for n in fn.inputs)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("row", [r for r in ROWS if "\n" not in r.text and "mean" not in r.text], ids=ids)
def test_formulas_show_the_padding_and_evaluate_to_the_gradient(row):
    """Δx reads δ at the shifted subscript, which reaches outside x: evaluated with δ as
    Kronecker's (zero there), each formula is the gradient."""
    vals = inputs(row)
    fn = make(row)
    theirs = {n: v.clone().requires_grad_() for n, v in vals.items()}
    ref = row.ref(**theirs)
    g = torch.randn_like(ref)
    want = dict(zip(fn.inputs, torch.autograd.grad(ref, [theirs[n] for n in fn.inputs], g)))
    out = fn.outputs[-1]
    for name, formula in fn.formulas.items():
        target = reference.statements(formula)[0]
        env = {**vals, "Δ" + out: g}
        cell = formula.replace(" = ", " := ", 1)
        got = reference.evaluate(cell, env, row.sizes, {target.name: tuple(vals[name].shape)}, row.pad)
        close(got[target.name], want[name])
    padded = [f for n, f in fn.formulas.items() if n in row.pad]
    assert padded and all("-" in f.split("δ[")[-1] for f in padded if "δ[" in f), fn.formulas


def test_formula_text():
    fn = tm.tensorgrad("y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]", pad={"x": 1})
    assert fn.formulas["x"] == "Δx[b,c,iʹ] = Δy[b,o,i] * w[o,c,a] * δ[iʹ,i+a-1]"
    assert fn.formulas["w"] == "Δw[o,c,a] = x[b,c,i+a-1] * Δy[b,o,i]"
    assert "x[b,c,i+a-1]" in fn.statement and "x padded by 1" in str(fn)
    assert r"x_{b,c,i+a-1}" in fn.latex() and "<mo>−</mo><mn>1</mn>" in fn._repr_html_()


def test_same_size_output_and_plain_subscripts_read_as_they_are():
    x, w = make_tensor((7,)), make_tensor((3,))
    fn = tm.tensorgrad("y[i] := x[i+a-1] * w[a] + x[i]", pad={"x": 1})
    close(fn(x, w), F.conv1d(x[None, None], w[None, None], padding=1)[0, 0] + x)


@pytest.mark.parametrize("row", [r for r in ROWS if r.id in ("conv1d-same", "conv-then-tanh-loss", "conv2d-same-bias")],
                         ids=ids)
def test_hessian_of_a_padded_convolution(row):
    vals = inputs(row)
    text = row.text if row.text.startswith("y") and "\n" in row.text else None
    if text is None:  # weight the output into a scalar loss
        U = make_tensor(tuple(row.ref(**vals).shape))
        last = reference.statements(row.text)[-1]
        sub = f"[{','.join(last.indices)}]"
        text = row.text + f"\nΛ := {last.name}{sub} * Ω{sub}"
        vals = {**vals, "Ω": U}
        loss = lambda **kw: (row.ref(**{k: v for k, v in kw.items() if k != "Ω"}) * U).sum()  # noqa: E731
    else:
        loss = row.ref
    names = list(row.shapes)
    fn = tm.tensorgrad(text, pad=row.pad, wrt=names)
    H = fn.hessian(**vals)
    want = torch.func.hessian(lambda *a: loss(**{**vals, **dict(zip(names, a))}),
                              argnums=tuple(range(len(names))))(*(vals[n] for n in names))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            close(H[(a, b)], want[i][j])


# ----------------------------------------------------------------------------
# misuse


@pytest.mark.parametrize("text, pad, error, at, words", [
    ("y[i] := x[i-1]", None, tm.NotationSyntaxError, "i-1", ("only add", "pad={'x': 1}")),
    ("y[i] := x[i+a-1] * w[a]", {"w": 1}, tm.NotationSyntaxError, "i+a-1", ("before the start of 'x'",)),
    ("y[i] := x[i+a-2] * w[a]", {"x": 1}, tm.NotationValueError, "i+a-2", ("2 places before", "padded by 1")),
    ("y[i] := x[i] * 2", {"x": 1}, tm.NotationValueError, "x[i]", ("no shifted subscript",)),
    ("y[i] := x[i+a] * w[a]", {"q": 1}, tm.NotationValueError, None, ("'q'", "does not read")),
], ids=["subtract-unpadded", "pad-the-other-tensor", "beyond-the-padding", "pad-on-unshifted-index", "pad-unknown"])
def test_errors(text, pad, error, at, words):
    with pytest.raises(error) as info:
        tm.tensorgrad(text, pad=pad)
    e = info.value
    for w in words:
        assert w in e.message, e.message
    assert "\n" not in e.message
    if at is not None:
        assert e.col == text.index(at), (e.col, e.short())


@pytest.mark.parametrize("pad, error", [({"x": 0}, ValueError), ({"x": -1}, ValueError), ({"x": "1"}, ValueError),
                                        ([("x", 1)], TypeError)])
def test_pad_values(pad, error):
    with pytest.raises(error, match="pad"):
        tm.tensorgrad("y[i] := x[i+a-1] * w[a]", pad=pad)


def test_pickle_keeps_the_padding():
    import pickle
    fn = tm.tensorgrad("y[i] := x[i+a-1] * w[a]", pad={"x": 1})
    again = pickle.loads(pickle.dumps(fn))
    x, w = make_tensor((5,)), make_tensor((3,))
    close(again(x, w), fn(x, w))


def test_check_and_export(tmp_path):
    import importlib.util
    fn = tm.tensorgrad("y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]", pad={"x": 1})
    assert fn.check().ok
    x, w = make_tensor((2, 3, 6)), make_tensor((4, 3, 3))
    want = fn(x, w)
    path = tmp_path / "padded_ops.py"
    fn.export(str(path))
    spec = importlib.util.spec_from_file_location("padded_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    close(module.y_fn(x, w), want)
