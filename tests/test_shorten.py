"""A long cell's display: repeated sub-expressions named once, in every view (text, LaTeX,
MathML), with the same definitions; the shown text still computes the derived gradient."""
import re

import pytest

import tensormagic as tm
from tensormagic.language import printer
from tensormagic.views import naming
from tensormagic.calculus.derive import Formula
from tensormagic.language.ir import Mul, Tensor, children, with_children
from tensormagic.views.readable import cell_names


def deep(depth, w="W", b="b", v="w"):
    x = f"x[i]*{w}[i,j]"
    for k in range(depth):
        x = f"tanh({x}) * {v}[j]" if k % 2 else f"sigmoid({x} + {b}[j])"
    return tm.tensorgrad(f"y[j] := {x}")


@pytest.fixture(scope="module")
def deep30():
    return deep(30)


def _expanded(e, definitions):
    """e with each defined name replaced by its definition, products flattened back."""
    if isinstance(e, Tensor) and e.name in definitions:
        d = definitions[e.name]
        assert d.target.indices == e.indices  # a name is used with the indices it is defined on
        return _expanded(d.rhs, definitions)
    kids = tuple(_expanded(c, definitions) for c in children(e))
    if isinstance(e, Mul):
        kids = tuple(f for c in kids for f in (c.factors if isinstance(c, Mul) else (c,)))
    return with_children(e, kids) if kids else e


@pytest.mark.parametrize("depth", [6, 10, 20])
def test_the_definitions_substituted_back_give_the_full_formula(depth):
    fn = deep(depth)
    shown = fn._shown
    assert shown.definitions, "a deep cell names its repeated sub-expressions"
    definitions = {d.target.name: d for d in shown.definitions}
    for f, full in zip(shown.formulas, fn.derivation):
        back = Formula(f.name, f.target, _expanded(f.rhs, definitions), f.of_input)
        # the same text but for the primes that tell summed indices apart
        assert printer.formula_text(back).replace("ʹ", "") == printer.formula_text(full).replace("ʹ", "")


@pytest.mark.parametrize("depth", [6, 10])
def test_the_checker_reads_the_shown_text_with_its_definitions(depth):
    fn = deep(depth)
    full = {f.name: printer.formula_text(f) for f in fn.derivation if f.of_input}
    for name, shown in fn.formulas.items():
        assert "\nwhere " in shown and len(shown) < len(full[name])
    report = fn.check(formulas=fn.formulas)  # each shown text evaluated, beside finite differences
    assert report.ok and len(report.results) == 4, str(report)
    first, _, where = fn.formulas["b"].partition("\n")
    head, body = first.split(" = ", 1)
    broken = dict(fn.formulas, b=f"{head} = 2 * ({body})\n{where}")  # a wrong formula fails
    assert where.startswith("where ") and not fn.check(formulas=broken)["b"].ok


def test_names_avoid_the_cells_names():
    fn = deep(8, w="A", b="B", v="C")
    names = {d.target.name for d in fn._shown.definitions}
    assert names and not names & (cell_names(fn.cell.statements) | {"A", "B", "C"})
    assert fn.check(formulas=fn.formulas).ok


def test_each_formula_lists_only_the_definitions_it_uses():
    fn = deep(10)
    dw = fn.formulas["w"]
    used = fn._shown.used_by(next(f for f in fn._shown.formulas if f.name == "w"))
    assert 0 < len(used) < len(fn._shown.definitions)
    assert [line.split("[")[0].replace("where", "").strip() for line in dw.splitlines()[1:]] == \
        [d.target.name for d in used]


@pytest.mark.parametrize("text", [
    "y[j] := tanh(sigmoid(x[i]*W[i,j] + b[j])) * w[j]",
    "C[i,k] := A[i,j] * B[j,k]",
    "y[i] := x[i] / sqrt(sum[j](x[j]*x[j]))",
    "p[i] := exp(s[i]) / sum[j](exp(s[j]))",
])
def test_small_cells_are_shown_as_before(text):
    fn = tm.tensorgrad(text)
    assert fn._shown.definitions == () and fn._shown.formulas == fn.derivation
    assert "where" not in str(fn) and "where" not in fn.latex() and "where" not in fn._repr_html_()
    assert fn.formulas == {f.name: printer.formula_text(f) for f in fn.derivation if f.of_input}


