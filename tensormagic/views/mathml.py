"""The statements and derived formulas as MathML: math that a browser typesets by itself
(Chromium, Firefox and Safari render MathML Core), so an exported notebook or a saved HTML
page shows the formulas with no network access and no MathJax.

It reads the same IR, with the same precedence and parenthesis rules and the same readable
rewrites (readable.py: fractions with powers, named repeats), as render.latex.
"""
import math
from html import escape

from ..language.functions import FUNCTIONS
from ..language.ir import (Add, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar, Sigma,
                           Tensor, signed_sum)
from ..language.printer import ATOM, POW, PROD, SUM, UNARY, is_plain, is_recip, number_text
from .readable import bracketed_base, cell_names, fraction, name_repeats, summed

MAX_CHARS = 200_000   # beyond this a page would crawl: the plain text is shown instead
_THIN = '<mspace width="0.17em"></mspace>'


def cell_html(fn, tangents=False):
    """The statements, then each derived gradient (and with tangents=True each tangent,
    forward mode), as one MathML table aligned at the signs."""
    rows = [_row(_tensor(st.target, st.target_access or st.indices), {":=": ":=", "=": "=", "+=": "+="}[st.op],
                 _expr(st.rhs)[0]) for st in fn.cell.statements]
    shown = fn._shown
    names = cell_names(fn.cell.statements) | {d.target.name for d in shown.definitions}
    rows += [_row(_tensor(f.target.name, f.target.indices), "=", _formula_rhs(f, names))
             for f in shown.formulas]
    rows += [_row(_where(k) + _tensor(d.target.name, d.target.indices), "=", _formula_rhs(d, names))
             for k, d in enumerate(shown.definitions)]
    if tangents:
        rows += [_row(_expr(f.target)[0], "=", _expr(f.rhs)[0])
                 for f in getattr(fn, "tangent_derivation", ())]
    body = "".join(rows)
    if len(body) > MAX_CHARS:
        return f'<pre class="tensormagic-math">{escape(str(fn))}</pre>'
    return (f'<div class="tensormagic-math" style="padding:0.3em 0"><math><mtable columnspacing="0.3em">'
            f'{body}</mtable></math></div>')


def gradient_math(fn, name):
    """The derived gradient of one input as <math> (a long cell's in its short form, with the
    definitions it uses below it); None when the input has no derived formula."""
    shown = [f for f in fn._shown.formulas if f.of_input and f.name == name]
    return formula_math(shown[0], cell_names(fn.cell.statements), fn._shown.used_by(shown[0])) \
        if shown else None


def tangents_html(fn):
    """The derived tangents (forward mode), one row each, aligned at the signs."""
    rows = "".join(_row(_expr(f.target)[0], "=", _expr(f.rhs)[0]) for f in fn.tangent_derivation)
    return f'<math><mtable columnspacing="0.3em">{rows}</mtable></math>'


def _where(k):
    return '<mtext>where</mtext><mspace width="1em"></mspace>' if k == 0 else ""


def formula_math(f, taken=(), definitions=()):
    """One derived formula as an inline <math> element; `taken`: the cell's names, which a
    named sub-expression avoids; `definitions`: those of a long cell that it uses, as rows
    below it."""
    lhs = _tensor(f.target.name, f.target.indices)
    if not definitions:
        return f"<math><mrow>{lhs}<mo>=</mo>{_formula_rhs(f, taken)}</mrow></math>"
    taken = set(taken) | {d.target.name for d in definitions}
    rows = [_row(lhs, "=", _formula_rhs(f, taken))]
    rows += [_row(_where(k) + _tensor(d.target.name, d.target.indices), "=", _formula_rhs(d, taken))
             for k, d in enumerate(definitions)]
    return f'<math><mtable columnspacing="0.3em">{"".join(rows)}</mtable></math>'


def _row(lhs, sign, rhs):
    return (f'<mtr><mtd displaystyle="true" style="text-align:right">{lhs}</mtd>'
            f'<mtd displaystyle="true" style="text-align:left"><mrow><mo>{escape(sign)}</mo>{rhs}'
            f'</mrow></mtd></mtr>')


def _formula_rhs(f, taken):
    """The right side, each term summed over what the left side drops, then `, N = ...` for
    each sub-expression it names, as render.formula_latex."""
    rhs, named = name_repeats(f.rhs, set(taken) | {f.target.name.lstrip("Δ")})
    terms, signs = (rhs.terms, rhs.signs) if isinstance(rhs, Add) else ((rhs,), (1,))
    body = _signed([_expr(summed(t, f.target.indices))[0] for t in terms], signs)
    where = "".join(f'<mo>,</mo><mspace width="1em"></mspace>{_mi(name)}<mo>=</mo>{_expr(e)[0]}'
                    for name, e in named)
    return f"<mrow>{body}{where}</mrow>" if where else body


