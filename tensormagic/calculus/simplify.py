"""A tangent in the direction of every entry of an input at once, and the δ it sums away.

`batched` takes a tangent formula of the gradient cell (linear in the tangents) and makes it
the tangent along each entry e of the direction's input: a read of the direction, dW[s,t],
becomes δ[e1,s] δ[e2,t]; a read of any other tangent, dH[…], carries the extra indices
(e1, e2) too. Each term is then a product under its Σ, and every δ[e,s] whose s the Σ runs
over is summed away: s becomes e in the rest of the term (Σ_j A[i,j] δ[e,j] = A[i,e]),
unless s stands alone in a shifted subscript there (its range is then narrower than e's).
"""
from dataclasses import replace

from ..language.bindings import rename
from ..language.ir import (Add, Affine, Call, Const, Mul, Reduce, Scalar, Sigma, Tensor, children, unique,
                           with_children)
from .derive import _flat, _merge, _negated, _negative, _simplify

BASIS = "δ:basis"  # the direction's δ while it is summed away (any other δ stays)
_LETTERS = "klmnpqrstuvwabcdefghjxyz"


def fresh_indices(dims, used):
    """One index per dim of the direction, used nowhere: iʹ for i, else a free letter."""
    out = []
    for d in dims:
        for name in [d + "ʹ"] + list(_LETTERS) + [c + "ʹ" for c in _LETTERS]:
            if name not in used and name not in out:
                out.append(name)
                break
    return tuple(out)


def batched(rhs, direction, tangents, extra, identity):
    """The tangent formula `rhs` along every entry of `direction`'s input (see the module)."""
    e = _flat(_batch(rhs, direction, set(tangents), extra))
    e = _unique_bindings(e, set(extra))
    narrow = _narrow(e)
    terms = []
    for sign, bound, factors in _monomials(e):
        bound, factors = _eliminate(bound, factors, narrow)
        product = _simplify(Mul((Const(sign),) + tuple(factors)))
        if product is not None:
            terms.append(Sigma(bound, product) if bound else product)
    return _as_identity(_sum(_merge(terms)), identity)


def _batch(e, direction, tangents, extra):
    if isinstance(e, Scalar) and e.name == direction:  # a number's own direction: 1
        return Const(1)
    if isinstance(e, Scalar) and e.name in tangents:
        return Tensor(e.name, extra)
    if isinstance(e, Tensor) and e.name == direction:
        subs = e.access if e.access is not None else e.indices
        return Mul(tuple(_delta(x, s) for x, s in zip(extra, subs)))
    if isinstance(e, Tensor) and e.name in tangents:
        if e.access is None:
            return Tensor(e.name, e.indices + extra)
        return Tensor(e.name, unique(e.indices + extra), None, e.access + extra)
    return with_children(e, tuple(_batch(c, direction, tangents, extra) for c in children(e)))


def _delta(x, s):
    """δ[x, s]: 1 where the subscript s reads position x."""
    if isinstance(s, str):
        return Tensor(BASIS, (x, s))
    inner = s.indices if isinstance(s, Tensor) else tuple(i for _, i in s.terms)
    return Tensor(BASIS, unique((x,) + inner), None, (x, s))


def _indices(e):
    """Every index e names, bound or free."""
    found = set(getattr(e, "indices", ())) if isinstance(e, (Sigma, Reduce)) else set()
    if isinstance(e, Tensor):
        found |= set(e.occurrences()) | set(e.indices)
    return found.union(*(_indices(c) for c in children(e)))


def _unique_bindings(e, taken):
    """Every index a Σ or a reduction binds renamed, where needed, to one used nowhere else
    in e: a Σ's index can then be moved out to its term without capturing another."""
    seen = set(taken) | _free(e)
    everything = _indices(e) | set(taken)

    def visit(e):
        if isinstance(e, (Sigma, Reduce)):
            mapping = {}
            for i in e.indices:
                if i in seen:
                    fresh = i + "ʹ"
                    while fresh in everything or fresh in seen:
                        fresh += "ʹ"
                    mapping[i] = fresh
                    everything.add(fresh)
                seen.add(mapping.get(i, i))
            if mapping:
                e = replace(e, indices=tuple(mapping.get(i, i) for i in e.indices),
                            body=rename(e.body, mapping))
        return with_children(e, tuple(visit(c) for c in children(e)))

    return visit(e)


def _free(e):
    if isinstance(e, Tensor):
        return set(e.indices)
    inner = set().union(*(_free(c) for c in children(e))) if children(e) else set()
    return inner - set(e.indices) if isinstance(e, (Sigma, Reduce)) else inner


def _narrow(e):
    """Indices alone in some shifted subscript: their range is narrower than a plain read's."""
    found = set()
    if isinstance(e, Tensor):
        for a in e.access or ():
            if isinstance(a, Affine) and len({i for _, i in a.terms}) == 1:
                found.add(a.terms[0][1])
    return found.union(*(_narrow(c) for c in children(e)))


def _monomials(e, sign=1, bound=()):
    """e, linear in the direction's δs, as [(sign, the Σ's indices, factors)]: sums and
    products distributed over what holds the δs (the rest of each product left as it is)."""
    if isinstance(e, Add):
        return [m for t, s in zip(e.terms, e.signs) for m in _monomials(t, sign * s, bound)]
    if isinstance(e, Sigma) or (isinstance(e, Reduce) and e.op == "sum"):
        return _monomials(e.body, sign, bound + e.indices)
    if isinstance(e, Mul):
        holding = [k for k, f in enumerate(e.factors) if _has_basis(f) and not isinstance(f, Tensor)]
        if not holding:
            return [(sign, bound, list(e.factors))]
        if len(holding) == 1:
            k = holding[0]
            rest = list(e.factors[:k]) + list(e.factors[k + 1:])
            return [(sign * s, bound + b, rest + f) for s, b, f in _monomials(e.factors[k])]
    return [(sign, bound, [e])]


def _has_basis(e):
    if isinstance(e, Tensor):
        return e.name == BASIS
    return any(_has_basis(c) for c in children(e))


def _eliminate(bound, factors, narrow):
    """Sum away each δ[e,s] whose s the term's Σ runs over: s becomes e in the other factors."""
    while True:
        for k, f in enumerate(factors):
            if isinstance(f, Tensor) and f.name == BASIS and f.access is None:
                x, s = f.indices
                if s in bound and s not in narrow:
                    factors = [rename(g, {s: x}) for j, g in enumerate(factors) if j != k]
                    bound = tuple(i for i in bound if i != s)
                    break
        else:
            return bound, factors


def _sum(terms):
    if not terms:
        return Const(0)
    if len(terms) == 1:
        return terms[0]
    signs = tuple(-1 if _negative(t) else 1 for t in terms)
    return Add(tuple(_negated(t) if s < 0 else t for t, s in zip(terms, signs)), signs)


def _as_identity(e, identity):
    if isinstance(e, Tensor) and e.name == BASIS:
        return replace(e, name=identity)
    if isinstance(e, Call) and e.func == "conj" and isinstance(e.arg, Tensor) and e.arg.name == BASIS:
        return replace(e.arg, name=identity)
    return with_children(e, tuple(_as_identity(c, identity) for c in children(e)))
