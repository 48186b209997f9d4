"""Recognised forms: parts of a statement that *are* a softmax, a log-softmax, a cross-entropy,
a layer norm, a GELU or a SiLU, found on the IR and planned as the one fused torch
primitive each is (forward and backward: kinds/fused.py).

The derivation shown stays the index-notation one (the calculus never sees a lowering); only
the plan changes. Each matcher reads the IR as the summation rule left it and answers a Match
or None:

    exp(e[i] - logsumexp[j](e[j]))           softmax of e along i (e any expression of i)
    exp(a[i]) / sum[j](exp(a[j]))            softmax of a (a max-shifted a included)
    e[i] - logsumexp[j](e[j])                log-softmax (two terms of a longer sum too)
    logsumexp[c](z[n,c]) - z[n, y[n]]        cross-entropy of logits z and targets y, per n
    (x[i] - mu) / sqrt(v + eps) [* g[i]] [+ h[i]]   layer norm, mu and v the mean and the
                                             variance of x along i (inline, or read from
                                             statements before that define them so)
    0.5 * x * (1 + erf(x / sqrt(2)))         GELU; its tanh form too
    x * sigmoid(x)                           SiLU

Matching is structural, up to the names of bound indices; a number must equal the constant of
the form (the tanh GELU's 0.044715, say) to within a relative 1e-6.
"""
import math
from dataclasses import dataclass

from ..language.bindings import rename
from ..language.ir import Add, Call, Const, Mul, Pow, Reduce, Sigma, Tensor, children, free, with_children


@dataclass(frozen=True)
class Match:
    kind: str          # the fused op's kind (kinds/fused.py)
    args: tuple        # IR expressions planned as its operands, in order
    index: str         # the index it runs along
    info: tuple = ()   # (name, value) pairs for the op: eps, approximate
    terms: tuple = ()  # inside a sum: the positions of the terms it replaces


def whole(e, defined=None):
    """A Match for e as a whole, or None. defined: {name: rhs} of intermediates the plan may
    read through (statements before whose value nothing else needs)."""
    defined = defined or {}
    for matcher in (_softmax, _softmax_quotient, _layer_norm, _gelu, _silu):
        found = matcher(e, defined)
        if found is not None:
            return found
    return None


def in_sum(e):
    """A Match for two terms of the sum e (a log-softmax, a cross-entropy), or None."""
    for matcher in (_log_softmax, _cross_entropy):
        found = matcher(e)
        if found is not None:
            return found
    return None


# -- softmax, log-softmax, cross-entropy ----------------------------------------------------
def _along(e_i, reduced):
    """The index i such that `reduced` (op[j](body)) is e_i read along its own j: body is e_i
    with i renamed j. None when there is no such single index."""
    if not isinstance(reduced, Reduce) or len(reduced.indices) != 1:
        return None
    (j,) = reduced.indices
    candidates = [i for i in free(e_i) if i not in free(reduced)]
    if len(candidates) != 1:
        return None
    (i,) = candidates
    return i if same(rename(e_i, {i: j}), reduced.body) else None


def _lse_pair(e, whole=False):
    """(e_i, i, positions) for a sum holding e_i and -logsumexp[j](e_j), or None. e_i is the
    rest of the sum (x[i] + m[i] - logsumexp[j](x[j] + m[j]), a masked softmax's argument),
    or (unless whole) one term of it."""
    if not isinstance(e, Add):
        return None
    for p, (lse, sign) in enumerate(zip(e.terms, e.signs)):
        if sign > 0 or not isinstance(lse, Reduce) or lse.op != "logsumexp":
            continue
        rest = [q for q in range(len(e.terms)) if q != p]
        options = [rest] + ([] if whole else [[q] for q in rest if e.signs[q] > 0])
        for chosen in options:
            term = e.terms[chosen[0]] if len(chosen) == 1 and e.signs[chosen[0]] > 0 else \
                Add(tuple(e.terms[q] for q in chosen), tuple(e.signs[q] for q in chosen))
            i = _along(term, lse)
            if i is not None:
                return term, i, tuple(chosen) + (p,)
    return None


def _softmax(e, defined):
    if isinstance(e, Call) and e.func == "exp":
        pair = _lse_pair(e.arg, whole=True)
        if pair is not None:
            return Match("softmax", (pair[0],), pair[1])
    return None


def _softmax_quotient(e, defined):
    """exp(a[i]) * (1 / sum[j](exp(a[j])))."""
    if not isinstance(e, Mul) or len(e.factors) != 2:
        return None
    for top, bottom in (e.factors, e.factors[::-1]):
        if isinstance(top, Call) and top.func == "exp" and _is_call(bottom, "recip"):
            total = bottom.arg
            if isinstance(total, Reduce) and total.op == "sum" and _is_call(total.body, "exp"):
                i = _along(top.arg, Reduce("logsumexp", total.indices, total.body.arg))
                if i is not None:
                    return Match("softmax", (top.arg,), i)
    return None


def _log_softmax(e):
    pair = _lse_pair(e)
    return None if pair is None else Match("log_softmax", (pair[0],), pair[1], terms=pair[2])


