"""The live inspector's parts without a browser: each gradient's slice of the backward and of
the plan, and the widget driven from Python as its buttons would drive it (no kernel needed:
ipywidgets makes its widgets without a frontend)."""
import ast
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tensormagic as tm
from tensormagic.compiler.describe import describe
from tensormagic.runtime import inspector as live
from tensormagic.views.codeslice import gradient_slices
from tensormagic.views.mathml import gradient_math

REPO = Path(__file__).resolve().parents[1]
MLP = "H[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])\nL := (H[n,h]*V[h] - T[n])**2"
# (cell, wrt, sizes): every kind of backward line the code generator writes
CELLS = [
    ("A[i,k] := B[i,j] * C[j,k] * D[l,l]", None, None),
    (MLP, None, None),
    (MLP, "W1 V", None),
    ("y[b,o,i] := x[b,c,i+a] * w[o,c,a]", None, None),
    ("E[b,d] := W[tok[b], d]", None, None),
    ("p[b,i] := exp(x[b,i] - logsumexp[j](x[b,j]))\nL := p[b,i] * t[b,i]", None, None),
    ("m[i] := max[a](x[2*i+a]) * s", None, {"a": 2}),
    ("z[i] := abs(u[i,j] * conj(v[j]))**2 + r[i]", None, None),
]


def _fn(text, wrt, sizes):
    return tm.tensorgrad(text, wrt=wrt, sizes=sizes)


def _backward_parts(code):
    """The backward's prologue (the statements reading _saved) and its returned expressions."""
    backward = next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)
                    and n.name == "backward")
    prologue = [ast.unparse(s) for s in backward.body if "_saved" in ast.unparse(s)]
    return prologue, [ast.unparse(e) for e in backward.body[-1].value.elts]


def _run_slice(compiled, piece, returned, saved, grads):
    """The slice alone, as a function of its own: the prologue, its lines, its gradient."""
    prologue, _ = _backward_parts(compiled.source)
    body = "\n".join(f"    {line}" for line in prologue + piece.text.splitlines())
    namespace = dict(compiled.namespace)
    exec(f"def sliced(_saved, _grads):\n{body}\n    return {returned}\n", namespace)
    return namespace["sliced"](list(saved), grads)


@pytest.mark.parametrize("text, wrt, sizes", CELLS)
def test_each_gradients_slice_alone_computes_that_gradient(text, wrt, sizes):
    fn = _fn(text, wrt, sizes)
    compiled = fn._example()
    inputs = [torch.randint(0, 4, compiled.program.vars[v].shape) if fn.inputs[k] in fn.cell.index_inputs
              else torch.randn(compiled.program.vars[v].shape, dtype=torch.float64)
              for k, v in enumerate(compiled.program.inputs)]
    namespace = compiled.namespace
    namespace.update(_dtype=torch.float64, _rdtype=torch.float64)
    outs, saved = compiled.forward(*inputs)
    grads = [torch.randn_like(o) for o in outs]
    full = compiled.backward(list(saved), grads)
    slices = gradient_slices(compiled.source, fn.inputs)
    _, returned = _backward_parts(compiled.source)
    assert sorted(slices) == sorted(n for n, g in zip(fn.inputs, full) if g is not None)
    for k, name in enumerate(fn.inputs):
        if name in slices:
            alone = _run_slice(compiled, slices[name], returned[k], saved, grads)
            torch.testing.assert_close(alone, full[k], rtol=0, atol=0)


@pytest.mark.parametrize("text, wrt, sizes", CELLS)
def test_every_computing_line_belongs_to_some_gradient_and_ends_in_its_own(text, wrt, sizes):
    fn = _fn(text, wrt, sizes)
    code = fn.code
    slices = gradient_slices(code, fn.inputs)
    lines = code.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("def backward"))
    computing = {k + 1 for k, line in enumerate(lines[start:], start)
                 if " = " in line and "_saved" not in line}
    assert set().union(*(s.lines for s in slices.values())) == computing
    for name, piece in slices.items():
        # its last line assigns the gradient the backward returns for it (the ΔW comment)
        assert lines[piece.lines[-1] - 1].endswith(f"# Δ{name}"), (name, piece.text)


def test_a_gradient_takes_no_line_that_only_another_needs():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    slices = gradient_slices(fn.code, fn.inputs)
    assert "# ΔB" in slices["B"].text and "# ΔC" not in slices["B"].text
    assert "# ΔC" in slices["C"].text and "# ΔB" not in slices["C"].text
    assert "D" not in slices  # not in wrt: the backward returns None for it
    assert "C" in slices["B"].saved and "B" not in slices["B"].saved


def test_gradient_slices_refuse_source_with_no_backward():
    with pytest.raises(ValueError, match="defines no backward"):
        gradient_slices("def forward(x):\n    return x\n", ("x",))


