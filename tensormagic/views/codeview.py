"""The static verbose view: generated code and contraction plan behind a "Show code" click.

A `Folded` block displays as an HTML ``<details>`` element.  The browser opens and closes it
by itself, with no kernel round trip and no widget state, so the same output works in a saved
notebook reopened without a kernel, in an nbconvert HTML export and on GitHub.  Its
``text/plain`` form, which terminal IPython prints, is the content as text.

In a kernel the magic shows two outputs: this static view (its status line and, verbose, the
fold: `static_view`) and, right after it, the live inspector (runtime/inspector.py). One
output cannot be both: JupyterLab renders a bundle's widget whenever it holds one, and shows
"Error displaying widget: model not found" in place of the HTML beside it once the kernel
that made the widget is gone. So each output says, in CSS the browser reads (no script), which
of the two shows: the static view gives way when the live inspector beside it has rendered
(the inspector shows all of it), and the output after it is hidden while it holds no element:
the inspector's, showing only Lab's placeholder text ("Loading widget...", or "Error displaying
widget: model not found" without its kernel), or nothing (its empty HTML in an export). nbconvert, GitHub and a terminal
never render the inspector and show the static view.
"""
import html

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

SHOW = "Show code"
INSPECTOR_CLASS = "tensormagic-inspector"  # the live inspector's outermost element
STATIC_CLASS = "tensormagic-static"
# JupyterLab's and Notebook 7's output area: one .jp-OutputArea-child per output, in order
_GIVE_WAY = (
    f".jp-OutputArea-child:has(.{STATIC_CLASS}):has(+ .jp-OutputArea-child .{INSPECTOR_CLASS})"
    f" {{display: none}}\n"
    f".jp-OutputArea-child:has(.{STATIC_CLASS}) + .jp-OutputArea-child > .jp-OutputArea-output:not(:has(*))"
    f" {{display: none}}")
_MONO = "font-family: var(--jp-code-font-family, monospace)"
_FORMATTER = HtmlFormatter(noclasses=True, nobackground=True, prestyles=_MONO)


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


def static_view(status, fold=None):
    """A cell's static output in a kernel: its status line and, in verbose mode, the fold (a
    Folded); the live inspector displayed right after it takes its place where it renders."""
    body = f'<pre class="tensormagic-status" style="{_MONO}">{html.escape(status)}</pre>'
    text = status
    if fold is not None:
        body += fold._repr_mimebundle_()["text/html"]
        text += "\n" + fold.text
    return {"text/html": f'<div class="{STATIC_CLASS}">{body}<style>{_GIVE_WAY}</style></div>',
            "text/plain": text}
