"""Issue 10, item 12: what the library refuses reaches the magic's user as a short error
(no traceback, the namespace untouched) and the CLI's as a message and exit status 2."""
import pytest
import torch
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from tensormagic.frontends.cli import main
from tensormagic.frontends.magic import TensorgradCellError

F64, C128 = torch.float64, torch.complex128


MAGIC_ERRORS = [
    ("s := x[i] * 9**9**9", "overflows float64"),
    ("s := x[i] * 0**-1", "divides by zero"),
    ("s := x\x00[i]", "control character"),
    ("s := " + "-" * 10000 + "x[i]", "split it into several statements"),
    ("s := " + " + ".join(["x[i]"] * 300), "split it into several statements"),
    ("y[i] := relu(z[i])", "does not take complex"),
    ("y[i] := x[i]'", "has no transpose '"),  # not Python's "unterminated string literal"
    ("y[i] := x[i']", "a prime is written ′"),
]


@pytest.mark.parametrize("cell, message", MAGIC_ERRORS, ids=[m for _, m in MAGIC_ERRORS])
def test_magic_errors_are_short(cell, message):
    ip = start_ipython() or get_ipython()  # (whichever test module started it first)
    ip.run_line_magic("load_ext", "tensormagic")
    ip.push({"x": torch.randn(3, dtype=F64), "z": torch.randn(3, dtype=C128)})
    before = dict(ip.user_ns)
    with pytest.raises(TensorgradCellError, match=message) as info:
        ip.run_cell_magic("tensorgrad", "--verbose", cell)
    assert len(info.value._render_traceback_()) <= 3  # message, statement, caret
    assert {k: v for k, v in ip.user_ns.items() if k in before} == before
    assert not set(ip.user_ns) - set(before)


@pytest.mark.parametrize("cell, message", MAGIC_ERRORS[:5], ids=[m for _, m in MAGIC_ERRORS[:5]])
def test_cli_errors_are_short(cell, message, capsys):
    assert main([cell, "--code", "--plan"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 3