def test_a_gradients_plan_is_the_contractions_it_passes_through():
    fn = tm.tensorgrad(MLP)
    program = fn._example().program
    assert describe(program) == fn.plan  # the whole plan is unchanged
    v = describe(program, "V").splitlines()
    assert v[1].split()[0] == "nh,h->n" and v[3].split()[0] == "Δn,nh->Δh" and len(v) == 5
    w1 = describe(program, "W1")
    assert "ni,ih->nh" in w1 and "Δnh,ni->Δih" in w1 and "Δnh,ih->Δni" not in w1  # that is ΔX's
    assert "Δn,nh->Δh" not in w1  # ΔV's
    assert describe(program, "T") == "ΔT passes through none of the plan's 6 contractions"
    with pytest.raises(ValueError, match="no input of this plan"):
        describe(program, "Q")


def test_a_plan_names_a_gradient_it_does_not_compute():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    with pytest.raises(ValueError, match="computes no gradient of D"):
        describe(fn._example().program, "D")


# -- the widget, driven from Python -------------------------------------------------------
def _shown(inspector, view):
    return inspector.panes[view].layout.display != "none"


def test_the_code_toggle_shows_and_hides_the_code():
    fn = tm.tensorgrad(MLP, wrt="W1 b1")
    inspector = fn.inspector()
    assert not _shown(inspector, "Code") and inspector.panes["Code"].value == ""
    inspector.toggles["Code"].value = True
    assert _shown(inspector, "Code") and "backward" in inspector.panes["Code"].value
    assert "# gradients computed: W1, b1" in inspector.panes["Code"].value
    inspector.toggles["Code"].value = False
    assert not _shown(inspector, "Code")
    assert _shown(fn.inspector(code=True), "Code")  # verbose mode: shown at once


def test_each_view_is_its_own_pane():
    fn = tm.tensorgrad(MLP)
    inspector = fn.inspector()
    for view in ("Plan", "Tangents", "Diagram"):
        inspector.toggles[view].value = True
    assert inspector.panes["Plan"].value == f"<pre>{_escaped(fn.plan)}</pre>"
    assert "<mi>dH</mi>" in inspector.panes["Tangents"].value
    assert 'class="tensormagic-diagram"' in inspector.panes["Diagram"].value
    assert not _shown(inspector, "Code")


def _escaped(text):
    return html.escape(text)


