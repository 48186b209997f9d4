"""The IR as LaTeX, with every Σ shown: statements, formulas and a whole cell as one display."""
import math

from ..language.functions import FUNCTIONS
from ..language.ir import (Add, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar, Sigma,
                           Tensor, free, signed_sum, unique)
from ..language.printer import (ATOM, POW, PROD, SUM, UNARY, formula_text, is_plain, is_recip,
                                number_text, statement_text, text)
from .readable import bracketed_base, cell_names, fraction, name_repeats, summed

_GREEK = {g: "\\" + n for g, n in zip(
    "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega".split())}


def _ident(name):
    """An identifier in LaTeX: Greek letters as commands, primes as ', and a name of several
    characters upright as one word, so ρA is one symbol, not ρ times A (ΔρA: Δ then ρA)."""
    primes = len(name) - len(name.rstrip("ʹ"))
    core = name.rstrip("ʹ")
    delta = "\\Delta " if core.startswith("Δ") and len(core) > 1 else ""
    core = core[1:] if delta else core
    out, after_command = "", False
    for ch in core:
        piece = _GREEK.get(ch, "\\_" if ch == "_" else ch)
        out += (" " if after_command and ch not in _GREEK else "") + piece  # \\rho A, not \\rhoA
        after_command = ch in _GREEK
    if len(core) > 1:
        out = "\\mathrm{" + out + "}"
    return delta + out + "'" * primes


def _tensor_latex(e):
    subs = e.access if e.access is not None else e.indices
    if not subs:
        return _ident(e.name)
    pieces = [_subscript_latex(a) for a in subs]
    sep = "" if all(isinstance(a, str) and len(a.rstrip("ʹ")) == 1 for a in subs) else ","
    return f"{_ident(e.name)}_{{{sep.join(pieces)}}}"


def _subscript_latex(a):
    if isinstance(a, str):
        return _ident(a)
    if isinstance(a, Tensor):
        return _tensor_latex(a)
    parts = [_ident(i) if c == 1 else f"{c}{_ident(i)}" for c, i in a.terms]
    if a.offset < 0 and parts:
        return "+".join(parts) + str(a.offset)
    if a.offset or not parts:
        parts.append(str(a.offset))
    return "+".join(parts)


_REDUCE_LATEX = {"sum": "\\sum", "prod": "\\prod", "max": "\\max", "min": "\\min",
                 "logsumexp": "\\operatorname{logsumexp}", "mean": "\\operatorname{mean}"}


def latex(e):
    return _latex(e)[0]


def _latex(e):
    if isinstance(e, Tensor):
        if e.name == "δ" and e.access is None:
            return "\\delta_{" + "".join(_ident(i) for i in e.indices) + "}", ATOM
        if e.name == "δ":
            return "\\delta_{" + ",".join(_subscript_latex(a) for a in e.access) + "}", ATOM
        return _tensor_latex(e), ATOM
    if isinstance(e, Scalar) and e.name.startswith("|"):  # an index's size |j|
        return f"\\left|{_ident(e.name.strip('|'))}\\right|", ATOM
    if isinstance(e, Scalar):
        return _ident(e.name), ATOM
    if isinstance(e, Reduce):
        body = _latex(e.body)[0]
        under = ",".join(_ident(i) for i in e.indices)
        # a sum or product sign reaches over what follows it: bracket it like Σ
        return f"{_REDUCE_LATEX[e.op]}_{{{under}}} \\left({body}\\right)", \
            (SUM if e.op in ("sum", "prod", "mean") else ATOM)
    if isinstance(e, Binary):
        return f"\\{e.func}\\left({_latex(e.left)[0]}, {_latex(e.right)[0]}\\right)", ATOM
    if isinstance(e, Indicator):
        return f"\\mathbb{{1}}\\left[{_latex(e.left)[0]} = {_latex(e.right)[0]}\\right]", ATOM
    if isinstance(e, Const):
        v = e.value
        s = number_text(v).strip("()") if isinstance(v, complex) else (f"{v:g}" if isinstance(v, float) else str(v))
        s = "\\pi" if v == math.pi else s
        return s, ATOM if is_plain(v) else SUM
    if isinstance(e, Sigma):
        body, prec = _latex(e.body)
        if prec <= SUM:
            body = f"\\left({body}\\right)"
        return f"\\sum_{{{','.join(_ident(i) for i in e.indices)}}} {body}", SUM
    if isinstance(e, Add):
        pieces = []
        for k, (term, sign) in enumerate(zip(e.terms, e.signs)):
            piece, prec = _latex(term)
            # A Σ reaches over its product only, as in print: Σ_j a_j b_j - c needs no parentheses.
            if prec <= SUM and len(e.terms) > 1 and not isinstance(term, Sigma) and (sign < 0 or k):
                piece = f"\\left({piece}\\right)"
            pieces.append(piece)
        return signed_sum(pieces, e.signs), SUM
    if isinstance(e, Mul):
        return _latex_product(e)
    if isinstance(e, Pow):
        if is_recip(e.base):  # (1/Z)^2 is 1/Z^2
            return _latex_call("recip", _latex(Pow(e.base.arg, e.exponent))[0]), ATOM
        base, bp = _latex(e.base)
        if bracketed_base(e.base, bp, POW):
            base = f"\\left({base}\\right)"
        return f"{base}^{{{_latex(e.exponent)[0]}}}", POW
    if isinstance(e, Call):
        arg = _latex(e.arg)[0]
        return _latex_call(e.func, arg), ATOM
    raise TypeError(e)