def _signed(pieces, signs):
    marks = signed_sum(["\0"] * len(pieces), signs).split("\0")
    out = ""
    for mark, piece in zip(marks, pieces + [""]):
        out += "".join(f"<mo>{'−' if m == '-' else m}</mo>" for m in mark.split()) + piece
    return f"<mrow>{out}</mrow>"


# -- pieces -------------------------------------------------------------------------------------
def _mi(name):
    primes = len(name) - len(name.rstrip("ʹ"))
    core = name.rstrip("ʹ")
    if core.startswith("Δ") and len(core) > 1:
        return f"<mrow><mi>Δ</mi>{_mi(core[1:] + 'ʹ' * primes)}</mrow>"
    return f"<mi>{escape(core)}{'′' * primes}</mi>"


def _tensor(name, indices):
    """name with subscripts: index names, shifted/fixed positions (Affine), gathers (Tensor)."""
    if not indices:
        return _mi(name)
    plain = all(isinstance(i, str) and len(i.rstrip("ʹ")) == 1 for i in indices)
    sub = ("" if plain else "<mo>,</mo>").join(_subscript(i) for i in indices)
    return f"<msub>{_mi(name)}<mrow>{sub}</mrow></msub>"


def _subscript(a):
    if isinstance(a, str):
        return _mi(a)
    if isinstance(a, Tensor):
        return _tensor(a.name, a.access if a.access is not None else a.indices)
    parts = [_mi(i) if c == 1 else f"<mn>{c}</mn>{_mi(i)}" for c, i in a.terms]
    if a.offset < 0 and parts:
        return "<mo>+</mo>".join(parts) + f"<mo>−</mo><mn>{-a.offset}</mn>"
    if a.offset or not parts:
        parts.append(f"<mn>{a.offset}</mn>")
    return "<mo>+</mo>".join(parts)


def _paren(x):
    return f"<mrow><mo>(</mo>{x}<mo>)</mo></mrow>"


def _expr(e):
    """(MathML, precedence), as render._latex."""
    if isinstance(e, Tensor):
        return _tensor(e.name, e.access if e.access is not None else e.indices), ATOM
    if isinstance(e, Scalar) and e.name.startswith("|"):  # an index's size |j|
        return f"<mrow><mo>|</mo>{_mi(e.name.strip('|'))}<mo>|</mo></mrow>", ATOM
    if isinstance(e, Scalar):
        return _mi(e.name), ATOM
    if isinstance(e, Reduce):
        op = {"sum": "∑", "prod": "∏"}.get(e.op, e.op)
        under = "<mo>,</mo>".join(_mi(i) for i in e.indices)
        head = f"<munder><mo>{op}</mo><mrow>{under}</mrow></munder>" if op in "∑∏" else \
            f"<munder><mi>{op}</mi><mrow>{under}</mrow></munder>"
        return f"<mrow>{head}{_paren(_expr(e.body)[0])}</mrow>", \
            (SUM if e.op in ("sum", "prod", "mean") else ATOM)
    if isinstance(e, Binary):
        args = f"{_expr(e.left)[0]}<mo>,</mo>{_expr(e.right)[0]}"
        return f"<mrow><mi>{e.func}</mi><mo>&#x2061;</mo>{_paren(args)}</mrow>", ATOM
    if isinstance(e, Indicator):
        inside = f"{_expr(e.left)[0]}<mo>=</mo>{_expr(e.right)[0]}"
        return f"<mrow><mn>𝟙</mn><mrow><mo>[</mo>{inside}<mo>]</mo></mrow></mrow>", ATOM
    if isinstance(e, Const):
        v = e.value
        s = number_text(v).strip("()") if isinstance(v, complex) else (f"{v:g}" if isinstance(v, float) else str(v))
        if v == math.pi:
            return "<mi>π</mi>", ATOM
        if s.startswith("-"):
            return f"<mrow><mo>−</mo><mn>{escape(s[1:])}</mn></mrow>", SUM
        return f"<mn>{escape(s)}</mn>", ATOM if is_plain(v) else SUM
    if isinstance(e, Sigma):
        body, prec = _expr(e.body)
        if prec <= SUM:
            body = _paren(body)
        under = "<mo>,</mo>".join(_mi(i) for i in e.indices)
        return f"<mrow><munder><mo>∑</mo><mrow>{under}</mrow></munder>{body}</mrow>", SUM
    if isinstance(e, Add):
        pieces = []
        for k, (term, sign) in enumerate(zip(e.terms, e.signs)):
            piece, prec = _expr(term)
            # A Σ reaches over its product only, as in print: Σ_j a_j b_j − c needs no parentheses.
            if prec <= SUM and len(e.terms) > 1 and not isinstance(term, Sigma) and (sign < 0 or k):
                piece = _paren(piece)
            pieces.append(piece)
        return _signed(pieces, e.signs), SUM
    if isinstance(e, Mul):
        return _product(e)
    if isinstance(e, Pow):
        if is_recip(e.base):  # (1/Z)² is 1/Z²
            return _call("recip", _expr(Pow(e.base.arg, e.exponent))[0]), ATOM
        base, bp = _expr(e.base)
        if bracketed_base(e.base, bp, POW):
            base = _paren(base)
        return f"<msup>{base}<mrow>{_expr(e.exponent)[0]}</mrow></msup>", POW
    if isinstance(e, Call):
        return _call(e.func, _expr(e.arg)[0]), ATOM
    raise TypeError(e)


