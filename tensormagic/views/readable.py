"""The rewrites that make a formula read like print, on the IR: both math views (LaTeX in
render.py, MathML in mathml.py) show what these return, so they read alike.

A product becomes a signed fraction with equal factors as powers and common factors
cancelled (x_i x_i / (x_i Z Z) is x_i / Z²), and a repeated scalar sub-expression holding a
sum is named once (N = √Σ_j x_j²).  Nothing here changes a value."""
from ..language.ir import (Call, Const, Mul, Pow, Reduce, Scalar, Sigma, Tensor, children, free,
                           with_children)
from ..language.printer import denominator, in_denominator, split_sign


def bracketed_base(e, precedence, power):
    """Does a power's base need brackets: it binds looser than the power, or it is drawn with
    its own bar, root or fraction (1/Z, √x, |x|, x̄, x/√2), which an exponent would seem to touch."""
    return precedence <= power or (isinstance(e, Call) and e.func in ("recip", "sqrt", "abs", "conj")) \
        or (isinstance(e, Mul) and any(in_denominator(f) for f in e.factors))






def fraction(factors):
    """(sign, numerator factors, denominator factors) of a product: ("-", [2, x_i²], [Z²])
    for -2 x_i x_i / (Z Z).  An empty numerator is 1; an empty denominator, no fraction."""
    lead, factors = split_sign(list(factors))
    numer, denom = _cancelled(_powers([f for f in factors if not in_denominator(f)]),
                              _powers([denominator(f) for f in factors if in_denominator(f)]))
    return lead, numer, denom


def _powers(factors):
    """[(key, base, exponent)]: equal factors as one power, x_i x_i is x_i^2, and
    √(Σ_j x_j²)² √(Σ_jʹ x_jʹ²) is (√Σ_j x_j²)³.  Each Σ is explicit in the math views, so
    this never moves a sum."""
    order, total = [], {}
    for f in factors:
        base, power = f, 1
        while _numeric_power(base) and (power == 1 or isinstance(power, int)):
            base, power = base.base, power * base.exponent.value  # (y²)² is y⁴
        key = shape_key(base) if not isinstance(base, Const) and getattr(base, "name", "") != "δ" \
            else (len(order), None)
        if key not in total:
            order.append((key, base))
            total[key] = 0
        total[key] += power
    return [(key, base, total[key]) for key, base in order]


def _cancelled(numer, denom):
    """x_i / x_i^4 is 1 / x_i^3: the same base above and below cancels."""
    below = {key: power for key, _, power in denom}
    common = {key: min(power, below[key]) for key, _, power in numer
              if key in below and power > 0 and below[key] > 0}

    def rest(side):
        return [base if p == 1 else Pow(base, Const(p)) for key, base, power in side
                for p in [power - common.get(key, 0)] if p != 0]
    return rest(numer), rest(denom)


def _numeric_power(f):
    return isinstance(f, Pow) and isinstance(f.exponent, Const) and \
        isinstance(f.exponent.value, (int, float))


def shape_key(e):
    """e with each index bound inside it named by position, so Σ_j x_j x_j and Σ_jʹ x_jʹ x_jʹ
    are equal (IR nodes compare by value, not by where they were written)."""
    bound = []
    for node in nodes(e):
        if isinstance(node, (Sigma, Reduce)):
            bound += [i for i in node.indices if i not in bound]
    return _renamed(e, {i: f"_{k}" for k, i in enumerate(bound)})


def nodes(e):
    """e and every node under it, parents first."""
    yield e
    for c in children(e):
        yield from nodes(c)


def _renamed(e, names):
    if isinstance(e, Tensor):
        return e if e.access is not None else Tensor(e.name, tuple(names.get(i, i) for i in e.indices))
    if isinstance(e, Sigma):
        return Sigma(tuple(names.get(i, i) for i in e.indices), _renamed(e.body, names))
    if isinstance(e, Reduce):
        return Reduce(e.op, tuple(names.get(i, i) for i in e.indices), _renamed(e.body, names), e.span)
    return with_children(e, tuple(_renamed(c, names) for c in children(e)))


def cell_names(statements):
    """Every tensor and scalar name a cell uses, which a named sub-expression must avoid."""
    return {st.target for st in statements} | {n.name for st in statements for n in nodes(st.rhs)
                                               if isinstance(n, (Tensor, Scalar))}


def summed(term, kept):
    """term with a Σ over its free indices that the left side does not keep."""
    over = tuple(i for i in free(term) if i not in kept)
    return Sigma(over, term) if over else term


_NAMES = "NMKQRU"


def name_repeats(rhs, taken):
    """A scalar sub-expression holding a sum that comes twice or more (√Σ_j x_j x_j in a
    normalisation's gradient) is named once: (rhs with a name in its place, [(name, it)])."""
    count, example = {}, {}
    for node in nodes(rhs):
        if _nameable(node):
            key = shape_key(node)
            count[key] = count.get(key, 0) + 1
            example.setdefault(key, node)
    repeated = [k for k, n in count.items() if n > 1]
    if not repeated:
        return rhs, []
    taken = set(taken) | {getattr(n, "name", "").lstrip("Δ") for n in nodes(rhs)}
    name = next((n for n in _NAMES if n not in taken), None)
    if name is None:
        return rhs, []
    key = max(repeated, key=lambda k: sum(1 for _ in nodes(k)))  # the largest takes what it holds
    return _replace(rhs, key, Scalar(name)), [(name, example[key])]


def _nameable(e):
    """A function of a sum, or a sum, with no free index (1/x is left to the fraction bar)."""
    return (isinstance(e, (Sigma, Reduce)) or isinstance(e, Call) and e.func != "recip") and \
        not free(e) and any(isinstance(n, (Sigma, Reduce)) for n in nodes(e))


def _replace(e, key, by):
    if _nameable(e) and shape_key(e) == key:
        return by
    return with_children(e, tuple(_replace(c, key, by) for c in children(e)))