def _latex_call(func, arg):
    if func == "recip":
        return f"\\frac{{1}}{{{arg}}}"
    if func == "sqrt":
        return f"\\sqrt{{{arg}}}"
    if func == "abs":
        return f"\\left|{arg}\\right|"
    if func == "conj":
        return f"\\overline{{{arg}}}"
    if func == "step":  # relu's derivative: the indicator of x > 0
        return f"\\mathbb{{1}}\\left[{arg} > 0\\right]"
    name = FUNCTIONS[func].latex or f"\\operatorname{{{func}}}"
    return f"{name}\\left({arg}\\right)"


def _latex_product(e):
    lead, numer, denom = fraction(e.factors)
    top = _latex_factors(numer) or "1"
    if denom:
        bottom = _latex_factors(denom, in_fraction=True)
        return f"{lead}\\frac{{{top}}}{{{bottom}}}", UNARY if lead else ATOM
    return lead + top, (UNARY if lead else PROD)


def _latex_factors(factors, in_fraction=False):
    parts = []
    for f in factors:
        piece, prec = _latex(f)
        if prec < PROD or (prec == SUM) or (prec == PROD and len(factors) > 1 and not in_fraction):
            if not (in_fraction and len(factors) == 1):
                piece = f"\\left({piece}\\right)"
        parts.append(piece)
    return " \\, ".join(parts)


def statement_latex(st):
    target = _tensor_latex(st.target_read)
    return f"{target} {_OPS[st.op]} {latex(st.rhs)}"


def formula_latex(f, taken=()):
    """ΔB = ... in LaTeX; `taken`: the cell's names, which a named sub-expression avoids."""
    rhs, named = name_repeats(f.rhs, set(taken) | {f.target.name.lstrip("Δ")})
    terms, signs = (rhs.terms, rhs.signs) if isinstance(rhs, Add) else ((rhs,), (1,))
    body = signed_sum([latex(summed(t, f.target.indices)) for t in terms], signs)
    where = "".join(f",\\quad {_ident(name)} = {latex(e)}" for name, e in named)
    return f"{_tensor_latex(f.target)} = {body}{where}"


# -- a whole cell ------------------------------------------------------------------------
LINE_CHARS = 400     # a line whose plain text is longer is shown in compact form
LATEX_CAP = 20_000   # the LaTeX of one cell never exceeds this many characters
_SHOWN_FACTORS = 9   # a compact product longer than this names its ends and its Δ


