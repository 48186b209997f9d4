"""fn.inspector(): a compiled cell in a live notebook, as ipywidgets.

A row of toggles, each showing its own view of the cell below the row: Code (the generated
forward and backward), Plan (the contractions with their costs), Tangents (forward mode) and
Diagram (the tensor networks); a gradient picker that narrows every view to one input's
gradient (its formula, the backward's lines that compute it, the contractions it passes
through, its network); and a "Check gradients" button that runs fn.check() and shows its
✓/✗ badges in place. A view is made when first shown and kept; while one is being made (the
code of a first call plans its contractions first, which can take seconds) or a check runs,
a status line with a spinner says so.

Every click is a round trip to the kernel: the views are made by Python, so the inspector needs
a live kernel. Saved and exported notebooks show the magic's static view instead
(views/codeview.py: static_view). ipywidgets is imported here only, and only fn.inspector()
and the magic in a kernel import this module: the plain-Python API needs none of it.
"""
import html
from contextlib import contextmanager

try:
    import ipywidgets as widgets
except ImportError as err:  # the notebook extra brings it; nothing else of the package needs it
    raise ImportError("the inspector needs ipywidgets: pip install 'tensormagic[notebook]'") from err

from ..compiler.describe import describe
from ..language.errors import NotationError
from ..views.codeslice import gradient_slices
from ..views.codeview import INSPECTOR_CLASS, highlight_python, preformatted
from ..views.diagram import cell_diagram
from ..views.mathml import gradient_math, tangents_html

ALL = "all gradients"
TIPS = {"Code": "the generated forward and backward source",
        "Plan": "each contraction of the forward and the backward with its cost",
        "Tangents": "the derived tangents (forward mode)",
        "Diagram": "the statements as tensor networks"}
BUSY = {"Code": "generating the code (a first call of new shapes searches contraction paths "
                "first: this can take seconds)",
        "Plan": "planning the contractions", "Tangents": "deriving the tangents",
        "Diagram": "drawing the tensor networks"}
_MONO = "font-family: var(--jp-code-font-family, monospace)"
_SPINNER = '<i class="fa fa-spinner fa-spin"></i>'
_PROBLEMS = (NotationError, ValueError, TypeError, RuntimeError)


# -- the panes: what each view shows, as HTML, for the whole cell or one gradient (None: all) ---
# A gradient's code is its slice of the backward (views/codeslice.py); its plan, the
# contractions its gradient passes through (compiler/describe.py); its diagram, the statements
# beside its own formula's network.
def code_html(fn, gradient=None):
    """The generated forward and backward; for one gradient, the backward's lines computing it."""
    if gradient is None:
        wanted = f"# gradients computed: {', '.join(fn.wrt) or 'none'}\n"
        return highlight_python(wanted + fn.code)
    piece = gradient_slices(fn.code, fn.inputs).get(gradient)
    if piece is None or not piece.lines:
        return _note(f"No line of the backward computes Δ{gradient}: it is zero.")
    where = ", ".join(map(str, piece.lines))
    reads = f"; they read {', '.join(piece.saved)} from the forward" if piece.saved else ""
    return _note(f"The lines of the backward that compute Δ{gradient} (lines {where} of "
                 f"fn.code){reads}:") + highlight_python(piece.text)


def plan_html(fn, gradient=None):
    """The contraction plan; for one gradient, the contractions its gradient passes through."""
    if gradient is None:
        return preformatted(fn.plan)
    return preformatted(describe(fn._example().program, gradient))


def tangents_view(fn, gradient=None):
    """The derived tangents (forward mode: the same for every gradient)."""
    if not fn.tangent_derivation:
        return _note("No tangents: no input is in wrt.")
    return f'<div class="tensormagic-math">{tangents_html(fn)}</div>'


def diagram_html(fn, gradient=None):
    """The statements as tensor networks; for one gradient, beside its formula's network."""
    if gradient is None:
        return fn.diagram()._repr_html_()
    mine = [f for f in fn.derivation if f.of_input and f.name == gradient]
    return cell_diagram(fn.cell, mine)._repr_html_()


def formula_html(fn, gradient):
    """One gradient's derived formula as math."""
    math = gradient_math(fn, gradient)
    if math is None:
        return _note(f"Δ{gradient} has no derived formula.")
    return f'<div class="tensormagic-math tensormagic-formula">{math}</div>'


VIEWS = {"Code": code_html, "Plan": plan_html, "Tangents": tangents_view, "Diagram": diagram_html}


def _note(text):
    return f'<div style="color:#57606a;margin:0.3em 0">{html.escape(text)}</div>'


# -- the widget ---------------------------------------------------------------------------------
def inspector(fn, code=False, status=None, inputs=None):
    """The inspector of fn; code: show the code at once; status: the magic's status line;
    inputs: the values its check runs at (or a function giving them when it runs)."""
    return Inspector(fn, code, status, inputs)


