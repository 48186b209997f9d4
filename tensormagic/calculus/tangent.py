"""Symbolic forward mode on the IR: the readable tangent formulas (fn.tangents).

Beside derive.py's reverse mode: the tangent of each statement's target is the differential
of its right side. Every read of a tensor that depends on an input in wrt becomes its tangent
(dB for B) through the sum, product and chain rules, and each Σ stays where it sits. A
formula reads back as a statement of the language: where the summation rule would place a
sum elsewhere, the Σ is written out. Formulas are written for real numbers (for complex inputs
the generated jvp takes |z|'s tangent as Re(conj(sgn z)·ż); holomorphic functions need no
conjugate). The generated jvp (codegen.generate_jvp) computes the same tangents.
"""
from dataclasses import replace

from ..language.algebra import add
from ..language.functions import FUNCTIONS
from ..language.ir import (Add, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar, Sigma, Tensor,
                           children, with_children)
from ..language.parse import parse_statement
from ..language.printer import text
from ..language.sums import place_sums
from .derive import (Formula, _apply, _delta, _flat, _fresh, _minus_one, _power, _reduction_partial,
                     _relevant, _substitute, _versions)

PREFIX = "d"


def tangents(cell, wrt, prefix=PREFIX):
    """One formula per statement whose result depends on an input in wrt, in cell order.
    prefix: what a tangent's name starts with (dW for W)."""
    versions = _versions(cell)
    relevant = _relevant(cell, versions, set(wrt))
    out = []
    for k, st in enumerate(cell.statements):
        me = (st.target, k)
        if me not in relevant:
            continue
        d = _Differential(st, k, versions, relevant, prefix)
        rhs = d(st.rhs)
        op = "="
        if st.op == "+=" and st.target_access is not None:  # dH[tok[b],d] += dX[b,d] (onto dH_in)
            op = "+="
        elif st.op == "+=":
            rhs = _add([d.leaf(versions["old"][k], lambda n: Tensor(n, st.indices)), rhs], [1, 1])
        target = replace(st.target_read, name=_delta(versions, me, prefix))
        rhs = _unshadow(_flat(rhs), set(st.indices)) if rhs is not None else Const(0)
        out.append(Formula(st.target if versions["final"][st.target] == me else target.name[len(prefix):],
                           target, rhs, op=op))
    return out


class _Differential:
    """d(e) for the expressions of one statement; None where the tangent is zero."""

    def __init__(self, st, k, versions, relevant, prefix=PREFIX):
        self.st, self.k, self.versions, self.relevant = st, k, versions, relevant
        self.prefix = prefix

    def leaf(self, v, make):
        return make(_delta(self.versions, v, self.prefix)) if v in self.relevant else None

    def __call__(self, e):
        if isinstance(e, Tensor):  # the same subscripts (shifted, fixed, gathered) of the tangent
            return self.leaf(self.versions["reads"][(self.k, id(e))], lambda n: replace(e, name=n))
        if isinstance(e, Scalar):
            return self.leaf(self.versions["reads"][(self.k, id(e))], Scalar)
        if isinstance(e, (Const, Indicator)):  # an indicator is constant almost everywhere
            return None
        if isinstance(e, Add):
            return _add([self(t) for t in e.terms], e.signs)
        if isinstance(e, Mul):
            terms = []
            for j, f in enumerate(e.factors):
                df = self(f)
                if df is not None:
                    terms.append(Mul(e.factors[:j] + (df,) + e.factors[j + 1:]))
            return _add(terms, [1] * len(terms))
        if isinstance(e, Sigma):
            d = self(e.body)
            if isinstance(d, Add):  # a sum of terms: each keeps the Σ
                return Add(tuple(Sigma(e.indices, t) for t in d.terms), d.signs)
            return d and Sigma(e.indices, d)
        if isinstance(e, Reduce):
            d = self(e.body)
            if d is None:
                return None
            if e.op in ("sum", "mean"):  # linear
                return Reduce(e.op, e.indices, d)
            return Reduce("sum", e.indices, Mul(_reduction_partial(e, self.value(e)) + (d,)))
        if isinstance(e, Binary):  # the larger (max) or smaller (min) operand moves it: θ(gap)
            terms = []
            for mine, other in ((e.left, e.right), (e.right, e.left)):
                d = self(mine)
                if d is not None:
                    gap = add(mine, other, -1) if e.func == "max" else add(other, mine, -1)
                    terms.append(Mul((Call("step", gap), d)))
            return _add(terms, [1] * len(terms))
        if isinstance(e, Call):
            d = self(e.arg)
            rule = FUNCTIONS[e.func].derivative
            if d is None or (isinstance(rule, Const) and rule.value == 0):
                return None
            if rule is None:  # conj: linear
                return Call(e.func, d)
            return Mul((_substitute(rule, e.arg, self.value(e)), d))
        if isinstance(e, Pow):
            db, de = self(e.base), self(e.exponent)
            terms = []
            if db is not None:
                terms.append(Mul((e.exponent, _power(e.base, _minus_one(e.exponent)), db)))
            if de is not None:
                terms.append(Mul((self.value(e), Call("log", e.base), de)))
            return _add(terms, [1] * len(terms))
        raise TypeError(e)

    def value(self, e):
        """e's value: the statement's target when e is the whole right side."""
        st = self.st
        return Tensor(st.target, st.indices) if e is st.rhs and st.op != "+=" and st.target_access is None else e


def _add(terms, signs):
    kept = [(t, s) for t, s in zip(terms, signs) if t is not None]
    if not kept:
        return None
    if len(kept) == 1 and kept[0][1] > 0:
        return kept[0][0]
    return Add(tuple(t for t, _ in kept), tuple(s for _, s in kept))


def _unshadow(e, scope):
    """A Σ or reduction inside another over the same index (logsumexp[j] within the sum over
    j its derivative brings) gets a fresh name: an index is reduced once where it sits.
    Siblings may share names, as in a statement."""
    if isinstance(e, (Sigma, Reduce)):
        near = scope | set(_all_indices(e))
        mapping = {i: _fresh(i, near) if i in scope else i for i in e.indices}
        inner = scope | set(mapping.values())
        body = _unshadow(_apply(e.body, mapping), inner)
        indices = tuple(mapping[i] for i in e.indices)
        return Sigma(indices, body) if isinstance(e, Sigma) else Reduce(e.op, indices, body, e.span)
    return with_children(e, tuple(_unshadow(c, scope) for c in children(e)))


def _all_indices(e):
    own = tuple(getattr(e, "indices", ())) if isinstance(e, (Tensor, Sigma, Reduce)) else ()
    return own + tuple(i for c in children(e) for i in _all_indices(c))


def tangent_text(f):
    """Einstein style where the summation rule reads it back with the same sums; each Σ
    written out otherwise."""
    lhs = text(f.target)
    implicit = text(f.rhs)
    try:
        st = parse_statement(f"{lhs} := {implicit}")
        same = place_sums(st.rhs, st.indices) == f.rhs
    except Exception:  # noqa: BLE001  (a form the parser refuses: write every Σ)
        same = False
    return f"{lhs} {f.op} {implicit if same else text(f.rhs, sums=True)}"
