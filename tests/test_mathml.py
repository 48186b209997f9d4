"""The formulas as MathML (offline math): well-formed, complete, capped."""
import xml.etree.ElementTree as ET

import pytest

import tensormagic as tm
from tensormagic.views import mathml

M = "{http://www.w3.org/1998/Math/MathML}"


def parse(html):
    return ET.fromstring(html.replace("<math>", f'<math xmlns="{M[1:-1]}">'))


def test_statement_and_every_formula_are_rows_of_one_table():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    root = parse(fn._repr_html_())
    rows = list(root.iter(f"{M}mtr"))
    assert len(rows) == 1 + len(fn.derivation)
    text = "".join(root.itertext())
    assert ":=" in text and "∑" in text and text.count("Δ") >= 4
    subs = ["".join(el.itertext()) for el in root.iter(f"{M}msub")]
    assert "Bij" in subs and "Cjk" in subs and "Dll" in subs


def test_language_ii_and_functions_render():
    for text in ["p[b,i] := exp(x[b,i] - logsumexp[j](x[b,j]))", "y[i] := x[2*i+a] * w[a]",
                 "e[b,d] := W[tok[b], d]", "m[i] := max(x[i], y[i]) / sqrt(abs(x[i]))",
                 "s := conj(z[i]) * z[i] - x[i,0]"]:
        root = parse(tm.tensorgrad(text)._repr_html_())
        assert list(root.iter(f"{M}mtr"))


def test_huge_cells_fall_back_to_plain_text(monkeypatch):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    monkeypatch.setattr(mathml, "MAX_CHARS", 50)
    html = fn._repr_html_()
    assert html.startswith('<pre class="tensormagic-math">') and "ΔB[i,j]" in html


# -- the same readable math as the LaTeX view (readable.py) ----------------------------------
SOFTMAX = "Z[b] := sum[j](exp(x[b,j]))\np[b,i] := exp(x[b,i]) / Z[b]"
CROSS_ENTROPY = "p[b,i] := exp(x[b,i]) / sum[j](exp(x[b,j]))\nL := -sum[b](log(p[b,t[b]]))"
SQUARED = "s := (1/Z)**2 * x[i] * x[i] * x[i]"
TANH = "y[i] := tanh(W[i,j]*x[j])"
RELU = "H[b,o] := relu(X[b,i]*W[i,o])\nL := (H[b,o]*V[o] - T[b])**2"
LSE = "L := (logsumexp[j](x[j]) - x[k]) * (logsumexp[j](x[j]) + y[k])"
NORM = "n[i] := x[i] / sqrt(x[j]*x[j])"


def rows(fn):
    """{left side's text: the row's <mtd> on the right} of the cell's MathML table."""
    out = {}
    for row in parse(fn._repr_html_()).iter(f"{M}mtr"):
        left, right = row.findall(f"{M}mtd")
        out["".join(left.itertext())] = right
    return out


def flat(el):
    return "".join(el.itertext())


def fractions(el):
    return [(flat(top), bottom) for top, bottom in (list(f) for f in el.iter(f"{M}mfrac"))]


def powers(el):
    return [(flat(base), flat(exp)) for base, exp in (list(p) for p in el.iter(f"{M}msup"))]


def nested(el, outer, inner):
    return any(list(o.iter(f"{M}{inner}"))[1:] if inner == outer else list(o.iter(f"{M}{inner}"))
               for o in el.iter(f"{M}{outer}"))


@pytest.mark.parametrize("cell", [SOFTMAX, CROSS_ENTROPY, SQUARED, TANH, RELU, LSE, NORM])
def test_mathml_has_the_structure_of_the_latex(cell):
    """Fractions, powers, roots, sums, brackets and indicators: as many in either view."""
    fn = tm.tensorgrad(cell)
    latex, html = fn.latex(), fn._repr_html_()
    for tex, tag in [("\\frac", "<mfrac>"), ("^{", "<msup>"), ("\\sqrt", "<msqrt>"),
                     ("\\sum", "∑"), ("\\left(", "<mo>(</mo>"), ("\\mathbb{1}", "𝟙")]:
        assert latex.count(tex) == html.count(tag), (tex, latex, html)


