"""The quickstart in a real JupyterLab, driven through Debian's chromium.

Runs every cell of demo_notebooks/quickstart.ipynb (outputs stripped first, so
everything checked here was produced live), then checks that the derivation
renders as MathML and that each cell's live inspector works: its code toggle,
its gradient picker, its "Check gradients" button; then that the same notebook,
saved and reopened without its kernel, and exported by nbconvert, shows the static
view with a working "Show code" fold.  Screenshots go to tests/artifacts/.
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Lab settings: no windowing (every cell stays laid out), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}
NOTEBOOK = "window.jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"""() => {{
    const nb = window.jupyterapp && {NOTEBOOK};
    const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
    return Boolean(kernel) && kernel.status === 'idle';
}}"""
# 'done' when every code cell has run and the kernel is idle; 'error' as soon as a cell fails.
RUN_STATE = f"""() => {{
    const nb = {NOTEBOOK};
    const cells = nb.content.widgets.filter(c => c.model.type === 'code');
    if (cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))) return 'error';
    const ran = cells.every(c => c.model.executionCount !== null);
    return ran && nb.sessionContext.session.kernel.status === 'idle' ? 'done' : '';
}}"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stripped_quickstart(path):
    """The quickstart with no outputs, so only a live run can pass."""
    nb = nbformat.read(REPO / "demo_notebooks" / "quickstart.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


CHECKS = [
    "%load_ext tensormagic\nimport torch\nfrom test_render import mps_inputs, mps_norm\n"
    "X, W1, b1 = torch.randn(5, 3), torch.randn(3, 4), torch.randn(4)  # no requires_grad\n"
    "globals().update(mps_inputs(16))\nMPS16 = mps_norm(16)",
    "%%tensorgrad W1 b1 --verbose\nH[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])",
    "get_ipython().run_cell_magic('tensorgrad', '', MPS16)",
]
MPS_SECONDS = 10  # from its output arriving to its math typeset (a 30-site MPS froze Lab ~10 s)


def _checks_notebook(path):
    """A verbose cell whose inputs need no gradient, and a 16-site MPS."""
    cells = [nbformat.v4.new_code_cell(c) for c in CHECKS]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)


INSPECTED = [
    "%load_ext tensormagic\nimport torch\n"
    "X, W1, b1 = torch.randn(5, 3), torch.randn(3, 4), torch.randn(4)\nV, T = torch.randn(4), torch.randn(5)",
    "%%tensorgrad W1 b1 --verbose\nH[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])",
    "%%tensorgrad W1 b1 V\nH[n,h] := tanh(X[n,i] * W1[i,h] + b1[h])\nL := (H[n,h]*V[h] - T[n])**2",
]
CHECK_SECONDS = 10  # from the click to the badges (the check itself takes well under a second)


def _inspector_notebook(path):
    """A verbose cell (code shown at once) and a two-statement cell that is not."""
    cells = [nbformat.v4.new_code_cell(c) for c in INSPECTED]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)


