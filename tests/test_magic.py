"""%%tensorgrad in a real IPython shell, and the command line."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from tensormagic.frontends.magic import TensorgradCellError
from tensormagic.views.codeview import code_view

REPO = Path(__file__).resolve().parents[1]
from conftest import run_magic

SEED = "A[i,k] := B[i,j] * C[j,k] * D[l,l]"


run = run_magic  # the shell and ip fixtures live in conftest.py


def expected_seed(ns):
    return ns["B"] @ ns["C"] * torch.trace(ns["D"])


def snapshot(ns):
    """Which object each public name is bound to (IPython's own _ names change per cell)."""
    return {name: id(value) for name, value in ns.items() if not name.startswith("_")}


def folded(captured):
    """The verbose view's HTML blocks (the <details> toggle) among the display outputs."""
    return [o.data for o in captured.outputs if o.data.get("text/html", "").startswith("<details")]


def test_defines_callable_and_binds_output(ip):
    captured = run(ip, "B C", SEED)
    fn = ip.user_ns["A_fn"]
    assert fn.inputs == ("B", "C", "D") and fn.wrt == ("B", "C")
    torch.testing.assert_close(ip.user_ns["A"], expected_seed(ip.user_ns))
    assert "A_fn(B, C, D)" in captured.stdout and "bound A [2×4]" in captured.stdout


def test_gradients_only_for_the_named_inputs(ip):
    run(ip, "B C", SEED)
    B, C, D = (ip.user_ns[n].clone().requires_grad_() for n in "BCD")
    dA = torch.randn(2, 4, dtype=torch.float64)
    ip.user_ns["A_fn"](B, C, D).backward(dA)
    Br, Cr = (ip.user_ns[n].clone().requires_grad_() for n in "BC")
    (Br @ Cr * torch.trace(ip.user_ns["D"])).backward(dA)
    torch.testing.assert_close(B.grad, Br.grad)
    torch.testing.assert_close(C.grad, Cr.grad)
    assert D.grad is None


def test_default_wrt_is_every_input(ip):
    run(ip, "", SEED)
    assert ip.user_ns["A_fn"].wrt == ("B", "C", "D")


def test_name_option(ip):
    run(ip, "B --name matmul", SEED)
    assert ip.user_ns["matmul"].name == "matmul"
    assert "A_fn" not in ip.user_ns
    torch.testing.assert_close(ip.user_ns["A"], expected_seed(ip.user_ns))


def test_no_eval_only_defines(ip):
    captured = run(ip, "--no-eval", SEED)
    assert "A_fn" in ip.user_ns and "A" not in ip.user_ns
    assert "not evaluated (--no-eval)" in captured.stdout


def test_missing_inputs_are_named(ip):
    del ip.user_ns["D"]
    captured = run(ip, "", SEED)
    assert "A_fn" in ip.user_ns and "A" not in ip.user_ns
    assert "missing input: D" in captured.stdout


def test_every_output_is_bound(ip):
    run(ip, "", "E[i,k] := B[i,j] * C[j,k]\nF[i] := E[i,k] * E[i,k]")
    E = ip.user_ns["B"] @ ip.user_ns["C"]
    torch.testing.assert_close(ip.user_ns["E"], E)
    torch.testing.assert_close(ip.user_ns["F"], (E * E).sum(1))
    assert ip.user_ns["F_fn"].outputs == ("E", "F")


def test_displays_latex_with_plain_text_fallback(ip):
    captured = run(ip, "B C", SEED)
    fn = ip.user_ns["A_fn"]
    (math,) = captured.outputs
    assert math.data == {"text/html": fn._repr_html_(), "text/latex": fn.latex(), "text/plain": str(fn)}
    assert "ΔB" in math.data["text/plain"] and "ΔD" not in math.data["text/plain"]


def test_verbose_shows_the_tangents_too(ip):
    captured = run(ip, "B C --verbose", SEED)
    fn = ip.user_ns["A_fn"]
    math = captured.outputs[0].data
    from tensormagic.views.mathml import cell_html
    assert math == {"text/html": cell_html(fn, tangents=True), "text/latex": fn.latex(tangents=True),
                    "text/plain": fn.render_text(tangents=True)}
    assert "<mi>dB</mi>" in math["text/html"] and "<mi>dB</mi>" not in fn._repr_html_()
    assert fn.tangents["A"] in math["text/plain"] and r"\mathrm{dB}" in math["text/latex"]
    assert "dA" not in str(fn) and "dA" not in fn.latex()


def test_quiet_shows_nothing(ip):
    captured = run(ip, "--quiet --verbose", SEED)
    assert captured.outputs == [] and captured.stdout == ""
    assert "A" in ip.user_ns


def test_verbose_folds_code_and_plan_behind_the_toggle(ip):
    captured = run(ip, "--verbose", SEED)
    fn = ip.user_ns["A_fn"]
    (view,) = folded(captured)
    html = view["text/html"]
    assert html.startswith('<details class="tensormagic-code"><summary>Show code</summary>')
    assert html.endswith("</details>") and "<span" in html  # highlighted
    assert "font-weight: bold\">def</span>" in html and "backward" in html
    plan_line = fn.plan.splitlines()[0]
    assert plan_line in html and plan_line not in captured.stdout  # the plan is behind it too
    assert view["text/plain"] == str(code_view(fn.code, fn.plan, fn.wrt))


def test_verbose_code_is_for_the_gradients_asked_for(ip):
    """Notebook tensors need no grad (the usual case): the code shown is still the backward
    for wrt, not the no-gradient signature the evaluation compiled."""
    assert not any(ip.user_ns[n].requires_grad for n in "BCD")
    captured = run(ip, "B C --verbose", SEED)
    fn = ip.user_ns["A_fn"]
    text = folded(captured)[0]["text/plain"]
    assert "# gradients computed: B, C" in text
    assert "# ΔB" in text and "# ΔC" in text and "# ΔD" not in text
    assert "return (None, None" not in text
    assert "backward contraction" in text and "backward 0 " not in text
    assert "# ΔB" in fn.code and "backward 0 " not in fn.plan


def test_code_and_plan_after_a_no_grad_call():
    import tensormagic as tm
    fn = tm.tensorgrad(SEED, wrt="B C")
    B, C, D = torch.randn(2, 3), torch.randn(3, 4), torch.randn(5, 5)
    with torch.no_grad():
        fn(B.requires_grad_(), C, D)
    assert "# ΔB" in fn.code and "# ΔC" in fn.code
    assert "backward 0 " not in fn.plan
    fn(B.detach(), C, D)  # needs no gradient either
    assert "# ΔC" in fn.code


def test_a_large_network_shows_compact_math_and_folds_the_full_formulas(ip):
    from test_render import mps_inputs, mps_norm
    ip.push(mps_inputs(16))
    captured = run(ip, "", mps_norm(16))
    math, full = captured.outputs
    assert "\\text{ indices}" in math.data["text/latex"] and len(math.data["text/latex"]) < 20_000
    assert full.data["text/html"].startswith('<details class="tensormagic-formulas">')
    assert "A16[a15,p16] * A16[b15,p16]" in full.data["text/html"] and "text/plain" not in full.data
    assert "bound nrm (scalar)" in captured.stdout


def test_verbose_line_magic_sets_the_default(ip):
    ip.run_line_magic("tensorgrad_verbose", "on")
    assert len(folded(run(ip, "", SEED))) == 1
    ip.run_line_magic("tensorgrad_verbose", "off")
    assert folded(run(ip, "", SEED)) == []
    with pytest.raises(UsageError):
        ip.run_line_magic("tensorgrad_verbose", "loud")


def test_terminal_ipython_prints_the_code_as_text(tmp_path):
    """A real `ipython` process (no widget frontend): the verbose view is printed as text."""
    script = tmp_path / "cell.ipy"
    script.write_text("%load_ext tensormagic\nimport torch\n"
                      "B, C = torch.randn(2, 3), torch.randn(3, 4)\n"
                      "get_ipython().run_cell_magic('tensorgrad', 'B C --verbose',"
                      " 'A[i,k] := B[i,j] * C[j,k]')\n")
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor",
                           str(script)], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "def forward(B, C):" in out and "def backward(" in out and "# ΔB" in out
    assert "forward contraction" in out and "bound A [2×4]" in out
    assert "<details" not in out and "CodeToggle" not in out and "Widget" not in out
    # pictures say what they are instead of printing an object address
    assert " at 0x" not in out and "<tensor-network diagram: an SVG picture" in out