def cell_latex(statements, formulas, tangents=(), definitions=()):
    """The statements, then each derived gradient (and each tangent, forward mode), as one
    aligned LaTeX display, and whether any line was shortened.  A line longer than LINE_CHARS
    (in plain text) shows its sums as a count and its product by tensor names only; past
    LATEX_CAP the rest is left out with a note.  The full text is str(fn) and fn.formulas."""
    lines = [(statement_text(st), lambda st=st: statement_latex(st),
              lambda st=st: _compact_line(st.target_read, _OPS[st.op], st.rhs,
                                           st.indices))
             for st in statements]
    names = cell_names(statements) | {d.target.name for d in definitions}
    lines += [(formula_text(f), lambda f=f: formula_latex(f, names),
               lambda f=f: _compact_line(f.target, "=", f.rhs, f.target.indices)) for f in formulas]
    lines += [(formula_text(d), lambda d=d, k=k: _where(k) + formula_latex(d, names),
               lambda d=d, k=k: _where(k) + _compact_line(d.target, "=", d.rhs, d.target.indices))
              for k, d in enumerate(definitions)]
    lines += [(text(f.rhs, sums=True), lambda f=f: f"{_tensor_latex(f.target)} = {latex(f.rhs)}",
               lambda f=f: _compact_line(f.target, "=", f.rhs, ())) for f in tangents]
    shown, size, shortened = [], 0, False
    for k, (plain, full, compact) in enumerate(lines):
        line = full() if len(plain) <= LINE_CHARS else compact()
        shortened |= len(plain) > LINE_CHARS
        if size + len(line) > LATEX_CAP:
            shown.append(f"&\\text{{\\ldots\\ {len(lines) - k} more lines: print the function "
                         f"for all of them}}")
            shortened = True
            break
        shown.append(_align(line))
        size += len(line)
    return "$$\\begin{aligned}" + " \\\\ ".join(shown) + "\\end{aligned}$$", shortened


_OPS = {":=": ":=", "=": "=", "+=": "\\mathrel{+}="}


def _where(k):
    return "\\text{where}\\quad " if k == 0 else ""


def _align(line):
    """Put the alignment point at the first assignment sign."""
    for sign in (":=", "\\mathrel{+}=", "="):
        if sign in line:
            head, tail = line.split(sign, 1)
            return f"{head} &{sign} {tail}"
    return line


def _compact_line(target, op, rhs, kept):
    terms, signs = (rhs.terms, rhs.signs) if isinstance(rhs, Add) else ((rhs,), (1,))
    body = signed_sum([_compact_term(t, kept) for t in terms], signs)
    return f"{_tensor_latex(target)} {op} {body}"


def _compact_term(term, kept):
    """Σ over n indices of the factors' names: the shape of a long product at a glance."""
    summed = [i for i in free(term) if i not in kept]
    while isinstance(term, Sigma):
        summed += term.indices
        term = term.body
    factors = term.factors if isinstance(term, Mul) else (term,)
    names = [_factor_name(f) for f in factors]
    if len(names) > _SHOWN_FACTORS:
        names = _elide(names, [isinstance(f, Tensor) and f.name.startswith("Δ") for f in factors])
    n = len(unique(summed))
    total = f"\\sum_{{{n}\\text{{ indices}}}} " if n > 1 else (
        f"\\sum_{{{_ident(summed[0])}}} " if n else "")
    return total + " \\, ".join(names)


def _elide(names, is_delta):
    """The first and last names, and each incoming gradient with its neighbours."""
    n = len(names)
    keep = {0, n - 1} | {k + d for k in range(n) if is_delta[k] for d in (-1, 0, 1)}
    out = []
    for k in range(n):
        if k in keep:
            out.append(names[k])
        elif k - 1 in keep:
            out.append("\\cdots")
    return out + [f"\\;[{n}\\text{{ factors}}]"]


def _factor_name(f):
    if isinstance(f, Tensor):
        return "\\delta" if f.name == "δ" else _ident(f.name)
    if isinstance(f, (Scalar, Const)):
        return _latex(f)[0]
    if isinstance(f, Call) and f.func != "recip":
        return _latex_call(f.func, "\\ldots")
    return "\\left(\\ldots\\right)"


# -- second order ------------------------------------------------------------------------
def hessian_latex(blocks):
    """Hessian blocks (calculus.second.Block) as one aligned display: for each, the gradients
    and tangents it reads, then ∂²L/∂a∂b."""
    lines = []
    for block in blocks:
        for f in block.chain:
            line = formula_latex(f) if f.target.name.startswith("Δ") else \
                f"{_tensor_latex(f.target)} = {latex(f.rhs)}"
            lines.append(_align(line))
        lhs = (f"\\frac{{\\partial^2 {_ident(block.loss)}}}{{\\partial {_tensor_latex(block.a)}\\, "
               f"\\partial {_tensor_latex(block.b)}}}")
        lines.append(f"{lhs} &= {latex(block.rhs)}")
    return "$$\\begin{aligned}" + " \\\\ ".join(lines) + "\\end{aligned}$$"