def _cross_entropy(e):
    """logsumexp[c](z[..c..]) - z[..y[..]..]: z read plainly, then at the targets y along c."""
    if not isinstance(e, Add):
        return None
    for p, (lse, sign) in enumerate(zip(e.terms, e.signs)):
        if sign < 0 or not isinstance(lse, Reduce) or lse.op != "logsumexp" or len(lse.indices) != 1:
            continue
        z, (c,) = lse.body, lse.indices
        if not (isinstance(z, Tensor) and z.access is None and z.indices.count(c) == 1):
            continue
        for q, (picked, s) in enumerate(zip(e.terms, e.signs)):
            target = _target(z, c, picked) if q != p and s < 0 else None
            if target is not None:
                return Match("cross_entropy", (z, target), c, terms=(p, q))
    return None


def _target(z, c, picked):
    """y, when `picked` is z read at y[...] along c and plainly elsewhere (y's indices: z's
    other ones, in order)."""
    if not (isinstance(picked, Tensor) and picked.name == z.name and picked.access is not None):
        return None
    d = z.indices.index(c)
    others = tuple(i for i in z.indices if i != c)
    y = picked.access[d]
    rest = picked.access[:d] + picked.access[d + 1:]
    if isinstance(y, Tensor) and y.access is None and y.indices == others and rest == others:
        return y
    return None


# -- layer norm ------------------------------------------------------------------
def _layer_norm(e, defined):
    """(x - mu) / sqrt(v + eps), times a gain g[i], plus a bias h[i], each optional."""
    core, bias = _with_bias(e)
    factors = list(core.factors) if isinstance(core, Mul) else [core]
    centred = [f for f in factors if isinstance(f, Add) and len(f.terms) == 2 and f.signs == (1, -1)]
    scale = [f for f in factors if _rsqrt_plus(f) is not None]
    if len(centred) != 1 or len(scale) != 1:
        return None
    (x, mu), (v, eps) = centred[0].terms, _rsqrt_plus(scale[0])
    rest = [f for f in factors if f is not centred[0] and f is not scale[0]]
    i = _normalised_index(x, mu)
    gain = _per_index(rest, i)
    if i is None or gain is False or (bias is not None and not _is_vector(bias, i)):
        return None
    mu, v = _read_through(mu, defined), _read_through(v, defined)
    if not (_is_mean_of(mu, x, i) and _is_variance_of(v, x, mu, i, defined)):
        return None
    args = (x,) + tuple(a for a in (gain, bias) if a is not None)
    return Match("layer_norm", args, i, (("eps", eps), ("gain", gain is not None),
                                         ("bias", bias is not None)))


def _with_bias(e):
    """(the product, the bias term) of e = product + h[i]; (e, None) otherwise."""
    if isinstance(e, Add) and len(e.terms) == 2 and e.signs == (1, 1):
        product, bias = e.terms
        if isinstance(bias, Mul) and isinstance(product, Tensor):
            product, bias = bias, product
        return product, bias
    return e, None


def _rsqrt_plus(f):
    """(v, eps) for 1 / sqrt(v + eps) with a number eps > 0 (or (v + eps) ** -0.5)."""
    if _is_call(f, "recip") and _is_call(f.arg, "sqrt"):
        inner = f.arg.arg
    elif isinstance(f, Pow) and isinstance(f.exponent, Const) and f.exponent.value == -0.5:
        inner = f.base
    else:
        return None
    if isinstance(inner, Add) and len(inner.terms) == 2 and inner.signs == (1, 1):
        v, eps = inner.terms
        if isinstance(eps, Const) and not isinstance(eps.value, complex) and eps.value > 0:
            return v, float(eps.value)
    return None


def _normalised_index(x, mu):
    """The one index x has and mu lacks."""
    extra = [i for i in free(x) if i not in free(mu)]
    return extra[0] if len(extra) == 1 and set(free(mu)) <= set(free(x)) else None


def _per_index(factors, i):
    """The gain among the remaining factors: None (no factor), the one vector g[i], or False
    (anything else: not this form)."""
    if not factors:
        return None
    if len(factors) == 1 and _is_vector(factors[0], i):
        return factors[0]
    return False


def _is_vector(e, i):
    return isinstance(e, Tensor) and e.access is None and e.indices == (i,)


def _is_mean_of(mu, x, i):
    return isinstance(mu, Reduce) and mu.op == "mean" and len(mu.indices) == 1 and \
        same(rename(x, {i: mu.indices[0]}), mu.body)


def _is_variance_of(v, x, mu, i, defined):
    """v = mean[k]((x[k] - mu)**2) (or the square as a product), mu as read in v."""
    if not (isinstance(v, Reduce) and v.op == "mean" and len(v.indices) == 1):
        return False
    (k,) = v.indices
    body = v.body
    if isinstance(body, Pow) and isinstance(body.exponent, Const) and body.exponent.value == 2:
        dev = body.base
    elif isinstance(body, Mul) and len(body.factors) == 2 and same(*body.factors):
        dev = body.factors[0]
    else:
        return False
    if not (isinstance(dev, Add) and len(dev.terms) == 2 and dev.signs == (1, -1)):
        return False
    xk, mu_k = dev.terms
    return same(xk, rename(x, {i: k})) and same(_read_through(mu_k, defined), mu)