BAD_CELLS = {
    "syntax": "A[i,k] := B[i,j] * C[j,k",
    "left index missing on the right": "A[i,m] := B[i,j] * C[j,k]",
    "unknown function": "A[i,k] := B[i,j] * cosh2(C[j,k])",
    "size mismatch": "A[i,k] := B[i,j] * D[j,k]",
}


@pytest.mark.parametrize("cell", BAD_CELLS.values(), ids=BAD_CELLS.keys())
def test_errors_change_nothing_and_show_no_traceback(ip, cell):
    ip.user_ns["A"] = object()
    before = snapshot(ip.user_ns)
    with capture_output() as captured:
        result = ip.run_cell(f"%%tensorgrad\n{cell}")
    assert isinstance(result.error_in_exec, TensorgradCellError)
    assert "^" in captured.stdout and "Traceback" not in captured.stdout + captured.stderr
    assert captured.outputs == []
    assert snapshot(ip.user_ns) == before


# (cell, what the message says, the text the caret points at)
HINTS = {
    "missing * between tensors": ("s := B[i,j] C[i,j]", "missing operator: write *", "C"),
    "missing * in a product": ("A[i,k] := B[i,j] C[j,k]", "missing operator: write *", "C"),
    "missing * after a number": ("A[i,j] := 2 B[i,j]", "missing operator: write *", "B"),
    "missing * in parentheses": ("s := (B[i,j] B[i,j])", "missing operator: write *", "B[i,j])"),
    "missing * glued to a number": ("A[i,j] := 2B[i,j]", "missing operator: write *", "B"),
    "quote as a prime": ("A[i,j] := B[i,j'] * D[j',j]", "a prime is written ′", "'"),
    "quote as a transpose": ("A[i,j] := B[j,i]'", "swap the subscripts", "'"),
    "method call": ("A[i,j] := B[i,j].exp()", "write exp(B[i,j])", "B[i,j].exp"),
    "sum()": ("s := sum(B[i,j])", "summed already", "sum(B[i,j])"),
    "parentheses for indices": ("A[i,k] := B(i,k)", "index a tensor with brackets, B[i,k]", "B"),
    "index count": ("s := B[i,j] * B[j]", "used with 2 indices elsewhere, here with 1 index", "B[j]"),
    "index count grammar": ("s := D[i] * D[i,j]", "used with 1 index elsewhere, here with 2", "D[i,j]"),
    "scalar use of a tensor": ("s := B*C", "write one index per dimension, B[i,j]", "B"),
    "= to a missing tensor": ("Q[i,k] = B[i,j] * C[j,k]", "'Q' does not exist: use := to create it", "Q"),
    "+= to a missing tensor": ("Q[i,k] += B[i,j] * C[j,k]", "use := to create it", "Q"),
}


