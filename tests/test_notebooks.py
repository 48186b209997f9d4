"""Every demo notebook runs top to bottom in a real kernel, and shows its math.

The notebooks check their own numbers (assert_close against plain torch, loss
thresholds), so a clean run means the values are right; here we also check
what a reader sees: rendered derivations, the code toggle, no errors.
"""
import functools
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_demo", REPO / "demo_notebooks" / "run_demo.py")
run_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_demo)
STEMS = sorted(p.stem for p in (REPO / "demo_notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def outputs(nb, kind=None):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if kind is None or kind in o.get("data", {})]


def stdout(nb):
    return "".join(o.text for o in outputs(nb) if o.get("name") == "stdout")


# What each notebook prints when its own checks pass.
EXPECTED_STDOUT = {
    "quickstart": ["A matches B @ C * trace(D)", "gradients of B and C match autograd: True",
                   "gradcheck: True", "the exported module gives the same A", "Z == torch.bmm(X, Y)",
                   "gradient of W matches autograd"],
    "neural_net": ["gradients of W1, b1, W2, b2 match autograd", "after 400 steps",
                   "CNN loss and gradients of w, b, u, c match torch.nn.functional", "training accuracy 100%"],
    "tensor_networks": ["the same as contracting the full state",
                        "gradients with respect to all four sites match autograd",
                        "relative error of the rank-3 Tucker fit"],
}


@functools.lru_cache(maxsize=None)
def executed(stem):
    """The notebook run afresh by the demo runner, in a python3 kernel on this interpreter."""
    return run_demo.execute(REPO / "demo_notebooks" / f"{stem}.ipynb")


def test_the_demos_are_all_here():
    assert sorted(EXPECTED_STDOUT) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_runs_without_errors(stem):
    nb = executed(stem)
    assert [o for o in outputs(nb) if o.output_type == "error"] == []
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("stem", STEMS)
def test_values_are_checked(stem):
    text = stdout(executed(stem))
    for line in EXPECTED_STDOUT[stem]:
        assert line in text


@pytest.mark.parametrize("stem", STEMS)
def test_shows_derivations_as_math(stem):
    shown = outputs(executed(stem), "text/latex")
    assert shown and all("\\Delta" in o.data["text/latex"] for o in shown)
    assert all("Δ" in o.data["text/plain"] for o in shown)


@pytest.mark.parametrize("stem", STEMS)
def test_saved_copy_has_its_outputs(stem):
    """The committed notebook was executed and saved, so it reads well without running."""
    saved = nbformat.read(REPO / "demo_notebooks" / f"{stem}.ipynb", as_version=4)
    assert all(c.execution_count for c in saved.cells if c.cell_type == "code")
    assert len(outputs(saved, "text/latex")) == len(outputs(executed(stem), "text/latex"))


def visible(fragment):
    """The text a reader sees in an HTML fragment."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def code_views(nb):
    return [o for o in outputs(nb, "text/html") if '<details class="tensormagic-code">' in o.data["text/html"]]


def static_and_live(cell):
    """A %%tensorgrad cell's static view (status line, code fold) and the live inspector's
    output right after it."""
    at = [k for k, o in enumerate(cell.outputs) if 'class="tensormagic-static"' in o.get("data", {}).get("text/html", "")]
    assert len(at) == 1, cell.source
    return cell.outputs[at[0]], cell.outputs[at[0] + 1]


def tensorgrad_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%tensorgrad")]


def test_quickstart_seed_derivation_and_toggle():
    nb = executed("quickstart")
    seed = outputs(nb, "text/latex")[0].data["text/plain"]
    assert "ΔB[i,j]" in seed and "ΔC[j,k]" in seed and "ΔD" not in seed
    views = code_views(nb)
    assert len(views) == 2 and all("def backward" in visible(v.data["text/html"]) for v in views)
    assert all("def backward" in v.data["text/plain"] for v in views)
    # every cell: its static view, then its live inspector (which has no HTML of its own)
    for cell in tensorgrad_cells(nb):
        static, live = static_and_live(cell)
        assert static.data["text/plain"].startswith("defined ")
        assert set(live.data) == {WIDGET_VIEW, "text/plain", "text/html"} and live.data["text/html"] == ""
    assert len(outputs(nb, WIDGET_VIEW)) == len(tensorgrad_cells(nb))
    assert "widgets" not in nb.metadata  # no widget state stored, none needed to read the code


def test_neural_net_draws_the_loss_curve():
    assert outputs(executed("neural_net"), "image/png")


def test_demo_html_shows_math_and_static_code():
    html = run_demo.to_html(executed("quickstart"))
    # the math as MathML (typeset by the browser, offline), the diagram as inline SVG
    assert "<math" in html and "<mi>Δ</mi>" in html and "<details" in html and "Show code" in html
    assert 'class="tensormagic-diagram"' in html and "tensormagic-check" in html


VERBOSE_NOTEBOOK = [
    "%load_ext tensormagic\nimport torch\n"
    "W1, b1 = torch.randn(3, 4), torch.randn(4)\nX = torch.randn(5, 3)",
    "%%tensorgrad W1 b1 --verbose\nH[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])",
]


def test_nbconvert_html_shows_code_and_math_without_a_kernel(tmp_path):
    """Executed and saved (with whatever widget state nbclient stores), then exported by plain
    `jupyter nbconvert --to html`: the code and the math are in the page itself."""
    path = tmp_path / "verbose.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in VERBOSE_NOTEBOOK])
    nbformat.write(nb, path)
    nbformat.write(run_demo.execute(path), path)
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "verbose.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<details class="tensormagic-code">(.*?)</details>', page, re.S)
    assert len(blocks) == 1
    shown = visible(blocks[0])
    assert "def forward(X, W1, b1):" in shown and "def backward(" in shown
    assert "# ΔW1" in shown and "# Δb1" in shown and "forward contraction" in shown
    maths = re.findall(r"<math.*?</math>", page, re.S)  # MathML: typeset by the browser itself
    assert maths and "tanh" in visible(maths[0]) and "Δ" in visible(maths[0])


def _verbose_executed(tmp_path, store_widget_state=False):
    path = tmp_path / "verbose.ipynb"
    cells = VERBOSE_NOTEBOOK + ["%%tensorgrad W1\ns := X[n,i] * W1[i,h] * b1[h]"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return run_demo.execute(path, store_widget_state=store_widget_state), path


def test_a_cell_in_a_kernel_carries_the_static_view_and_the_live_inspector(tmp_path):
    nb, _ = _verbose_executed(tmp_path)
    verbose, plain = nb.cells[1], nb.cells[2]
    static, live = static_and_live(verbose)
    shown = visible(static.data["text/html"])
    assert shown.startswith("defined H_fn(X, W1, b1); bound H [5×4]") and "Show code" in shown
    assert "def backward(" in shown and "forward contraction" in shown
    assert "<style>" in static.data["text/html"]  # which of the two shows, where both could
    assert "def backward(" in static.data["text/plain"]  # a console that shows no HTML
    assert live.data[WIDGET_VIEW]["model_id"] and live.data["text/html"] == ""
    assert live.data["text/plain"].startswith("<tensormagic inspector of H_fn")
    static, live = static_and_live(plain)  # not verbose: the status line only, no code
    assert static.data["text/plain"] == "defined s_fn(X, W1, b1); bound s (scalar)"
    assert "<details" not in static.data["text/html"] and WIDGET_VIEW in live.data
    assert not any(o.output_type == "stream" for c in nb.cells[1:] for o in c.outputs)


def test_stored_widget_state_holds_the_inspector_and_the_export_still_shows_the_code(tmp_path):
    """nbclient's default stores widget state; the inspector is then in it (its code toggle on,
    as verbose mode says), and nbconvert still shows the static view. (It also loads the widget
    manager from a CDN for such a notebook: why run_demo stores no state.)"""
    nb, path = _verbose_executed(tmp_path, store_widget_state=True)
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["state"] for m in state.values()]
    assert sum("tensormagic-inspector" in m.get("_dom_classes", ()) for m in models) == 2
    codes = [m["value"] for m in models if m.get("description") == "Code"]
    assert sorted(codes) == [False, True]  # the verbose cell's is on, the other's off
    page = run_demo.to_html(nb)
    blocks = re.findall(r'<details class="tensormagic-code">(.*?)</details>', page, re.S)
    assert len(blocks) == 1 and "def backward(" in visible(blocks[0])
    assert "unpkg.com" in page and "unpkg.com" not in run_demo.to_html(_verbose_executed(tmp_path)[0])


def _messages(kernel, code):
    """The display messages a cell sends (display_data, update_display_data), in order."""
    sent = []

    def hook(msg):
        if msg["msg_type"] in ("display_data", "update_display_data"):
            sent.append((msg["msg_type"], msg["content"]))
    kernel.execute_interactive(code, output_hook=hook, timeout=120)
    return sent


def test_a_cell_says_it_plans_while_its_first_call_runs_and_the_math_takes_its_place():
    from jupyter_client.manager import start_new_kernel
    manager, kernel = start_new_kernel(kernel_name="python3")
    try:
        _messages(kernel, "%load_ext tensormagic\nimport torch\nB, C = torch.ones(2, 3), torch.ones(3, 4)")
        sent = _messages(kernel, "%%tensorgrad\nA[i,k] := B[i,j] * C[j,k]")
        (kind, first), (update, math) = sent[:2]
        assert kind == "display_data" and update == "update_display_data"
        assert first["data"] == {"text/plain": "A_fn: planning the contractions of its first call…"}
        assert math["transient"]["display_id"] == first["transient"]["display_id"]
        assert "text/latex" in math["data"] and "ΔB[i,j]" in math["data"]["text/plain"]
        failed = _messages(kernel, "C = torch.ones(4, 4)\nget_ipython().run_cell_magic('tensorgrad', '', "
                                   "'A[i,k] := B[i,j] * C[j,k]')")
        assert [k for k, _ in failed] == ["display_data", "update_display_data"]
        assert failed[1][1]["data"] == {"text/plain": ""}  # gone: the error is all the cell shows
        quiet = _messages(kernel, "%%tensorgrad --no-eval\nA[i,k] := B[i,j] * C[j,k]")
        assert "planning" not in quiet[0][1]["data"]["text/plain"]  # no call, no line
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def test_failing_cell_in_a_kernel_shows_one_short_message(tmp_path):
    cells = ["%load_ext tensormagic\nimport torch\nB = torch.ones(2, 3)",
             "%%tensorgrad\nA[i,m] := B[i,j]",
             "print(sorted(n for n in dir() if n.startswith('A')))"]
    path = tmp_path / "failing.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    nb = run_demo.execute(path, allow_errors=True)
    (error,) = nb.cells[1].outputs
    assert error.output_type == "error" and error.ename == "TensorgradCellError"
    assert "'m'" in error.traceback[0] and "Traceback" not in "".join(error.traceback)
    assert error.traceback[-1].strip() == "^" and len(error.traceback) == 3
    assert nb.cells[2].outputs[0].text == "[]\n"  # nothing was bound