@pytest.mark.parametrize("cell, row, base", [(SOFTMAX, "ΔZb", "Zb"), (CROSS_ENTROPY, "Δxbi", "∑j")])
def test_a_squared_normaliser_is_one_over_z_squared(cell, row, base):
    """(1/Z)² is shown 1/Z²: Z² below a fraction bar, never a fraction raised to a power."""
    right = rows(tm.tensorgrad(cell))[row]
    squared = [(top, bottom) for top, bottom in fractions(right)
               if any(base in b and e == "2" for b, e in powers(bottom))]
    assert squared, ET.tostring(right, encoding="unicode")
    assert not nested(right, "msup", "mfrac") and not nested(right, "mfrac", "mfrac")


def test_repeated_factors_are_powers_and_cancel():
    table = rows(tm.tensorgrad(SQUARED))
    (top, bottom), = fractions(table["s"])
    assert top == "xi3" and powers(bottom) == [("Z", "2")]
    (top, bottom), = fractions(table["ΔZ"])
    assert top.endswith("Δsxi3") and powers(bottom) == [("Z", "3")]  # x_i³ Z⁻² Z⁻¹
    (top, bottom), = fractions(table["Δxi"])
    assert top.startswith("3") and ("xi", "2") in powers(table["Δxi"]) and flat(bottom) == "Z2"


def test_tanh_derivative_is_one_minus_tanh_squared():
    right = rows(tm.tensorgrad(TANH))["ΔWij"]
    assert "(1−yi2)" in flat(right) and ("yi", "2") in powers(right)


def test_relu_derivative_is_an_indicator_and_a_sum_term_has_no_brackets():
    table = rows(tm.tensorgrad(RELU))
    for row in ("ΔXbi", "ΔWio"):
        assert "𝟙[∑i′Xbi′Wi′o>0]" in flat(table[row]).replace("\u2061", "")
    assert "step" not in fn_html(RELU) and "θ" not in fn_html(RELU)
    assert "(∑o′Hbo′Vo′−Tb)" in flat(table["ΔHbo"]) and "((" not in flat(table["ΔHbo"])
    assert "L" in table and "(∑oHboVo−Tb)2" in flat(table["L"])


def fn_html(cell):
    return tm.tensorgrad(cell)._repr_html_()


def test_a_repeated_sub_expression_is_named_once():
    """logsumexp_j x_j comes three times in Δx: named N once, after the formula, as in LaTeX."""
    fn = tm.tensorgrad(LSE)
    right = flat(rows(fn)["Δxj"])
    assert right.count("logsumexp") == 1 and right.endswith(",N=logsumexpj′(xj′)"), right
    assert right.count("N") == 6 and ",\\quad N = \\operatorname{logsumexp}" in fn.latex()
    right = rows(tm.tensorgrad(NORM))["Δxi"]
    assert len(list(right.iter(f"{M}msqrt"))) == 1 and ("N", "3") in powers(right)
    assert flat(right).endswith(",N=∑jxj2")


def test_a_named_sub_expression_avoids_the_cells_names():
    fn = tm.tensorgrad("N := x[i] / sqrt(x[j]*x[j])")
    assert flat(rows(fn)["Δxi"]).endswith(",M=∑jxj2") and "M = \\sqrt" in fn.latex()


def test_sigmoid_is_drawn_as_sigma_as_in_latex():
    fn = tm.tensorgrad("y[i] := sigmoid(x[i])")
    html = fn._repr_html_()
    assert "<mi>σ</mi>" in html and "sigma" not in html
    assert r"\sigma" in fn.latex()


def test_pi_and_a_fraction_raised_to_a_power_read_as_written():
    """erf's derivative, 2/√π · exp(-(x/√2)²): π as the letter (not 3.14159), and the fraction
    x/√2 in brackets under its exponent (in the LaTeX view as well)."""
    fn = tm.tensorgrad("y[i] := erf(x[i] / sqrt(2))")
    right = rows(fn)["Δxi"]
    assert "π" in flat(right) and "3.14" not in flat(right)
    (power,) = [p for p in right.iter(f"{M}msup")]
    base = power[0]
    assert flat(base).startswith("(") and base.find(f".//{M}mfrac") is not None
    assert "\\left(\\frac{x_{i}}{\\sqrt{2}}\\right)^{2}" in fn.latex() and "\\pi" in fn.latex()
