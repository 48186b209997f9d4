"""What a %%tensorgrad cell shows: the math, the status line, the code in verbose mode.

In a terminal the status and the code are text. In a kernel the status line and the code fold
are one static output (views/codeview.py: static_view), followed by the cell's live inspector
(runtime/inspector.py), which takes its place wherever it renders; while the cell's first call
plans its contractions, the cell's first output says so, and the math then replaces it.
"""
from IPython.display import display

from ..views.codeview import Folded, code_view, preformatted, static_view
from ..views.mathml import cell_html


def show(fn, status, verbose, live=None, slot=None, inputs=None):
    """The derivation as math, a status line, and in verbose mode the tangents (forward
    mode) too, and the code and plan folded.  Where the math had to be shortened (a large
    network), the full text is folded below it.  live: the inspector's maker in a kernel,
    whose inspector follows the static view (and takes its place where it renders); slot: the
    planning line, which the math replaces. Returns the inspector shown, if any."""
    math, shortened = fn._math(tangents=verbose)
    full = fn.render_text(tangents=verbose)
    bundle = {"text/latex": math, "text/plain": full}
    if not shortened:  # MathML, which a browser typesets offline; a long cell's compact LaTeX
        bundle["text/html"] = cell_html(fn, tangents=verbose)  # (MathJax) reads better
    if slot is None:
        display(bundle, raw=True)
    else:
        slot.update(bundle, raw=True)
    if shortened:
        # (no text/plain: a terminal has printed the full text already)
        folded = Folded("Show the full formulas", preformatted(full), "",
                        css_class="tensormagic-formulas")
        display(folded._repr_mimebundle_(), raw=True)
    fold = code_view(fn.code, fn.plan, fn.wrt) if verbose else None
    if live is None:  # a terminal: the status and the code as text
        print(status)
        if fold is not None:
            display(fold._repr_mimebundle_(), raw=True)
        return None
    display(static_view(status, fold), raw=True)
    inspector = live(fn, code=verbose, status=status, inputs=inputs)
    # no HTML of its own: exports show the static view above it
    display({**inspector._repr_mimebundle_(), "text/html": ""}, raw=True)
    return inspector


def planning_line(fn):
    """In a kernel, the cell's first output while its first call runs: a line saying that the
    contractions are being planned (seconds for a large network), replaced by the math."""
    return display({"text/plain": f"{fn.name}: planning the contractions of its first call…"},
                   raw=True, display_id=True)


def live_inspector(shell):
    """The inspector's maker in a kernel (a frontend there may render widgets); None in a
    terminal, which shows text, or without ipywidgets, where the static view is all there is."""
    if getattr(shell, "kernel", None) is None:
        return None
    try:
        from ..runtime.inspector import inspector
    except ImportError:
        return None
    return inspector
