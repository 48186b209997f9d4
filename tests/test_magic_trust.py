"""%%tensorgrad --diagram / --check and %tensorgrad_export in a real IPython shell."""
import subprocess
import sys

import pytest
import torch
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from conftest import run_magic

SEED = "A[i,k] := B[i,j] * C[j,k] * D[l,l]"
SVG = "image/svg+xml"


run = run_magic  # the shell and ip fixtures live in conftest.py


def public(ns):
    return {name: id(value) for name, value in ns.items() if not name.startswith("_")}


def test_diagram_flag_shows_the_network(ip):
    captured = run(ip, "B C --diagram", SEED)
    svgs = [o.data[SVG] for o in captured.outputs if SVG in o.data]
    assert len(svgs) == 1 and 'data-name="B"' in svgs[0] and 'class="loop"' in svgs[0]
    assert [o for o in run(ip, "B C", SEED).outputs if SVG in o.data] == []


def test_verbose_shows_the_network_and_the_plan(ip):
    captured = run(ip, "--verbose", SEED)
    svgs = [o.data[SVG] for o in captured.outputs if SVG in o.data]
    assert len(svgs) == 2 and "tensormagic-diagram" in svgs[0] and "tensormagic-plan" in svgs[1]
    assert [o for o in run(ip, "--verbose --quiet", SEED).outputs if SVG in o.data] == []


def test_check_flag_shows_badges_and_changes_nothing_else(ip):
    run(ip, "B C", SEED)
    before = public(ip.user_ns)
    state = torch.get_rng_state()
    captured = run(ip, "B C --check", SEED)
    assert public(ip.user_ns).keys() == before.keys()
    assert torch.equal(torch.get_rng_state(), state)
    report = [o.data for o in captured.outputs if "tensormagic-check" in o.data.get("text/html", "")]
    assert len(report) == 1
    plain = report[0]["text/plain"]
    assert "✓ ΔB[i,j] = ΔA[i,k] * C[j,k] * D[l,l]    (max error" in plain
    assert "✓ ΔC[j,k]" in plain and "✗" not in plain


def test_export_line_magic(ip, tmp_path):
    run(ip, "B C", SEED)
    path = tmp_path / "model_ops.py"
    with capture_output() as captured:
        ip.run_line_magic("tensorgrad_export", f"A_fn {path}")
    assert f"wrote {path}" in captured.stdout
    code = (f"import sys, torch; sys.modules['tensormagic'] = None; sys.path.insert(0, {str(tmp_path)!r})\n"
            "import model_ops\n"
            "B = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)\n"
            "C = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)\n"
            "D = torch.randn(5, 5, dtype=torch.float64)\n"
            "assert torch.allclose(model_ops.A_fn(B, C, D), B @ C * torch.trace(D))\n"
            "assert torch.autograd.gradcheck(lambda b, c: model_ops.A_fn(b, c, D), (B, C))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with pytest.raises(UsageError, match="usage"):
        ip.run_line_magic("tensorgrad_export", "A_fn")
    with pytest.raises(UsageError, match="not a callable defined by"):
        ip.run_line_magic("tensorgrad_export", f"B {path}")


def test_quiet_check_speaks_only_when_a_gradient_fails(ip, monkeypatch):
    captured = run(ip, "B C --check --quiet", SEED)
    assert captured.outputs == [] and captured.stdout == ""
    from tensormagic.runtime import checking
    monkeypatch.setattr(checking, "ATOL", -1.0)  # every comparison now fails
    captured = run(ip, "B C --check --quiet", SEED)
    (report,) = captured.outputs
    assert "✗ ΔB[i,j]" in report.data["text/plain"]
