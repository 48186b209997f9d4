"""The verbose view's "Show code" toggle.

`CodeToggle` is a live ipywidgets box: a ToggleButton above the generated
source, which starts hidden.  Its display bundle also carries a static HTML
``<details>`` block, so a saved notebook or an HTML export without a running
kernel still shows the code behind a click.
"""
import ipywidgets as widgets
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

SHOW, HIDE = "Show code", "Hide code"
_FORMATTER = HtmlFormatter(noclasses=True, nobackground=True,
                           prestyles="font-family: var(--jp-code-font-family, monospace)")


def highlight_python(source):
    """Python source as HTML with inline colours and fonts (no stylesheet needed)."""
    return highlight(source, PythonLexer(), _FORMATTER)


class CodeToggle(widgets.VBox):
    """A ToggleButton that shows or hides syntax-highlighted source.

    ``toggle.button.value = True`` shows the code (``toggle.code.layout.display``
    becomes None) and relabels the button "Hide code"; False hides it again.
    """

    def __init__(self, source):
        self.button = widgets.ToggleButton(
            value=False, description=SHOW, icon="code", tooltip="show or hide the generated code"
        )
        highlighted = highlight_python(source)
        self.code = widgets.HTML(highlighted, layout=widgets.Layout(display="none"))
        self._static = (f'<details class="tensormagic-code"><summary>{SHOW}</summary>\n'
                        f"{highlighted}</details>")
        super().__init__([self.button, self.code])
        self.add_class("tensormagic-code-toggle")
        self.button.observe(self._on_toggle, names="value")

    def _on_toggle(self, change):
        shown = change["new"]
        self.code.layout.display = None if shown else "none"
        self.button.description = HIDE if shown else SHOW

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = self._static
        return bundle