def _read_through(e, defined):
    """A read of an intermediate defined before (mu[b] with mu[b] := ...), as its definition
    over the read's indices; anything else as it is."""
    if isinstance(e, Tensor) and e.access is None and e.name in defined:
        indices, rhs = defined[e.name]
        if len(indices) == len(e.indices) and len(set(e.indices)) == len(e.indices) and \
                not set(e.indices) & set(_bound(rhs)):  # a renaming that captures nothing
            return rename(rhs, dict(zip(indices, e.indices)))
    return e


def _bound(e):
    own = tuple(e.indices) if isinstance(e, (Reduce, Sigma)) else ()
    return own + tuple(i for c in children(e) for i in _bound(c))


# -- GELU, SiLU ------------------------------------------------------------------------------
_TANH_GELU = math.sqrt(2 / math.pi)


def _gelu(e, defined):
    """0.5 * x * (1 + erf(x / sqrt(2))), or with tanh(sqrt(2/pi) * (x + 0.044715 * x**3))."""
    if not isinstance(e, Mul):
        return None
    half = [f for f in e.factors if isinstance(f, Const) and _near(f.value, 0.5)]
    ones = [f for f in e.factors if _one_plus(f) is not None]
    if len(e.factors) != 3 or len(half) != 1 or len(ones) != 1:
        return None
    (x,) = [f for f in e.factors if f is not half[0] and f is not ones[0]]
    inner = _one_plus(ones[0])
    if _is_call(inner, "erf") and _scaled(inner.arg, x, 1 / math.sqrt(2)):
        return Match("gelu", (x,), None, (("approximate", "none"),))
    if _is_call(inner, "tanh") and isinstance(inner.arg, Mul) and len(inner.arg.factors) == 2:
        c, cubic = inner.arg.factors
        if isinstance(c, Const) and _near(c.value, _TANH_GELU) and _is_tanh_cubic(cubic, x):
            return Match("gelu", (x,), None, (("approximate", "tanh"),))
    return None


def _silu(e, defined):
    if isinstance(e, Mul) and len(e.factors) == 2:
        a, b = e.factors
        for x, s in ((a, b), (b, a)):
            if _is_call(s, "sigmoid") and same(s.arg, x) and not isinstance(x, Const):
                return Match("silu", (x,), None)
    return None


def _one_plus(f):
    """t for 1 + t (either order)."""
    if isinstance(f, Add) and len(f.terms) == 2 and f.signs == (1, 1):
        for one, t in (f.terms, f.terms[::-1]):
            if isinstance(one, Const) and one.value == 1:
                return t
    return None


def _scaled(e, x, factor):
    """e = x * factor (the factor a number, or 1 / sqrt(2) as written)."""
    if not isinstance(e, Mul) or len(e.factors) != 2:
        return False
    for a, b in (e.factors, e.factors[::-1]):
        if same(a, x) and _number(b) is not None and _near(_number(b), factor):
            return True
    return False


def _is_tanh_cubic(e, x):
    """x + 0.044715 * x**3."""
    if not (isinstance(e, Add) and len(e.terms) == 2 and e.signs == (1, 1)):
        return False
    for lin, cub in (e.terms, e.terms[::-1]):
        if same(lin, x) and isinstance(cub, Mul) and len(cub.factors) == 2:
            c, p = cub.factors
            if isinstance(c, Const) and _near(c.value, 0.044715) and isinstance(p, Pow) and \
                    same(p.base, x) and isinstance(p.exponent, Const) and p.exponent.value == 3:
                return True
    return False


def _number(e):
    """The value of a number written as one: 0.7071, 1/sqrt(2), sqrt(2)."""
    if isinstance(e, Const):
        return e.value
    if _is_call(e, "recip") and _number(e.arg):
        return 1 / _number(e.arg)
    if _is_call(e, "sqrt") and isinstance(_number(e.arg), (int, float)) and _number(e.arg) >= 0:
        return math.sqrt(_number(e.arg))
    return None


def _near(a, b):
    return isinstance(a, (int, float)) and abs(a - b) <= 1e-6 * abs(b)


def _is_call(e, func):
    return isinstance(e, Call) and e.func == func


# -- equality up to the names of bound indices ---------------------------------------------
def same(a, b):
    return _canonical(a) == _canonical(b)


def _canonical(e, bound=()):
    """e with every bound index (a reduction's, a Σ's) renamed by its depth: §0, §1, ..."""
    if isinstance(e, (Reduce, Sigma)):
        names = {i: f"§{len(bound) + k}" for k, i in enumerate(e.indices)}
        body = _canonical(rename(e.body, names), bound + tuple(names.values()))
        indices = tuple(names[i] for i in e.indices)
        return Reduce(e.op, indices, body) if isinstance(e, Reduce) else Sigma(indices, body)
    return with_children(e, tuple(_canonical(c, bound) for c in children(e)))