def test_a_deep_cell_is_small_in_every_view(deep30):
    text, latex, html = str(deep30), deep30.latex(), deep30._repr_html_()
    names = [d.target.name for d in deep30._shown.definitions]
    assert len(text) < 3_500 and len(latex) < 6_000 and len(html) < 35_000
    assert "<math" in html and "<pre" not in html  # MathML, not the plain-text fallback
    for view in (text, latex, html):
        assert "where" in view
    assert all(f"{n}[j] = " in text for n in names)
    assert all(re.search(rf"{n}\}}?_\{{j\}}\s*&=", latex) for n in names)  # A_{j}, \mathrm{A2}_{j}
    statement, *lines = latex.split(" \\\\ ")
    assert not any("\\ldots" in line for line in lines)  # no formula fell back to the compact form
    # the long statement does, and keeps its free index: no Σ over j
    assert "\\ldots" in statement and "\\sum_{j}" not in statement


@pytest.mark.parametrize("depth, limit", [(10, 1_200), (20, 2_200)])
def test_the_display_grows_with_depth_not_its_square(depth, limit):
    fn = deep(depth)
    assert len(str(fn)) < limit
    assert len(fn._repr_html_()) < 12 * limit
    assert len(fn.latex()) < 2 * limit


def test_as_cell_puts_definitions_first():
    shown = "Δx[i] = A[j] * W[i,j]\nwhere A[j] = sigmoid(x[i] * W[i,j])\n      B[j] = A[j] * 2"
    assert printer.as_cell(shown) == ("A[j] := sigmoid(x[i] * W[i,j])\nB[j] := A[j] * 2\n"
                                     "Δx[i] := A[j] * W[i,j]")
    assert printer.as_cell("ΔB[j] = x[j]") == "ΔB[j] := x[j]"
    assert printer.as_cell("ΔB[j] := x[j]") == "ΔB[j] := x[j]"


def test_a_check_of_a_deep_cell_shows_the_short_formulas(deep30):
    report = deep30.check(max_entries=8)
    html = report._repr_html_()
    assert len(html) < 120_000 and html.count("<mtext>where</mtext>") == 4
    assert all("\nwhere " in r.formula and len(r.formula) < 2_500 for r in report.results)


CELLS = [
    "y[i] := x[i] / sqrt(sum[j](x[j]*x[j]))",
    "p[i] := exp(s[i]) / sum[j](exp(s[j]))",
    "y[b,i] := tanh(x[b,2*i+a] * w[a]) * tanh(x[b,2*i+a] * w[a]) + v[b,0] + W[tok[b],i]",
    "m[i] := max[j](A[i,j] * x[j]) + logsumexp[j](A[i,j])",
    "s := exp(conj(z[i]) * M[i,j] * z[j]) * z[k] * z[k]",
    "H[b,o] := tanh(X[b,i] * W[i,o] + c[o])\nY[b,p] := sigmoid(H[b,o] * V[o,p]) * sigmoid(H[b,o] * V[o,p])",
    "y[i] := relu(x[i] * x[i] - 1) * max(x[i], 0.5) + x[i] * sum[j](x[j])",
]


@pytest.mark.parametrize("text", CELLS)
def test_naming_everything_keeps_every_formula(text, monkeypatch):
    """With every cell counted long, whatever is named still gives the derived formula back,
    and the shown text still computes the right gradient."""
    monkeypatch.setattr(naming, "LONG_NODES", 0)
    monkeypatch.setattr(naming, "_MIN_NODES", 2)
    sizes = {"a": 2} if "2*i+a" in text else None
    fn = tm.tensorgrad(text, sizes=sizes)
    shown = fn._shown
    definitions = {d.target.name: d for d in shown.definitions}
    for f, full in zip(shown.formulas, fn.derivation):
        back = Formula(f.name, f.target, _expanded(f.rhs, definitions), f.of_input)
        assert printer.formula_text(back).replace("ʹ", "") == printer.formula_text(full).replace("ʹ", "")
    assert shown.definitions
    full = {f.name: printer.formula_text(f) for f in fn.derivation if f.of_input}
    # some formulas are not statements (δ, 𝟙, complex, an intermediate's Δ): those fail alike
    as_shown, as_derived = fn.check(formulas=fn.formulas), fn.check(formulas=full)
    assert [r.ok for r in as_shown.results] == [r.ok for r in as_derived.results], str(as_shown)
    for view in (str(fn), fn.latex(), fn._repr_html_()):  # every view shows the definitions
        assert "where" in view
