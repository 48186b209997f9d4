"""The Hessian's blocks as a notebook shows them: plain text, LaTeX and MathML together."""
from .latex import hessian_latex
from .mathml import hessian_html


class HessianView:
    """Blocks of the Hessian (calculus.second.Block), each with what it reads; renders itself."""

    def __init__(self, blocks):
        self.blocks = tuple(blocks)

    def __str__(self):
        return "\n\n".join(block.text() for block in self.blocks)

    def _repr_latex_(self):
        return hessian_latex(self.blocks)

    def _repr_html_(self):
        return hessian_html(self.blocks)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": str(self), "text/latex": self._repr_latex_(),
                "text/html": self._repr_html_()}
