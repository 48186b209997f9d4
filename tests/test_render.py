"""What a reader sees: the LaTeX and text views of statements and formulas."""
import pytest
import torch

import tensormagic as tm
from conftest import evaluate_formula
from tensormagic.views import latex as render


def mps_norm(sites):
    """<ψ|ψ> of an open-boundary MPS: each site A{k}[a{k-1}, p{k}, a{k}] twice, bra bonds b."""
    factors = []
    for k in range(1, sites + 1):
        ket = ",".join(([f"a{k - 1}"] if k > 1 else []) + [f"p{k}"] + ([f"a{k}"] if k < sites else []))
        bra = ket.replace("a", "b")
        factors.append(f"A{k}[{ket}] * A{k}[{bra}]")
    return "nrm := " + " * ".join(factors)


def mps_inputs(sites, bond=2, phys=2):
    shapes = {k: ((phys, bond) if k == 1 else (bond, phys) if k == sites else (bond, phys, bond))
              for k in range(1, sites + 1)}
    return {f"A{k}": torch.randn(shape, dtype=torch.float64) * 0.7 for k, shape in shapes.items()}


def balanced(latex):
    return latex.count("{") == latex.count("}") and latex.count("\\left") == latex.count("\\right")


def test_multi_letter_names_are_one_symbol():
    fn = tm.tensorgrad("y[i] := ρA[i,j] * ψ2[j] * W1[i,j]")
    latex = fn.latex()
    assert "\\mathrm{\\rho A}_{ij}" in latex and "\\Delta \\mathrm{\\rho A}_{ij}" in latex
    assert "\\mathrm{\\psi 2}_{j}" in latex and "\\mathrm{W1}_{ij}" in latex
    assert "\\rho A_" not in latex.replace("\\mathrm{\\rho A}", "")


def test_reciprocal_powers_and_repeated_factors_read_simply():
    fn = tm.tensorgrad("s := (1/Z)**2 * x[i] * x[i] * x[i]")
    assert fn.statement == "s := Σ_i 1 / Z**2 * x[i] * x[i] * x[i]"
    latex = fn.latex()
    assert "\\frac{x_{i}^{3}}{Z^{2}}" in latex and "\\left(\\frac" not in latex
    assert "3 \\, \\Delta s \\, x_{i}^{2}" in latex  # 3 Δs x_i x_i
    assert "/ Z**2" in fn.formulas["x"] and "(Z**2)" not in fn.formulas["x"]


def test_repeated_sub_expressions_are_named_once():
    """√(Σ_j x_j²) comes three times in Δx of a normalisation (its sum index renamed each
    time): the math names it N once, and N N² is N³.  x_i / (y_i²)² cancels to 1 / y_i³."""
    latex = tm.tensorgrad("n[i] := x[i] / sqrt(x[j]*x[j])").latex()
    assert latex.count("\\sqrt") == 2  # the statement's, and N's
    assert "\\frac{\\Delta n_{i}}{N}" in latex and "{N^{3}}" in latex
    assert latex.endswith(",\\quad N = \\sqrt{\\sum_{j} x_{j}^{2}}\\end{aligned}$$")
    latex = tm.tensorgrad("s := x[i]/y[i]**2").latex()
    assert "\\Delta y_{i}  &=  -\\frac{2 \\, x_{i} \\, \\Delta s}{y_{i}^{3}}" in latex
    latex = tm.tensorgrad("N := x[i] / sqrt(x[j]*x[j])").latex()
    assert "M = \\sqrt" in latex  # a name the cell does not use