class Inspector(widgets.VBox):
    """The live view of one compiled cell. Its parts are attributes, to drive it from Python or
    to place them in a layout of your own: `toggles` and `panes` ({"Code": ..., "Plan": ...,
    "Tangents": ..., "Diagram": ...}), `gradient` (the picker), `formula`, `check_button`,
    `report` (the check's badges) and `progress` (the status line)."""

    def __init__(self, fn, code=False, status=None, inputs=None):
        self.fn, self._made, self._inputs = fn, {}, inputs
        self.toggles = {name: widgets.ToggleButton(description=name, tooltip=TIPS[name],
                                                   value=code and name == "Code",
                                                   layout=widgets.Layout(width="auto"))
                        for name in VIEWS}
        self.panes = {name: widgets.HTML(layout=_pane_layout()) for name in VIEWS}
        self.gradient = widgets.Dropdown(options=[(ALL, None)] + [(f"Δ{n}", n) for n in fn.wrt],
                                         description="gradient", disabled=not fn.wrt,
                                         layout=widgets.Layout(width="auto"))
        self.check_button = widgets.Button(description="Check gradients", icon="check",
                                           disabled=not fn.wrt,
                                           tooltip="compare each derived gradient with central "
                                                   "differences (fn.check())")
        self.formula, self.progress, self.report = widgets.HTML(), widgets.HTML(), widgets.HTML()
        bar = widgets.HBox([*self.toggles.values(), self.gradient, self.check_button],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        super().__init__([_head(fn, status), bar, self.progress, self.formula,
                          *self.panes.values(), self.report])
        self.add_class(INSPECTOR_CLASS)
        for name, toggle in self.toggles.items():
            toggle.observe(lambda _, name=name: self._show(name), "value")
        self.gradient.observe(lambda _: self._pick(), "value")
        self.check_button.on_click(lambda _: self.check())
        self._show("Code")

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and a line for frontends that show no widgets (a console, an export)."""
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = (f"<tensormagic inspector of {self.fn.name}: a live widget; run the "
                              f"cell in JupyterLab or Jupyter Notebook to use it>")
        return data

    def close(self):
        """Close every widget it is made of (a container's close leaves its children open, and
        the kernel holds every open widget)."""
        for widget in _descendants(self):
            if widget is not self:
                widget.close()
        super().close()

    def check(self):
        """What the button does: fn.check() at the inputs it was given (the cell's current
        ones, in the magic), or at small random ones; its badges shown in `report`."""
        self.check_button.disabled, self.check_button.icon = True, "spinner spin"
        try:
            at = self._inputs() if callable(self._inputs) else self._inputs
            with self._busy("checking each gradient against central differences"):
                report = self.fn.check(*at) if at is not None else self.fn.check()
            self.report.value = report._repr_html_()
            return report
        finally:
            self.check_button.disabled, self.check_button.icon = False, "check"

    def _show(self, name):
        """Show or hide one view, as its toggle says (made for the gradient picked)."""
        pane, on = self.panes[name], self.toggles[name].value
        if on:
            pane.value = self._pane(name)
        pane.layout.display = None if on else "none"

    def _pick(self):
        """A gradient picked: its formula, and each open view narrowed to it."""
        name = self.gradient.value
        self.formula.value = "" if name is None else self._made_once(("formula", name), formula_html)
        for view, toggle in self.toggles.items():
            if toggle.value:
                self._show(view)

    def _pane(self, view):
        key = (view, self.gradient.value)
        if key not in self._made:
            with self._busy(BUSY[view]):
                self._made_once(key, VIEWS[view])
        return self._made[key]

    def _made_once(self, key, make):
        if key not in self._made:
            try:
                self._made[key] = make(self.fn, key[1])
            except _PROBLEMS as err:  # shown where the person looks: a widget callback's
                # exception would only reach the browser's console
                self._made[key] = _problem(err)
        return self._made[key]

    @contextmanager
    def _busy(self, what):
        """The status line, with a spinner, while `what` runs (widget updates reach the page
        at once, while the kernel still works)."""
        self.progress.value = f'<div class="tensormagic-progress">{_SPINNER} {html.escape(what)}…</div>'
        try:
            yield
        finally:
            self.progress.value = ""


def _descendants(widget):
    """The widget, its children, theirs, and the layout and style widgets of each."""
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)
    for part in ("layout", "style"):
        if isinstance(getattr(widget, part, None), widgets.Widget):
            yield getattr(widget, part)
    yield widget


def _pane_layout():
    """Hidden until its toggle is on; a rule on its left sets each view apart."""
    return widgets.Layout(display="none", border_left="3px solid #d0d7de", padding="0 0 0 8px",
                          margin="4px 0")


def _head(fn, status):
    text = status or f"{fn.name}({', '.join(fn.inputs)}) → {', '.join(fn.outputs)}"
    return widgets.HTML(f'<pre class="tensormagic-status" style="margin:0;{_MONO}">'
                        f'{html.escape(text)}</pre>')


def _problem(err):
    text = err.short() if isinstance(err, NotationError) else f"{type(err).__name__}: {err}"
    return f'<pre style="color:#cf222e">{html.escape(text)}</pre>'
