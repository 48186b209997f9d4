"""The verbose view's toggle: generated code and contraction plan behind a "Show code" click.

A `Folded` block displays as an HTML ``<details>`` element.  The browser opens and closes it
by itself, with no kernel round trip and no widget state, so the same output works in a live
JupyterLab, in a saved notebook reopened without a kernel, in an nbconvert HTML export and on
GitHub.  (An ipywidgets toggle was tried first: a saved notebook's widget state then wins over
any static fallback, and without a kernel its button does nothing.)  Its ``text/plain`` form,
which terminal IPython prints, is the content as text.
"""
import html

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

SHOW = "Show code"
_FORMATTER = HtmlFormatter(noclasses=True, nobackground=True,
                           prestyles="font-family: var(--jp-code-font-family, monospace)")


def highlight_python(source):
    """Python source as HTML with inline colours and fonts (no stylesheet needed)."""
    return highlight(source, PythonLexer(), _FORMATTER)


def preformatted(text):
    """Plain text (a plan, formulas) as an HTML block that keeps its columns."""
    return f"<pre>{html.escape(text)}</pre>"


class Folded:
    """A titled block shown collapsed: `summary` always, `body_html` after a click.

    `text` is the plain-text form (terminal IPython, logs, ``str``); empty: none, so a
    terminal prints nothing for it."""

    def __init__(self, summary, body_html, text, css_class="tensormagic-code"):
        self.summary, self.body_html, self.text, self.css_class = summary, body_html, text, css_class

    def _repr_mimebundle_(self, include=None, exclude=None):
        block = (f'<details class="{self.css_class}"><summary>{html.escape(self.summary)}</summary>\n'
                 f"{self.body_html}</details>")
        return {"text/html": block, **({"text/plain": self.text} if self.text else {})}

    def __str__(self):
        return self.text


def code_view(code, plan, wrt):
    """The generated source and its contraction plan, folded behind "Show code"."""
    wanted = f"# gradients computed: {', '.join(wrt) or 'none'}\n"
    body = highlight_python(wanted + code) + preformatted(f"contraction plan:\n{plan}")
    text = f"generated code:\n{wanted}{code}\ncontraction plan:\n{plan}"
    return Folded(SHOW, body, text)
