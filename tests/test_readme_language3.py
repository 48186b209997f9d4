"""The README's examples of issue 20's language (second order, scatters, padding, declared
structure) run, and print what the README says they print."""
import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
START, END = "### Second order, derived and shown", "### Several statements"
BLOCKS = re.findall(r"```python\n(.*?)```", README[README.index(START):README.index(END)], re.S)


def test_there_are_examples_for_each_item():
    assert len(BLOCKS) == 4


def test_each_example_runs_and_prints_what_its_comments_say():
    for block in BLOCKS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README", "exec"), {})
        said = [line.split("# ", 1)[1].strip() for line in block.splitlines()
                if line.lstrip().startswith("print(") and "# " in line]
        assert out.getvalue().splitlines() == said, (out.getvalue(), said)