def caret_target(message):
    """The text the caret line points at, in the statement line above it."""
    lines = message.splitlines()
    statement, carets = lines[-2], lines[-1]
    start = len(carets) - len(carets.lstrip())
    return statement[start:start + len(carets.strip())], statement


@pytest.mark.parametrize("cell, says, at", HINTS.values(), ids=HINTS.keys())
def test_errors_say_what_to_do(ip, cell, says, at):
    if cell.startswith("s := D[i]"):
        ip.user_ns["D"] = torch.randn(5)
    before = snapshot(ip.user_ns)
    with pytest.raises(TensorgradCellError) as raised:
        run(ip, "", cell)
    message = str(raised.value)
    assert says in message
    pointed, statement = caret_target(message)
    assert statement.endswith(cell) and pointed and at.startswith(pointed), message
    assert snapshot(ip.user_ns) == before


def test_a_unicode_prime_is_accepted(ip):
    run(ip, "", "A[i,k] := B[i,j′] * C[j′,k]")
    torch.testing.assert_close(ip.user_ns["A"], ip.user_ns["B"] @ ip.user_ns["C"])
    assert ip.user_ns["A_fn"].statement == "A[i,k] := Σ_jʹ B[i,jʹ] * C[jʹ,k]"


def test_pi_is_a_constant(ip):
    run(ip, "", "s := pi * B[i,j]")
    fn = ip.user_ns["s_fn"]
    assert fn.inputs == ("B",) and "pi * B[i,j]" in fn.statement and "\\pi" in fn.latex()
    torch.testing.assert_close(ip.user_ns["s"], math.pi * ip.user_ns["B"].sum())


