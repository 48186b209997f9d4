"""The language's own printer: IR → index notation text that parses back (sums=True writes each
Σ where it sits). Errors, the derivation and every view print through it."""
import math

from .ir import (Add, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar, Sigma, Tensor,
                 free, signed_sum)

# Precedence: a child binds at least this tightly or gets parentheses.
SUM, PROD, UNARY, POW, ATOM = 1, 2, 3, 4, 5


# -- plain text --------------------------------------------------------------------------
def text(e, sums=False):
    """Python-style index notation. sums=True writes each Σ where it sits (Σ_j ...);
    sums="reduce" writes it as the language does, sum[j](...), so the text is a statement
    (but a Σ over an index its body does not carry, a broadcast's, stays Σ_j (...))."""
    return _text(e, sums)[0]


def subscript_text(a):
    """One subscript: i, i+1, 2*i+a, -1, tok[b]."""
    if isinstance(a, str):
        return a
    if isinstance(a, Tensor):
        return text(a)
    parts = [i if c == 1 else f"{c}*{i}" for c, i in a.terms]
    if a.offset < 0 and parts:  # reads before the start: x[i+a-1] (a padded x)
        return "+".join(parts) + str(a.offset)
    if a.offset or not parts:
        parts.append(str(a.offset))
    return "+".join(parts)


def _text(e, sums):
    """(source, precedence)."""
    if isinstance(e, Tensor):
        subs = e.access if e.access is not None else e.indices
        return (f"{e.name}[{','.join(subscript_text(a) for a in subs)}]" if subs else e.name), ATOM
    if isinstance(e, Reduce):
        return f"{e.op}[{','.join(e.indices)}]({_text(e.body, sums)[0]})", ATOM
    if isinstance(e, Binary):
        return f"{e.func}({_text(e.left, sums)[0]}, {_text(e.right, sums)[0]})", ATOM
    if isinstance(e, Indicator):
        return f"𝟙({_text(e.left, sums)[0]} == {_text(e.right, sums)[0]})", ATOM
    if isinstance(e, Scalar):
        return e.name, ATOM
    if isinstance(e, Const):
        return number_text(e.value), ATOM if is_plain(e.value) else SUM
    if isinstance(e, Sigma):
        body, prec = _text(e.body, sums)
        if not sums:
            return body, prec
        if sums == "reduce" and set(e.indices) <= set(free(e.body)):
            return f"sum[{','.join(e.indices)}]({body})", ATOM
        if prec <= SUM:
            body = f"({body})"
        return f"Σ_{_subscript(e.indices)} {body}", SUM
    if isinstance(e, Add):
        pieces = []
        for k, (term, sign) in enumerate(zip(e.terms, e.signs)):
            piece, prec = _text(term, sums)
            # A Σ reaches over its product only: Σ_i x[i] * y[i] + c[o] needs no parentheses.
            if prec <= SUM and len(e.terms) > 1 and not isinstance(term, Sigma) and (k or sign < 0):
                piece = f"({piece})"
            pieces.append(piece)
        return signed_sum(pieces, e.signs), SUM
    if isinstance(e, Mul):
        return _text_product(e, sums)
    if isinstance(e, Pow):
        if is_recip(e.base):  # (1 / Z)**2 is 1 / Z**2
            return _text(Call("recip", Pow(e.base.arg, e.exponent)), sums)
        base, bp = _text(e.base, sums)
        exp, ep = _text(e.exponent, sums)
        base = base if bp > POW else f"({base})"
        exp = exp if ep >= POW else f"({exp})"
        return f"{base}**{exp}", POW
    if isinstance(e, Call):
        arg = _text(e.arg, sums)[0]
        if e.func == "recip":
            below, prec = _text(e.arg, sums)
            return (f"1 / {below}" if prec >= POW else f"1 / ({below})"), PROD
        return f"{e.func}({arg})", ATOM
    raise TypeError(e)


def _text_product(e, sums):
    lead, factors = split_sign(list(e.factors))
    out = ""
    for k, f in enumerate(factors):
        if in_denominator(f) and k:
            below, prec = _text(denominator(f), sums)
            out += f" / {below}" if prec >= POW else f" / ({below})"
            continue
        piece = _wrap(f, sums, PROD)
        out += piece if k == 0 else f" * {piece}"
    return lead + out, (UNARY if lead else PROD)


def _wrap(e, sums, at_least):
    piece, prec = _text(e, sums)
    return piece if prec > at_least or (prec == at_least and at_least != POW) else f"({piece})"


def number_text(v):
    if v == math.pi:
        return "pi"
    if isinstance(v, complex):
        return f"({v.real!r}{v.imag:+g}j)" if v.real else f"{v.imag!r}j"
    return repr(v)


def is_plain(v):
    return not isinstance(v, complex) and v >= 0


def _subscript(indices):
    return indices[0] if len(indices) == 1 else "{" + ",".join(indices) + "}"


def statement_text(st, sums=True):
    return f"{text(st.target_read)} {st.op} {text(st.rhs, sums)}"


def formula_text(f):
    """Einstein style; a sum over an index no factor carries (a broadcast, summed) is explicit."""
    rhs = f.rhs
    if isinstance(rhs, Add):
        body = signed_sum([_formula_term(t) for t in rhs.terms], rhs.signs)
    else:
        body = _formula_term(rhs)
    return f"{text(f.target)} = {body}"


def where_text(definitions):
    """A long cell's named sub-expressions, one a line: where A[j] = ..., the rest under it."""
    return [("where " if k == 0 else "      ") + formula_text(d) for k, d in enumerate(definitions)]


def as_cell(text):
    """A formula as text as a cell that computes it: its = as :=, and the where-lines of its
    definitions (a long cell's, as where_text writes them) as statements before it."""
    lines = text.splitlines()
    at = next((k for k, line in enumerate(lines) if line.strip().startswith("where ")), None)
    if at is None:
        return text if ":=" in text else text.replace(" = ", " := ", 1)
    definitions = [line.strip() for line in lines[at:] if line.strip()]
    definitions[0] = definitions[0][len("where"):].strip()
    return "\n".join(line if ":=" in line else line.replace(" = ", " := ", 1)
                     for line in definitions + lines[:at])


def _formula_term(term):
    if isinstance(term, Sigma):
        return f"Σ_{_subscript(term.indices)} ({text(term.body)})"
    piece, prec = _text(term, False)
    return piece


# -- what a product's printing reads (the math views read the same) ---------------------
def split_sign(factors):
    """A leading negative number becomes a minus sign: (-2) * x → -, [2, x]."""
    first = factors[0] if factors else None
    if isinstance(first, Const) and not isinstance(first.value, complex) and first.value < 0 \
            and len(factors) > 1:
        rest = factors[1:] if first.value == -1 else [Const(-first.value)] + factors[1:]
        return "-", rest
    return "", factors


def is_recip(e):
    return isinstance(e, Call) and e.func == "recip"


def in_denominator(f):
    """1/Z and (1/Z)² stand below a fraction bar."""
    return is_recip(f) or isinstance(f, Pow) and is_recip(f.base)


def denominator(f):
    """What in_denominator(f) puts below the bar: Z, Z²."""
    return f.arg if is_recip(f) else Pow(f.base.arg, f.exponent)