def test_formulas_with_reciprocal_powers_still_give_the_gradient():
    fn = tm.tensorgrad("p[i] := x[i] / (Z * Z) + x[i] / Z")
    Z, x = torch.tensor(1.7, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    dp = torch.randn(3, dtype=torch.float64)
    Zr = Z.clone().requires_grad_()
    (x / (Zr * Zr) + x / Zr).backward(dp)
    assert "/ Z**2" in fn.formulas["Z"]
    env = {"x": x, "Z": Z, "Δp": dp, "ΔZ": torch.tensor(0.0, dtype=torch.float64)}  # '=': shape only
    got = evaluate_formula(fn.formulas["Z"], env, ())
    torch.testing.assert_close(got, Zr.grad)


def test_no_parentheses_around_a_sum_term_and_an_indicator_for_step():
    fn = tm.tensorgrad("H[b,o] := relu(X[b,i]*W[i,o])\nL := (H[b,o]*V[o] - T[b])**2")
    latex = fn.latex()
    assert "\\left(\\sum_{o} H_{bo} \\, V_{o} - T_{b}\\right)^{2}" in latex
    assert "\\left(\\left(\\sum" not in latex
    assert "\\mathbb{1}\\left[\\sum_{i'} X_{bi'} \\, W_{i'o} > 0\\right]" in latex
    assert "step(" in str(fn)  # the text stays a statement of the language


def test_a_16_site_mps_renders_compactly():
    fn = tm.tensorgrad(mps_norm(16))
    latex, shortened = render.cell_latex(fn.cell.statements, fn.derivation)
    assert shortened and latex == fn.latex() and balanced(latex)
    lines = latex.split(" \\\\ ")
    assert len(lines) == 1 + 16  # the statement and every gradient, none dropped
    assert all(len(line) < 1200 for line in lines)
    assert "\\Delta \\mathrm{A7}_{\\mathrm{a6},\\mathrm{p7},\\mathrm{a7}}" in latex
    assert "\\sum_{46\\text{ indices}}" in lines[0] and "[32\\text{ factors}]" in lines[0]
    assert all("\\Delta \\mathrm{nrm}" in line for line in lines[1:])  # the Δ is never elided
    assert len(latex) < render.LATEX_CAP
    assert "A16[a15,p16] * A16[b15,p16]" in str(fn)  # the text keeps everything


def test_a_30_site_mps_stays_under_the_cap():
    fn = tm.tensorgrad(mps_norm(30))
    latex = fn.latex()
    assert len(latex) <= render.LATEX_CAP + 200 and balanced(latex)
    assert len(str(fn)) > 50_000


def test_the_cap_leaves_out_lines_with_a_note(monkeypatch):
    monkeypatch.setattr(render, "LATEX_CAP", 3000)
    fn = tm.tensorgrad(mps_norm(16))
    latex, shortened = render.cell_latex(fn.cell.statements, fn.derivation)
    assert shortened and len(latex) < 3000 + 200 and balanced(latex)
    assert "more lines: print the function" in latex


def test_small_cells_are_shown_in_full():
    fn = tm.tensorgrad(mps_norm(3))
    latex, shortened = render.cell_latex(fn.cell.statements, fn.derivation)
    assert not shortened and "\\text{ indices}" not in latex and "A_{" not in latex
    assert "\\mathrm{A2}_{\\mathrm{a1},\\mathrm{p2},\\mathrm{a2}}" in latex


@pytest.mark.parametrize("sites", [3, 16])
def test_mps_gradients_match_autograd(sites):
    """The shortened view changes nothing in what is computed."""
    fn = tm.tensorgrad(mps_norm(sites))
    inputs = mps_inputs(sites)
    leaves = {n: t.clone().requires_grad_() for n, t in inputs.items()}
    fn(**leaves).backward()
    ref = {n: t.clone().requires_grad_() for n, t in inputs.items()}
    letters = {}
    subs = []
    for st in mps_norm(sites).split(":=")[1].split("*"):
        name, idx = st.strip().rstrip("]").split("[")
        subs.append((name, [letters.setdefault(i, chr(ord("a") + len(letters)) if len(letters) < 26
                                               else chr(ord("A") + len(letters) - 26))
                            for i in idx.split(",")]))
    expr = ",".join("".join(i) for _, i in subs) + "->"
    torch.einsum(expr, *[ref[n] for n, _ in subs]).backward()
    for n in inputs:
        torch.testing.assert_close(leaves[n].grad, ref[n].grad)