def _write_settings(directory):
    for name, value in LAB_SETTINGS.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _wait_until_up(url, server, log, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text().splitlines()[-15:]
            raise RuntimeError(f"jupyter lab exited with {server.returncode}:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} within {seconds}s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a fresh copy of the quickstart: (url, token,
    the folder it serves)."""
    root, home = tmp_path_factory.mktemp("lab_root"), tmp_path_factory.mktemp("lab_home")
    _stripped_quickstart(root / "quickstart.ipynb")
    _checks_notebook(root / "checks.ipynb")
    _inspector_notebook(root / "inspector.ipynb")
    _write_settings(home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    pythonpath = os.pathsep.join(p for p in (str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH"))
                                 if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
        "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{url}/api/status?token={token}", server, home / "server.log")
        yield url, token, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def page():
    """A chromium page (the system's chromium: playwright downloads no browser here)."""
    expect.set_options(timeout=30_000)  # each toggle click is a round trip to the kernel
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def _offline(page, allowed):
    """Abort every request that does not start with one of the allowed prefixes; returns the
    list the aborted URLs are collected in."""
    blocked = []

    def route(r):
        if r.request.url.startswith(allowed):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()
    page.route("**/*", route)
    return blocked


def _rendered(locator):
    box = locator.bounding_box()
    return box is not None and box["width"] > 20 and box["height"] > 10


def test_quickstart_renders_math_and_toggles_code(lab, page):
    url, token, _ = lab
    ARTIFACTS.mkdir(exist_ok=True)
    _offline(page, (url,))  # the lab itself, and no other network: the math must not need any
    _run_all(page, url, token, "quickstart.ipynb")
    panel = page.locator(".jp-NotebookPanel:visible")  # the open tab

    math = panel.locator(".jp-OutputArea-output[data-mime-type='text/html'] math")
    expect(math.first).to_be_visible(timeout=60_000)  # MathML: the browser typesets it itself
    seed = panel.locator(".jp-CodeCell").filter(has_text="%%tensorgrad B C").first
    expect(seed.locator("math")).to_have_count(1)
    assert _rendered(seed.locator("math mtable"))
    seed.screenshot(path=ARTIFACTS / "quickstart_seed.png")
    assert math.count() >= 3

    drawn = panel.locator(".jp-CodeCell").filter(has_text="--diagram --check").first
    diagram = drawn.locator("svg.tensormagic-diagram")
    expect(diagram).to_be_visible()
    drawn.scroll_into_view_if_needed()
    assert _rendered(diagram) and diagram.locator("g.node[data-name='B']").count() == 1
    expect(drawn.locator("table.tensormagic-check")).to_contain_text("✓")
    drawn.screenshot(path=ARTIFACTS / "quickstart_diagram.png")

    cell = panel.locator(".jp-CodeCell").filter(has_text="%%tensorgrad W --verbose").last
    code = _live_code(cell, shown=True)  # verbose: the code is shown at once
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=ARTIFACTS / "quickstart_code_shown.png")
    page.screenshot(path=ARTIFACTS / "quickstart_lab.png")
    _toggle(cell, "Code")
    expect(code).to_be_hidden()


def _live_code(cell, shown):
    """The cell's live inspector, in place of its static view; its code pane, after a click
    on the Code toggle if it was not shown."""
    inspector = cell.locator(".tensormagic-inspector")
    expect(inspector).to_be_visible()
    expect(cell.locator(".tensormagic-static")).to_be_hidden()  # it gave way to the inspector
    code = inspector.locator(".widget-html-content").filter(has_text="def backward(")
    if not shown:
        expect(code).to_have_count(0)  # made when first shown
        _toggle(cell, "Code")
    expect(code).to_be_visible()
    return code


def _toggle(cell, name):
    cell.locator(".tensormagic-inspector").get_by_role("button", name=name, exact=True).click()


def _run_all(page, url, token, name):
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")  # reset: no other tab restored
    page.wait_for_function(KERNEL_IDLE, timeout=240_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = page.wait_for_function(RUN_STATE, timeout=240_000, polling=500).json_value()
    if state == "error":
        page.screenshot(path=ARTIFACTS / f"{name}_error.png", full_page=True)
    assert state == "done", f"a cell of {name} failed in JupyterLab (see tests/artifacts)"


def test_exported_html_shows_math_and_diagram_offline(page, tmp_path):
    """nbconvert's HTML of an executed notebook, opened with every network request refused."""
    ARTIFACTS.mkdir(exist_ok=True)
    run_demo = _run_demo()
    cells = ["%load_ext tensormagic\nimport torch\nB, C, D = torch.randn(2, 3), torch.randn(3, 4), torch.randn(5, 5)",
             "%%tensorgrad B C --diagram --check\nA[i,k] := B[i,j] * C[j,k] * D[l,l]"]
    path = tmp_path / "offline.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    html = tmp_path / "offline.html"
    html.write_text(run_demo.to_html(run_demo.execute(path)), encoding="utf-8")
    blocked = _offline(page, ("file:",))
    page.goto(html.as_uri())
    math = page.locator("math").first
    expect(math).to_be_visible()
    assert _rendered(math) and page.locator("math mfrac, math msub").count() > 3
    assert "\\begin{aligned}" not in page.inner_text("body")  # no LaTeX source left showing
    diagram = page.locator("svg.tensormagic-diagram")
    expect(diagram).to_be_visible()
    assert _rendered(diagram) and diagram.locator("g.loop[data-index='l']").count() == 1
    assert page.locator("table.tensormagic-check").inner_text().count("✓") == 2
    page.locator(".jp-Cell").nth(1).screenshot(path=ARTIFACTS / "offline_html.png")
    assert all(not u.startswith("file:") for u in blocked)


def _run_demo():
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_demo", REPO / "demo_notebooks" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verbose_code_without_grad_and_a_16_site_mps(lab, page):
    url, token, _ = lab
    ARTIFACTS.mkdir(exist_ok=True)
    _offline(page, (url,))  # JupyterLab's own MathJax typesets the compact LaTeX: no network
    _run_all(page, url, token, "checks.ipynb")
    cells = page.locator(".jp-NotebookPanel:visible .jp-CodeCell")  # not the restored quickstart
    mps = cells.nth(2)
    mps.scroll_into_view_if_needed()
    expect(mps.locator(".jp-OutputArea-output[data-mime-type='text/latex']")).to_have_count(1)
    started = time.monotonic()
    expect(mps.locator("mjx-container")).to_have_count(1, timeout=60_000)
    took = time.monotonic() - started
    assert took < MPS_SECONDS, f"the 16-site MPS took {took:.1f}s to typeset"
    expect(mps.locator("details.tensormagic-formulas")).to_have_count(1)
    mps.screenshot(path=ARTIFACTS / "mps16.png")
    print(f"16-site MPS typeset in {took:.2f}s")
    # its check takes about a second: the button and a status line say it runs meanwhile
    started = time.monotonic()
    mps.get_by_role("button", name="Check gradients").click()
    expect(mps.locator(".tensormagic-progress")).to_contain_text("checking each gradient")
    expect(mps.locator(".tensormagic-inspector .fa-spinner").first).to_be_visible()
    badges = mps.locator("table.tensormagic-check")
    expect(badges).to_be_visible(timeout=CHECK_SECONDS * 1000)
    took = time.monotonic() - started
    assert badges.inner_text().count("✓") == 16 and "✗" not in badges.inner_text()
    expect(mps.locator(".tensormagic-progress")).to_have_count(0)
    assert took < CHECK_SECONDS, f"the 16-site check took {took:.1f}s from the click to its badges"
    print(f"16-site MPS: badges {took:.2f}s after the click")

    verbose = cells.nth(1)
    code = _live_code(verbose, shown=True)
    # X, W1, b1 need no gradient, yet the code shown computes the ones asked for
    expect(code).to_contain_text("# ΔW1")
    expect(code).to_contain_text("# Δb1")
    expect(code).not_to_contain_text("return (None, None")
    _toggle(verbose, "Plan")
    expect(verbose.locator(".tensormagic-inspector")).to_contain_text("backward contraction")
    verbose.scroll_into_view_if_needed()
    verbose.screenshot(path=ARTIFACTS / "verbose_no_grad_code_shown.png")


def test_the_live_inspector_toggles_picks_and_checks(lab, page):
    url, token, _ = lab
    ARTIFACTS.mkdir(exist_ok=True)
    _offline(page, (url,))  # the widgets' code comes with JupyterLab: no network
    _run_all(page, url, token, "inspector.ipynb")
    cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").nth(2)
    inspector = cell.locator(".tensormagic-inspector")
    code = _live_code(cell, shown=False)  # not verbose: hidden until the toggle is clicked
    expect(inspector.locator(".tensormagic-status")).to_have_text(
        "defined L_fn(X, W1, b1, V, T); bound H [5×4], L (scalar)")
    expect(code).to_contain_text("# ΔV")
    _toggle(cell, "Code")
    expect(code).to_be_hidden()
    _toggle(cell, "Code")
    expect(code).to_be_visible()

    inspector.locator("select").select_option(label="ΔW1")
    formula = inspector.locator(".tensormagic-formula math")
    expect(formula).to_have_count(1)
    names = formula.locator("mi").all_text_contents()  # (MathML has no innerText)
    assert "W1" in names and "b1" not in names and "V" not in names, names
    picked = inspector.locator(".widget-html-content").filter(has_text="compute ΔW1")
    expect(picked).to_contain_text("# ΔW1")
    for other in ("# ΔV", "# Δb1", "def forward"):
        expect(picked).not_to_contain_text(other)
    _toggle(cell, "Plan")
    expect(inspector).to_contain_text("ΔW1 passes through")

    started = time.monotonic()
    inspector.get_by_role("button", name="Check gradients").click()
    badges = inspector.locator("table.tensormagic-check")
    expect(badges).to_be_visible(timeout=CHECK_SECONDS * 1000)
    took = time.monotonic() - started
    assert badges.inner_text().count("✓") == 3 and "✗" not in badges.inner_text()
    assert took < CHECK_SECONDS, f"the check took {took:.1f}s from the click to its badges"
    print(f"Check gradients: badges {took:.2f}s after the click")
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=ARTIFACTS / "inspector.png")

    verbose = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").nth(1)
    expect(_live_code(verbose, shown=True)).to_contain_text("# ΔW1")  # verbose: shown at once


def test_saved_and_reopened_without_its_kernel_then_exported(lab, page, tmp_path):
    """The inspector notebook run live, saved by Lab, its kernel shut down, reopened: the static
    view (with a working fold) in place of the dead widget; then the saved file exported by
    nbconvert and opened offline: the same."""
    url, token, root = lab
    ARTIFACTS.mkdir(exist_ok=True)
    _offline(page, (url,))
    _run_all(page, url, token, "inspector.ipynb")
    expect(page.locator(".jp-NotebookPanel:visible .tensormagic-inspector")).to_have_count(2)
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(f"() => !{NOTEBOOK}.context.model.dirty")
    _shut_kernels_down(url, token)
    page.goto(f"{url}/lab/tree/inspector.ipynb?reset&token={token}")
    page.wait_for_function(KERNEL_IDLE, timeout=240_000)  # a new kernel: the widgets are gone
    cells = page.locator(".jp-NotebookPanel:visible .jp-CodeCell")
    dead = cells.locator(".jp-OutputArea-output.jupyter-widgets")  # Lab's placeholder for each
    expect(dead).to_have_count(2)
    expect(dead.first).to_have_text("Error displaying widget: model not found")
    for k in range(2):
        expect(dead.nth(k)).to_be_hidden()
    _static_fold_works(cells.nth(1))
    expect(cells.nth(2).locator(".tensormagic-static")).to_have_text(
        "defined L_fn(X, W1, b1, V, T); bound H [5×4], L (scalar)")
    cells.nth(1).screenshot(path=ARTIFACTS / "inspector_reopened.png")

    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                           "--output-dir", str(tmp_path), str(root / "inspector.ipynb")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page.unroute("**/*")
    blocked = _offline(page, ("file:",))
    page.goto((tmp_path / "inspector.html").as_uri())
    exported = page.locator(".jp-Cell").nth(1)
    _static_fold_works(exported)
    assert "inspector of" not in page.inner_text("body")  # the dead widget shows nothing
    exported.screenshot(path=ARTIFACTS / "inspector_exported.png")
    # nbconvert's page itself asks a CDN for require.js and MathJax (refused here, and needed by
    # nothing shown); no widget manager is asked for: no widget state was saved
    assert not [u for u in blocked if "widget" in u or "unpkg" in u], blocked


def _static_fold_works(cell):
    static = cell.locator(".tensormagic-static")
    expect(static).to_be_visible()
    expect(static.locator(".tensormagic-status")).to_have_text("defined H_fn(X, W1, b1); bound H [5×4]")
    summary, code = static.locator("details > summary"), static.locator("details pre").first
    expect(code).to_be_hidden()
    summary.click()
    expect(code).to_be_visible()
    expect(code).to_contain_text("def backward(")
    summary.click()
    expect(code).to_be_hidden()


def _shut_kernels_down(url, token):
    with urllib.request.urlopen(f"{url}/api/kernels?token={token}") as answer:
        kernels = json.load(answer)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}",
                                         method="DELETE")
        urllib.request.urlopen(request).close()