def test_statements_span_lines(ip):
    run(ip, "", "# a comment\nA[i,k] := (B[i,j] *   # the first factor\n\n    C[j,k]) \\\n"
                "    * D[l,l]\nE[i] := A[i,k] *\\\n A[i,k]")
    torch.testing.assert_close(ip.user_ns["A"], expected_seed(ip.user_ns))
    assert ip.user_ns["E_fn"].outputs == ("A", "E")


def test_a_typo_gets_a_suggestion_and_a_stale_output_is_named(ip):
    run(ip, "", SEED)
    captured = run(ip, "", "A[i,k] := B[i,j] * Cc[j,k] * D[l,l]")
    assert "missing input: Cc (did you mean C?)" in captured.stdout
    assert "A still holds an earlier value" in captured.stdout


def test_name_never_overwrites_an_input_or_the_shell(ip):
    ip.user_ns["torch"] = torch
    for line in ("--name B", "--name get_ipython", "--name torch", "--name C --no-eval"):
        before = snapshot(ip.user_ns)
        with pytest.raises(UsageError, match="choose another"):
            run(ip, line, SEED)
        assert snapshot(ip.user_ns) == before
    run(ip, "--name f", SEED)
    run(ip, "--name f", SEED)  # replacing its own earlier callable is fine


def test_an_output_never_overwrites_a_function_or_module(ip):
    ip.user_ns["f"] = lambda: 0
    before = snapshot(ip.user_ns)
    with pytest.raises(TensorgradCellError, match="f would overwrite a function"):
        run(ip, "", "f[i,k] := B[i,j] * C[j,k]")
    assert snapshot(ip.user_ns) == before


@pytest.mark.parametrize("line", ["B, C", "B,C", "B ,C", "B C"])
def test_wrt_names_may_be_separated_by_commas(ip, line):
    run(ip, line, SEED)
    assert ip.user_ns["A_fn"].wrt == ("B", "C")


def test_bind_last_binds_only_the_last_output(ip):
    ip.user_ns["E"] = "mine"
    captured = run(ip, "--bind last", "E[i,k] := B[i,j] * C[j,k]\nF[i] := E[i,k] * E[i,k]")
    assert ip.user_ns["E"] == "mine"
    E = ip.user_ns["B"] @ ip.user_ns["C"]
    torch.testing.assert_close(ip.user_ns["F"], (E * E).sum(1))
    assert "bound F [2]; not bound: E (--bind last)" in captured.stdout
    run(ip, "--bind all", "E[i,k] := B[i,j] * C[j,k]\nF[i] := E[i,k] * E[i,k]")
    torch.testing.assert_close(ip.user_ns["E"], E)


def test_every_gradient_used_is_defined(ip):
    """A multi-statement cell: ΔH appears in ΔW's formula, so ΔH's own formula is given too."""
    cell = "H[b,o] := tanh(X[b,i]*W[i,o])\nL := (H[b,o]*V[o] - T[b])**2"
    fn = tm_function(cell, "W")
    assert list(fn.intermediate_formulas) == ["ΔH"]
    assert fn.intermediate_formulas["ΔH"].startswith("ΔH[b,o] = ")
    done = cli(*cell.splitlines(), "--wrt", "W")
    assert done.returncode == 0, done.stderr
    assert_every_delta_defined(done.stdout.split("gradients:")[1], given="ΔL")
    assert_every_delta_defined("\n".join([*fn.intermediate_formulas.values(), *fn.formulas.values()]),
                               given="ΔL")


def tm_function(cell, wrt):
    import tensormagic as tm
    return tm.tensorgrad(cell, wrt=wrt)


