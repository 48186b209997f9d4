"""Issue 20's flags in a real IPython shell and on the command line: --hessian (the Hessian's
blocks as text, LaTeX and MathML), --pad, --symmetric, and --sizes for a scatter's
scattered dim; bad values are one-line errors that change nothing."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from IPython.core.error import UsageError

from conftest import run_magic as run
from tensormagic.frontends.magic import TensorgradCellError

REPO = Path(__file__).resolve().parents[1]
QUADRATIC = "L := x[i] * A[i,j] * x[j]"


def snapshot(ns):
    return {name: id(value) for name, value in ns.items() if not name.startswith("_")}


def test_hessian_flag_shows_the_blocks_as_math(ip):
    ip.push({"x": torch.randn(3, dtype=torch.float64), "A": torch.randn(3, 3, dtype=torch.float64)})
    captured = run(ip, "x --hessian x", QUADRATIC)
    fn = ip.user_ns["L_fn"]
    shown = [o.data for o in captured.outputs if "∂²L" in o.data.get("text/plain", "")]
    assert len(shown) == 1
    (math,) = shown
    assert math["text/plain"] == "∂²L/∂x[i]∂x[k] = A[i,k] + A[k,i]" == fn.hessian_formulas[("x", "x")]
    assert r"\frac{\partial^2 L}{\partial x_{i}\, \partial x_{k}}" in math["text/latex"]
    assert "<mo>∂</mo>" in math["text/html"] and "<msup><mo>∂</mo><mn>2</mn></msup>" in math["text/html"]
    torch.testing.assert_close(fn.hessian(ip.user_ns["x"], ip.user_ns["A"]), ip.user_ns["A"] + ip.user_ns["A"].T)


def test_hessian_all_shows_every_block(ip):
    ip.push({"x": torch.randn(3, dtype=torch.float64), "A": torch.randn(3, 3, dtype=torch.float64)})
    captured = run(ip, "--hessian all", QUADRATIC)
    (text,) = [o.data["text/plain"] for o in captured.outputs if "∂²L" in o.data.get("text/plain", "")]
    assert text.count("∂²L/") == 4


@pytest.mark.parametrize("line, cell, says", [
    ("--hessian x", "y[i] := A[i,j] * x[j]", "last output is a scalar"),
    ("x --hessian A", QUADRATIC, "'A', which is not in wrt"),
])
def test_hessian_flag_errors_change_nothing(ip, line, cell, says):
    before = snapshot(ip.user_ns)
    with pytest.raises(TensorgradCellError) as raised:
        run(ip, line, cell)
    assert says in str(raised.value) and len(str(raised.value).splitlines()) == 1
    assert snapshot(ip.user_ns) == before


def test_pad_flag(ip):
    x, w = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(4, 3, 3, dtype=torch.float64)
    ip.push({"x": x, "w": w})
    captured = run(ip, "--pad x=1", "y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]")
    torch.testing.assert_close(ip.user_ns["y"], F.conv1d(x, w, padding=1))
    assert ip.user_ns["y_fn"].pad == {"x": 1}
    assert "x padded by 1" in captured.outputs[0].data["text/plain"]


@pytest.mark.parametrize("line", ["--pad x", "--pad x=0", "--pad 1=x"])
def test_bad_pad_is_a_usage_error(ip, line):
    with pytest.raises(UsageError):
        run(ip, line, "y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]")
    assert "y_fn" not in ip.user_ns


def test_pad_misuse_is_one_line_with_a_caret(ip):
    with pytest.raises(TensorgradCellError) as raised:
        run(ip, "", "y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]")
    assert "pad it" in str(raised.value) and "^" in str(raised.value)


def test_symmetric_flag(ip):
    H = torch.randn(3, 3, dtype=torch.float64)
    x, y = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    ip.push({"x": x, "y": y, "H": H + H.T})
    run(ip, "--symmetric H", "E := x[i] * H[i,j] * y[j]")
    fn = ip.user_ns["E_fn"]
    assert fn.symmetric == ("H",)
    Hr = ip.user_ns["H"].clone().requires_grad_()
    fn(x, Hr, y).backward()
    torch.testing.assert_close(Hr.grad, 0.5 * (torch.outer(x, y) + torch.outer(y, x)))


def test_symmetric_misuse(ip):
    with pytest.raises(TensorgradCellError) as raised:
        run(ip, "--symmetric x", QUADRATIC)
    assert "square matrix" in str(raised.value)


def test_sizes_flag_sizes_a_scatter(ip):
    seg = torch.tensor([0, 2, 2, 1])
    X = torch.randn(4, 3, dtype=torch.float64)
    ip.push({"seg": seg, "X": X})
    run(ip, "--sizes seg=3", "S[seg[n], d] := X[n, d]")
    torch.testing.assert_close(ip.user_ns["S"], torch.zeros(3, 3, dtype=torch.float64).index_add(0, seg, X))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tensormagic", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_cli_flags():
    done = cli("y[b,o,i] := x[b,c,i+a-1] * w[o,c,a]", "L := y[b,o,i] * y[b,o,i]", "--pad", "x=1", "--hessian", "w")
    assert done.returncode == 0, done.stderr
    assert "x padded by 1" in done.stdout and "∂²L/∂w[o,c,a]∂w[" in done.stdout
    done = cli("S[seg[n], d] := X[n, d]", "--sizes", "seg=3", "--code")
    assert done.returncode == 0 and "index_put" in done.stdout, done.stderr
    done = cli(QUADRATIC, "--symmetric", "A")
    assert done.returncode == 0 and "A symmetric" in done.stdout and "0.5 *" in done.stdout, done.stderr
    done = cli(QUADRATIC, "--pad", "x")
    assert done.returncode == 2 and "--pad takes" in done.stderr
