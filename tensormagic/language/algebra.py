"""Sums and products built flat: nested sums flattened, numbers folded into one constant.
The parser builds every sum and product through these, and the calculus its formulas."""
from .ir import Add, Call, Const, Mul
from .numbers import fold


def add(left, right, sign):
    """left ± right, flattening nested sums (parentheses around a sum never matter)."""
    return add_all([(left, 1), (right, sign)])


def add_all(pieces):
    """Σ sign·expr over (expr, sign) pieces, flattened, numbers folded into one."""
    flat = []
    for e, sign in pieces:
        flat.extend(zip(e.terms, (sign * s for s in e.signs)) if isinstance(e, Add) else [(e, sign)])
    terms, signs, number = [], [], 0
    for t, s in flat:
        if isinstance(t, Const):  # numbers fold into one
            number = fold(lambda a, b: a + s * b, number, t.value)
            continue
        if _is_negated(t):  # a + -b is a - b
            t, s = negate(t), -s
        terms.append(t)
        signs.append(s)
    if not terms:
        return Const(number)
    if number != 0:
        terms.append(Const(abs(number)) if not isinstance(number, complex) else Const(number))
        signs.append(-1 if not isinstance(number, complex) and number < 0 else 1)
    return Add(tuple(terms), tuple(signs))


def _is_negated(e):
    lead = e.factors[0] if isinstance(e, Mul) else e
    return isinstance(lead, Const) and not isinstance(lead.value, complex) and lead.value < 0


def multiply(left, right):
    """left * right, flattened, with numeric factors folded into one leading constant."""
    return multiply_all([left, right])


def multiply_all(sides):
    factors = []
    for side in sides:
        factors.extend(side.factors if isinstance(side, Mul) else (side,))
    value = 1
    rest = []
    for f in factors:
        if isinstance(f, Const):
            value = fold(lambda a, b: a * b, value, f.value)
        else:
            rest.append(f)
    if not rest:
        return Const(value)
    if value == 1 and len(rest) == 1 and not isinstance(rest[0], Add):
        return rest[0]  # (a sum stays wrapped: a product around a sum is one term)
    return Mul(((Const(value),) if value != 1 else ()) + tuple(rest))


def negate(e):
    if isinstance(e, Const):
        return Const(-e.value)
    return multiply(Const(-1), e)


def reciprocal(e):
    if isinstance(e, Const):
        if e.value == 0:
            return Call("recip", e)
        return Const(fold(lambda a: 1 / a, e.value))
    return Call("recip", e)