_GREEK = {"sigma": "σ", "theta": "θ"}  # the LaTeX letters functions are drawn with (sigmoid: σ)


def _call(func, arg):
    if func == "recip":
        return f"<mfrac><mn>1</mn><mrow>{arg}</mrow></mfrac>"
    if func == "sqrt":
        return f"<msqrt>{arg}</msqrt>"
    if func == "abs":
        return f"<mrow><mo>|</mo>{arg}<mo>|</mo></mrow>"
    if func == "conj":
        return f'<mover><mrow>{arg}</mrow><mo stretchy="true">‾</mo></mover>'
    if func == "step":  # relu's derivative: the indicator of x > 0
        return f"<mrow><mn>𝟙</mn><mrow><mo>[</mo>{arg}<mo>&gt;</mo><mn>0</mn><mo>]</mo></mrow></mrow>"
    name = (FUNCTIONS[func].latex or func).lstrip("\\")
    if name.startswith("operatorname{"):
        name = name[len("operatorname{"):-1]
    name = _GREEK.get(name, name)
    return f"<mrow><mi>{escape(name)}</mi><mo>&#x2061;</mo>{_paren(arg)}</mrow>"


def _product(e):
    lead, numer, denom = fraction(e.factors)
    top = _factors(numer) or "<mn>1</mn>"
    sign = "<mo>−</mo>" if lead else ""
    if denom:
        bottom = _factors(denom, in_fraction=True)
        return f"<mrow>{sign}<mfrac><mrow>{top}</mrow><mrow>{bottom}</mrow></mfrac></mrow>", \
            UNARY if lead else ATOM
    return f"<mrow>{sign}{top}</mrow>", (UNARY if lead else PROD)


def _factors(factors, in_fraction=False):
    parts = []
    for f in factors:
        piece, prec = _expr(f)
        if prec < PROD or prec == SUM or (prec == PROD and len(factors) > 1 and not in_fraction):
            if not (in_fraction and len(factors) == 1):
                piece = _paren(piece)
        parts.append(piece)
    return _THIN.join(parts)


# -- second order ------------------------------------------------------------------------
def hessian_html(blocks):
    """Hessian blocks (calculus.second.Block) as one MathML table: for each, the gradients and
    tangents it reads, then ∂²L/∂a∂b, as views.latex.hessian_latex."""
    rows = []
    for block in blocks:
        for f in block.chain:
            lhs = _tensor(f.target.name, f.target.indices)
            rhs = _formula_rhs(f, ()) if f.target.name.startswith("Δ") else _expr(f.rhs)[0]
            rows.append(_row(lhs, "=", rhs))
        top = f"<mrow><msup><mo>∂</mo><mn>2</mn></msup>{_mi(block.loss)}</mrow>"
        bottom = (f"<mrow><mo>∂</mo>{_tensor(block.a.name, block.a.indices)}{_THIN}<mo>∂</mo>"
                  f"{_tensor(block.b.name, block.b.indices)}</mrow>")
        rows.append(_row(f"<mfrac>{top}{bottom}</mfrac>", "=", _expr(block.rhs)[0]))
    return (f'<div class="tensormagic-math" style="padding:0.3em 0"><math><mtable columnspacing="0.3em">'
            f'{"".join(rows)}</mtable></math></div>')