def _text(fragment):
    """What a reader sees of an HTML fragment."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_picking_a_gradient_narrows_every_open_view_to_it():
    fn = tm.tensorgrad(MLP)
    inspector = fn.inspector(code=True)
    inspector.toggles["Plan"].value = True
    inspector.toggles["Diagram"].value = True
    inspector.gradient.value = "W1"
    assert inspector.formula.value.count("<math") == 1
    assert gradient_math(fn, "W1") in inspector.formula.value
    code = _text(inspector.panes["Code"].value)
    assert "# ΔW1" in code and "# ΔX" not in code and "# Δb1" not in code and "def forward" not in code
    lines = ", ".join(map(str, gradient_slices(fn.code, fn.inputs)["W1"].lines))
    assert f"lines {lines} of fn.code" in code
    assert _escaped(describe(fn._example().program, "W1")) in inspector.panes["Plan"].value
    diagram = _text(inspector.panes["Diagram"].value)
    assert "ΔW1[i,h] =" in diagram and "Δb1" not in diagram  # its own network beside the cell's
    inspector.gradient.value = None  # all gradients again
    assert inspector.formula.value == "" and "def forward" in _text(inspector.panes["Code"].value)
    assert "Δ" not in _text(inspector.panes["Diagram"].value)


def test_the_gradient_picker_offers_wrt():
    inspector = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C").inspector()
    assert [label for label, _ in inspector.gradient.options] == ["all gradients", "ΔB", "ΔC"]
    none = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]", wrt=()).inspector()
    assert none.gradient.disabled and none.check_button.disabled


def test_check_gradients_shows_badges_and_a_status_line_while_it_runs():
    fn = tm.tensorgrad(MLP, wrt="W1 V")
    inspector = fn.inspector()
    seen = {}
    real = fn.check

    def watched():
        seen.update(progress=inspector.progress.value, disabled=inspector.check_button.disabled,
                    icon=inspector.check_button.icon)
        return real()
    fn.check = watched
    inspector.check_button.click()
    assert "checking each gradient" in seen["progress"] and "fa-spin" in seen["progress"]
    assert seen["disabled"] and "spinner" in seen["icon"]
    assert inspector.progress.value == "" and not inspector.check_button.disabled
    report = inspector.report.value
    assert report.count("✓") == 2 and "tensormagic-check" in report and "✗" not in report


def test_a_slow_view_says_what_it_is_doing(monkeypatch):
    inspector = tm.tensorgrad(MLP).inspector()
    seen = []
    monkeypatch.setitem(live.VIEWS, "Code", lambda fn, g: seen.append(inspector.progress.value) or "x")
    inspector.toggles["Code"].value = True
    assert "contraction paths" in seen[0] and inspector.progress.value == ""


def test_a_view_that_cannot_be_made_says_why_in_place():
    fn = tm.tensorgrad("m[i] := max[a](x[2*i+a])")  # a has no size: no code can be planned
    inspector = fn.inspector(code=True)
    assert "has no size" in inspector.panes["Code"].value and "sizes=" in inspector.panes["Code"].value


def test_the_inspector_displays_as_a_widget_with_a_line_of_text():
    fn = tm.tensorgrad(MLP)
    bundle = fn.inspector()._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    assert bundle["text/plain"].startswith("<tensormagic inspector of L_fn")
    assert "tensormagic-inspector" in fn.inspector()._dom_classes


def _python(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    return done


def test_the_plain_api_never_imports_ipywidgets():
    done = _python("import sys, torch, tensormagic as tm\n"
                   "fn = tm.tensorgrad('A[i,k] := B[i,j] * C[j,k]')\n"
                   "fn(torch.ones(2, 3), torch.ones(3, 4)); str(fn); fn.code; fn.plan; fn.check()\n"
                   "print('ipywidgets' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_ipywidgets_the_inspector_says_what_to_install():
    done = _python("import sys; sys.modules['ipywidgets'] = None\n"
                   "import tensormagic as tm\n"
                   "tm.tensorgrad('A[i,k] := B[i,j] * C[j,k]').inspector()")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == \
        "ImportError: the inspector needs ipywidgets: pip install 'tensormagic[notebook]'"


def test_closing_an_inspector_closes_every_widget_it_is_made_of():
    from ipywidgets.widgets.widget import _instances
    before = set(_instances)
    inspector = tm.tensorgrad(MLP).inspector(code=True)
    made = set(_instances) - before
    assert len(made) > 20  # toggles, panes, their layouts and styles, ...
    inspector.close()
    assert not made & set(_instances)


# -- the magic in a kernel (a shell that says it has one: ipywidgets needs no frontend) ---------
@pytest.fixture
def kernel_ip(ip, monkeypatch):
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    return ip


def _live(captured):
    return [o.data for o in captured.outputs if "application/vnd.jupyter.widget-view+json" in o.data]


def test_in_a_kernel_the_static_view_is_followed_by_the_inspector(kernel_ip):
    from conftest import run_magic
    captured = run_magic(kernel_ip, "B C --verbose", "A[i,k] := B[i,j] * C[j,k] * D[l,l]")
    kinds = [o.data for o in captured.outputs]
    at = next(k for k, d in enumerate(kinds) if 'class="tensormagic-static"' in d.get("text/html", ""))
    static, live = kinds[at], kinds[at + 1]
    assert "<details class=\"tensormagic-code\">" in static["text/html"]
    assert static["text/plain"].startswith("defined A_fn(B, C, D); bound A [2×4]\ngenerated code:")
    assert live["text/html"] == "" and "application/vnd.jupyter.widget-view+json" in live
    assert captured.stdout == ""  # the status line is in the static view, not printed
    inspector = kernel_ip.magics_manager.registry["TensorgradMagics"]._inspectors["A_fn"]
    assert inspector.toggles["Code"].value and inspector.gradient.options[1] == ("ΔB", "B")


def test_verbose_mode_sets_the_code_toggle(kernel_ip):
    from conftest import run_magic
    magics = kernel_ip.magics_manager.registry["TensorgradMagics"]
    run_magic(kernel_ip, "", "A[i,k] := B[i,j] * C[j,k]")
    assert not magics._inspectors["A_fn"].toggles["Code"].value
    kernel_ip.run_line_magic("tensorgrad_verbose", "on")
    run_magic(kernel_ip, "", "A[i,k] := B[i,j] * C[j,k]")
    assert magics._inspectors["A_fn"].toggles["Code"].value


def test_a_replaced_callable_closes_its_old_inspector(kernel_ip):
    from conftest import run_magic
    magics = kernel_ip.magics_manager.registry["TensorgradMagics"]
    run_magic(kernel_ip, "", "A[i,k] := B[i,j] * C[j,k]")
    first = magics._inspectors["A_fn"]
    captured = run_magic(kernel_ip, "", "A[i,k] := B[i,j] * C[j,k] * 2")
    assert first.comm is None and first.toggles["Code"].comm is None  # closed, parts and all
    assert magics._inspectors["A_fn"] is not first and len(_live(captured)) == 1
    run_magic(kernel_ip, "--quiet", "A[i,k] := B[i,j] * C[j,k]")
    assert "A_fn" not in magics._inspectors  # a quiet cell shows none


def test_check_gradients_checks_at_the_notebooks_current_inputs(kernel_ip):
    """The button reads the namespace when pressed: a relu checked at the notebook's own
    (negative) inputs, then at the new values a later cell gave them."""
    from conftest import run_magic
    magics = kernel_ip.magics_manager.registry["TensorgradMagics"]
    kernel_ip.user_ns.update(x=-torch.rand(3) - 0.5, w=torch.randn(3))
    run_magic(kernel_ip, "", "y[i] := relu(x[i]) * w[i]")
    inspector = magics._inspectors["y_fn"]
    report = inspector.check()
    assert report.ok and report.given and report.shapes == {"x": (3,), "w": (3,)}
    kernel_ip.user_ns.update(x=torch.randn(5), w=torch.randn(5))
    assert inspector.check().shapes == {"x": (5,), "w": (5,)}
    del kernel_ip.user_ns["w"]  # an input gone: small random inputs
    assert not inspector.check().given
