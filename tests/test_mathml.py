"""The formulas as MathML (offline math): well-formed, complete, capped."""
import xml.etree.ElementTree as ET

import tensormagic as tm
from tensormagic import mathml

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