def assert_every_delta_defined(text, given):
    defined = {line.split("[")[0].split(" =")[0] for line in text.strip().splitlines()}
    used = set(re.findall(r"Δ\w+", text))
    assert used - defined == {given}, text


def test_wrt_naming_an_absent_input_is_an_error(ip):
    with pytest.raises(TensorgradCellError, match="Q"):
        run(ip, "B Q", SEED)
    assert "A_fn" not in ip.user_ns


@pytest.mark.parametrize("line", ["--memory medium", "--name 1x", "--name class", "--name A", "--bogus"])
def test_bad_arguments_are_usage_errors(ip, line):
    with pytest.raises(UsageError):
        run(ip, line, SEED)
    assert "A_fn" not in ip.user_ns


def test_memory_low_gives_the_same_values(ip):
    run(ip, "--memory low", SEED)
    torch.testing.assert_close(ip.user_ns["A"], expected_seed(ip.user_ns))


def test_help_shows_the_arguments(ip):
    with capture_output() as captured:
        ip.run_cell("%%tensorgrad?")
    for text in ("%%tensorgrad [--name FN]", "NAME", "--no-eval", "--memory", "--verbose", "--quiet",
                 "--bind {all,last}"):
        assert text in captured.stdout


def test_unload_and_reload(ip):
    assert ip.run_line_magic("unload_ext", "tensormagic") is None
    assert "tensorgrad" not in ip.magics_manager.magics["cell"]
    assert "tensorgrad_verbose" not in ip.magics_manager.magics["line"]
    with pytest.raises(UsageError):
        ip.run_cell_magic("tensorgrad", "", SEED)
    ip.run_line_magic("load_ext", "tensormagic")
    ip.run_line_magic("reload_ext", "tensormagic")
    assert sum(type(c).__name__ == "TensorgradMagics" for c in ip.configurables) == 1
    run(ip, "", SEED)
    torch.testing.assert_close(ip.user_ns["A"], expected_seed(ip.user_ns))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tensormagic", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_cli_prints_statement_and_requested_formulas():
    done = cli(SEED, "--wrt", "B C")
    assert done.returncode == 0, done.stderr
    assert "A_fn(B, C, D) -> A" in done.stdout
    assert "ΔB[i,j] =" in done.stdout and "ΔC[j,k] =" in done.stdout and "ΔD" not in done.stdout


def test_cli_code_and_name():
    done = cli(SEED, "--code", "--plan", "--name", "matmul")
    assert done.returncode == 0, done.stderr
    assert "def " in done.stdout and "matmul(B, C, D)" in done.stdout


def test_cli_several_statements():
    done = cli("E[i,k] := B[i,j] * C[j,k]", "F[i] := E[i,k] * E[i,k]", "--code")
    assert done.returncode == 0, done.stderr
    assert "F_fn(B, C) -> E, F" in done.stdout


def test_cli_error_is_one_short_message():
    done = cli("A[i,m] := B[i,j] * C[j,k]")
    assert done.returncode == 2 and done.stdout == ""
    assert "^" in done.stderr and "Traceback" not in done.stderr


def test_sizes_option_sizes_a_pooling_window(ip):
    ip.push({"x": torch.arange(6.0, dtype=torch.float64)})
    run(ip, "--sizes a=2", "m[i] := max[a](x[2*i+a])")
    torch.testing.assert_close(ip.user_ns["m"], torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64))
    assert ip.user_ns["m_fn"].sizes == {"a": 2}


@pytest.mark.parametrize("line", ["--sizes a", "--sizes a=0", "--sizes a=x", "--sizes 1=2"])
def test_bad_sizes_are_usage_errors(ip, line):
    with pytest.raises(UsageError):
        run(ip, line, "m[i] := max[a](x[2*i+a])")
    assert "m_fn" not in ip.user_ns



def test_a_bad_backend_is_a_usage_error(ip):
    with pytest.raises(UsageError, match="backend must be 'eager' or a torch.compile backend"):
        run(ip, "--backend fastest", "A[i,k] := B[i,j] * C[j,k]")
    assert "A_fn" not in ip.user_ns
