"""Symbolic reverse mode on the IR: the readable gradient formulas.

Each formula is itself a statement of the language (same summation rule): the
incoming gradient ΔY times the partial derivative along the path to the
tensor, the indices it does not keep summed, a δ where a repeated index is
rebuilt. Formulas are written for real numbers; for complex inputs the code
multiplies by the conjugate of each partial, as torch does.
"""
import math
from dataclasses import dataclass, replace

from ..language.algebra import add
from ..language.bindings import rename
from ..language.functions import FUNCTIONS, X, Y
from ..language.ir import (Add, Affine, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar,
                           Sigma, Tensor, children, leaves, unique, with_children)
from ..language.printer import text
from ..language.sums import sums_at

PRIME = "ʹ"  # U+02B9: a letter, so a primed index is still an identifier
DELTA = "δ"


@dataclass(frozen=True)
class Formula:
    name: str               # the tensor (version) this is the gradient of
    target: Tensor          # ΔB[i,j]
    rhs: object             # an expression, Const(0) when the gradient vanishes
    of_input: bool = False  # the gradient of a cell input (not of an intermediate)
    op: str = "="           # "+=": a tangent a scatter adds onto the old one's


@dataclass(frozen=True)
class _Options:
    """How the partials are written: conj (the code's complex convention: each partial
    conjugated, and the gradient of a real value |z| its real part) and sizes (one
    {index: size} per statement: a sum over an index no factor carries, and mean's |j|,
    become numbers). The shown formulas use neither; second order compiles with them."""
    conj: bool = False
    sizes: dict = None


def derive(cell, wrt, conj=False, sizes=None):
    """The formulas for every tensor between the last output and the inputs in `wrt`,
    in the order reverse mode computes them. conj, sizes: see _Options (for compiling
    the formulas; the shown ones take neither)."""
    versions = _versions(cell)
    names = set(cell.inputs) | set(cell.outputs)
    # Δx is x's gradient; where a tensor's own name starts with Δ, gradients take ΔΔ (and so
    # on), so that no gradient's name is a tensor's.
    versions["prefix"] = "Δ"
    while any(n.startswith(versions["prefix"]) for n in names):
        versions["prefix"] += "Δ"
    relevant = _relevant(cell, versions, set(wrt))
    last = len(cell.statements) - 1
    # The derivation starts from every output no later statement reads (its Δ is given).
    read_later = {v for k in range(last + 1) for v in _reads(cell, versions, k)}
    sinks = {(st.target, k) for k, st in enumerate(cell.statements)
             if versions["final"][st.target] == (st.target, k) and (st.target, k) not in read_later}
    terms = {v: [] for v in sinks}
    shown = {}
    formulas = []
    for k in range(last, -1, -1):
        st = cell.statements[k]
        me = (st.target, k)
        if me not in terms:
            continue
        upstream = replace(st.target_read, name=_delta(versions, me))  # (a scatter's: gathered)
        if me not in sinks:
            formulas.append(_formula(versions, me, shown[me], terms[me]))
        narrow = _narrowable(st)
        taken = set(st.indices) | {i for leaf in leaves(st.rhs) for i in getattr(leaf, "indices", ())}
        opts = _Options(conj, sizes[k] if sizes is not None else None)
        for leaf, factors, bound in _paths(st.rhs, st, (upstream,), (), opts):
            if isinstance(leaf, Tensor) or isinstance(leaf, Scalar):
                v = versions["reads"][(k, id(leaf))]
                if v in relevant:
                    dims = _dims(leaf, narrow)
                    shown.setdefault(v, _lhs(dims, taken))
                    terms.setdefault(v, []).append(_term(factors, dims, shown[v], bound,
                                                         getattr(leaf, "indices", ()), opts.sizes))
        if st.op == "+=":
            v = versions["old"][k]
            if v in relevant:
                shown.setdefault(v, _target_dims(st))
                terms.setdefault(v, []).append(Mul((Tensor(upstream.name, shown[v]),)))
    for name in wrt:
        v = (name, -1)
        indices = shown.get(v) or _lhs(_first_indices(cell, name))
        formulas.append(_formula(versions, v, indices, terms.get(v, [])))
    if DELTA in names:  # a tensor of the cell is named δ: the identity takes another name
        identity = DELTA + PRIME
        while identity in names:
            identity += PRIME
        formulas = [replace(f, rhs=_rename_identity(f.rhs, identity)) for f in formulas]
    return formulas


def symmetrised(f):
    """The gradient of a symmetric matrix W (W[i,j] = W[j,i]): the symmetric part of the
    formula G it would have, ΔW[i,j] = 0.5 * (G[i,j] + G[j,i]) (each term kept as it is, so
    the text shows both halves; the code takes ½(G + Gᴴ) for a complex, Hermitian W)."""
    i, j = f.target.indices
    if isinstance(f.rhs, Const):
        return f
    terms, signs = (f.rhs.terms, f.rhs.signs) if isinstance(f.rhs, Add) else ((f.rhs,), (1,))
    halves = tuple(_half(t) for t in terms)
    swapped = tuple(rename(t, {i: j, j: i}) for t in halves)
    return replace(f, rhs=Add(halves + swapped, signs + signs))


def _half(term):
    if isinstance(term, Sigma):
        return Sigma(term.indices, _half(term.body))
    return _simplify(Mul((Const(0.5), term))) or Const(0)


def _rename_identity(e, name):
    """The identities the derivation made (they have no place in the text) renamed."""
    if isinstance(e, Tensor) and e.name == DELTA and e.span is None:
        return replace(e, name=name)
    return with_children(e, tuple(_rename_identity(c, name) for c in children(e)))


def _target_dims(st):
    """An index per dim of a statement's target: its own, or (a scatter's) fresh ones."""
    return st.indices if st.target_access is None else _lhs(st.target_access, set(st.indices))


def _first_indices(cell, name):
    """The subscripts a name is first read with (for a gradient nothing flows into)."""
    for st in cell.statements:
        if st.target == name and st.op != ":=":
            return _target_dims(st)
        for leaf in leaves(st.rhs):
            if leaf.name == name:
                return _dims(leaf, _narrowable(st))
    return ()


def _narrowable(st):
    """Indices alone in a shifted subscript (x[i+1]): their range may be narrower than the
    tensors they index plainly, so a plain read of them is a read at a position too."""
    alone = set()
    for leaf in leaves(st.rhs):
        for a in getattr(leaf, "access", None) or ():
            if isinstance(a, Affine) and len({i for _, i in a.terms}) == 1:
                alone.add(a.terms[0][1])
    return alone


def _dims(leaf, narrow):
    """A leaf's subscripts, one per dimension: an index name where the gradient can use it as
    it is, otherwise the subscript (an Affine or an index tensor), rebuilt through δ."""
    if not isinstance(leaf, Tensor):
        return ()
    subs = leaf.access if leaf.access is not None else leaf.indices
    return tuple(Affine(((1, a),)) if isinstance(a, str) and a in narrow else a for a in subs)


def _reads(cell, versions, k):
    st = cell.statements[k]
    reads = [versions["reads"][(k, id(leaf))] for leaf in leaves(st.rhs)]
    return reads + ([versions["old"][k]] if st.op == "+=" else [])


def _versions(cell):
    """Which version of each name every leaf reads: (name, defining statement or -1)."""
    current, reads, old = {}, {}, {}
    count = {}
    for k, st in enumerate(cell.statements):
        if st.op != ":=":
            old[k] = current.get(st.target, (st.target, -1))
        for leaf in leaves(st.rhs):
            reads[(k, id(leaf))] = current.get(leaf.name, (leaf.name, -1))
        current[st.target] = (st.target, k)
        count[st.target] = count.get(st.target, 0) + 1
    return {"reads": reads, "old": old, "final": current, "count": count}


def _relevant(cell, versions, wrt):
    """Versions that lie on a path from an input in wrt."""
    relevant = {(n, -1) for n in wrt}
    for k, st in enumerate(cell.statements):
        if any(r in relevant for r in _reads(cell, versions, k)):
            relevant.add((st.target, k))
    return relevant


def _delta(versions, v, prefix=None):
    """The name of a version's gradient (or, with prefix "d", of its tangent)."""
    prefix = prefix or versions.get("prefix", "Δ")
    name, k = v
    final = versions["final"].get(name) == v or (k == -1 and name not in versions["final"])
    if final:
        return prefix + name
    return prefix + name + ("_in" if k == -1 else f"_{k + 1}")


def _formula(versions, v, indices, terms):
    target = Tensor(_delta(versions, v), indices)
    kept = [t for t in terms if t is not None]
    kept = _merge(kept)
    taken = set(indices) | {i for t in kept for i in _outer_indices(t)}
    kept = [_readable(_unique_bound(t, taken), indices) for t in kept]
    of_input = v[1] == -1
    if not kept:
        return Formula(v[0], target, Const(0), of_input)
    if len(kept) == 1:
        return Formula(v[0], target, kept[0], of_input)
    signs = tuple(-1 if _negative(t) else 1 for t in kept)
    kept = [_negated(t) if sign < 0 else t for t, sign in zip(kept, signs)]
    return Formula(v[0], target, Add(tuple(kept), signs), of_input)


def _readable(term, lhs):
    """Make sure the term, read back as a statement, sums its indices over the whole term.
    A repeated index inside one tensor within a function, say `1 / T[j,j]` summed over j
    outside, would read as a trace inside; such sums are written explicitly: Σ_j (...)."""
    explicit = term.indices if isinstance(term, Sigma) else ()
    body = term.body if isinstance(term, Sigma) else term
    if not _in_language(body):
        return term
    at_root = tuple(sums_at(_without_sums(body), tuple(lhs)).get((), ()))  # as the rule reads it
    missing = tuple(i for i in unique(_outer_indices(body))
                    if i not in lhs and i not in at_root and i not in explicit)
    return Sigma(explicit + missing, body) if missing else term


def _without_sums(e):
    """e as written (the text drops each Σ): the tree the summation rule reads back."""
    if isinstance(e, Sigma):
        return _without_sums(e.body)
    return with_children(e, tuple(_without_sums(c) for c in children(e)))


def _in_language(e):
    """False for the pieces only formulas use (the indicator 𝟙, an index's size |j|)."""
    if isinstance(e, Indicator) or (isinstance(e, Scalar) and e.name.startswith("|")):
        return False
    return all(_in_language(c) for c in children(e))


def _merge(terms):
    """Terms that differ only in their numeric factor become one: x*ΔL + ΔL*x is 2 * ΔL * x.
    The coefficients are summed first and applied once, so a running sum that passes
    through 0 (x - x + x) keeps the factors."""
    first, total = {}, {}
    for term in terms:
        key = _key(term)
        first.setdefault(key, term)
        total[key] = total.get(key, 0) + _coefficient(term)
    return [_with_coefficient(first[key], c) for key, c in total.items() if c != 0]


def _key(term):
    if isinstance(term, Sigma):
        return ("Σ", term.indices, _key(term.body))
    return tuple(sorted(text(f, sums=True) for f in term.factors if not isinstance(f, Const)))


def _coefficient(term):
    if isinstance(term, Sigma):
        return _coefficient(term.body)
    return term.factors[0].value if term.factors and isinstance(term.factors[0], Const) else 1


def _with_coefficient(term, value):
    if isinstance(term, Sigma):
        return Sigma(term.indices, _with_coefficient(term.body, value))
    rest = tuple(f for f in term.factors if not isinstance(f, Const))
    return _simplify(Mul((Const(value),) + rest)) or Mul((Const(0),))


def _negated(term):
    if isinstance(term, Sigma):
        return Sigma(term.indices, _negated(term.body))
    return _simplify(Mul((Const(-1), term)))


def _negative(term):
    if isinstance(term, Sigma):
        return _negative(term.body)
    lead = term.factors[0] if term.factors else None
    return isinstance(lead, Const) and not isinstance(lead.value, complex) and lead.value < 0


def _lhs(dims, taken=()):
    """A repeated index gets a prime on its later occurrences: D[l,l] → ΔD[l,lʹ]; a shifted,
    fixed or gathered subscript gets an index of its own, used nowhere in the statement."""
    out = []
    for a in dims:
        if isinstance(a, str):
            name = a
        elif isinstance(a, Affine) and a.terms:
            name = a.terms[0][1] + PRIME
        else:
            name = "v" if isinstance(a, Tensor) else "k"
        while name in out or (not isinstance(a, str) and name in taken):
            name += PRIME
        out.append(name)
    return tuple(out)


def _paths(e, st, chain, bound=(), opts=_Options()):
    """(leaf, its adjoint's factors, the sums above it) for every leaf occurrence under e.
    `chain` is the adjoint of e so far; in a product it takes the place of the factor it
    flows into."""
    cj = _conjugated if opts.conj else (lambda f: f)
    if isinstance(e, (Tensor, Scalar)):
        yield e, chain, bound
    elif isinstance(e, Add):
        for term, sign in zip(e.terms, e.signs):
            yield from _paths(term, st, ((Const(-1),) if sign < 0 else ()) + chain, bound, opts)
    elif isinstance(e, Mul):
        for k, f in enumerate(e.factors):
            others = tuple(cj(g) for g in e.factors[:k]) + chain + tuple(cj(g) for g in e.factors[k + 1:])
            yield from _paths(f, st, others, bound, opts)
    elif isinstance(e, Sigma):
        yield from _paths(e.body, st, chain, bound + e.indices, opts)
    elif isinstance(e, Reduce):
        value = Tensor(st.target, st.indices) if e is st.rhs and st.target_access is None else e
        partial = tuple(cj(f) for f in _reduction_partial(e, value, opts.sizes))
        yield from _paths(e.body, st, chain + partial, bound + e.indices, opts)
    elif isinstance(e, Binary):
        for mine, other in ((e.left, e.right), (e.right, e.left)):
            # the larger (max) or smaller (min) operand takes the gradient: θ(mine - other)
            gap = add(mine, other, -1) if e.func == "max" else add(other, mine, -1)
            yield from _paths(mine, st, chain + (Call("step", gap),), bound, opts)
    elif isinstance(e, Call):
        value = Tensor(st.target, st.indices) if e is st.rhs and st.target_access is None else e
        rule = FUNCTIONS[e.func].derivative
        if opts.conj and e.func == "abs":  # |z| is real: its gradient is the real part
            chain = (_real_part(Mul(chain)),)
        if rule is None:  # conj: linear, and the identity on real numbers
            yield from _paths(e.arg, st, tuple(cj(f) for f in chain) if opts.conj else chain, bound, opts)
        elif not (isinstance(rule, Const) and rule.value == 0):
            partial = _substitute(rule, e.arg, value)
            yield from _paths(e.arg, st, chain + (cj(partial) if FUNCTIONS[e.func].conj else partial,),
                              bound, opts)
    elif isinstance(e, Pow):
        base, exponent = e.base, e.exponent
        yield from _paths(base, st, chain + (cj(Mul((exponent, _power(base, _minus_one(exponent))))),),
                          bound, opts)
        value = Tensor(st.target, st.indices) if e is st.rhs and st.target_access is None else e
        yield from _paths(exponent, st, chain + (cj(Mul((value, Call("log", base)))),), bound, opts)


def _conjugated(f):
    """conj(f) as the code's complex convention multiplies by it (numbers folded, δ real)."""
    if isinstance(f, Const):
        return Const(f.value.conjugate()) if isinstance(f.value, complex) else f
    if isinstance(f, Tensor) and f.name == DELTA and f.span is None:
        return f
    return Call("conj", f)


def _real_part(e):
    """Re(e) = (e + conj(e)) / 2."""
    return Mul((Const(0.5), Add((e, Call("conj", e)), (1, 1))))


def _reduction_partial(e, value, sizes=None):
    """∂ op_j(body) / ∂ body, as factors, written with the reduction's value (mean's |j| a
    number where the statement's sizes are given)."""
    if e.op == "mean" and sizes is not None:
        return (Const(1 / math.prod(sizes[i] for i in e.indices)),)
    if e.op == "mean":
        return tuple(Call("recip", Scalar(f"|{i}|")) for i in e.indices)
    if e.op == "logsumexp":
        return (Call("exp", add(e.body, value, -1)),)
    if e.op == "prod":
        return (value, Call("recip", e.body))
    if e.op in ("max", "min"):  # shared equally among ties
        return (Indicator(e.body, value), Call("recip", Reduce("sum", e.indices, Indicator(e.body, value))))
    return ()


def _power(base, exponent):
    if isinstance(exponent, Const) and exponent.value == 1:
        return base
    return Pow(base, exponent)


def _minus_one(e):
    if isinstance(e, Const):
        return Const(e.value - 1)
    return Add((e, Const(1)), (1, -1))


def _substitute(rule, x, y):
    if rule == X:
        return x
    if rule == Y:
        return y
    return with_children(rule, tuple(_substitute(c, x, y) for c in children(rule)))


def _term(factors, dims, lhs, bound=(), leaf_indices=(), sizes=None):
    """ΔY · factors, renamed so the leaf's indices read as the formula's left side,
    with δ for repeated ones and for each shifted, fixed or gathered subscript
    (Δx[iʹ] = Δy[i] * δ[iʹ,i+1]). A sum above the leaf over an index that no factor carries
    (the term was broadcast along it) stays as an explicit Σ: it counts that index's size."""
    mapping = {}
    deltas, placed = [], []
    for d, (old, new) in enumerate(zip(dims, lhs)):
        if not isinstance(old, str):
            token = f"@{d}"  # stands for the left index until the renaming below
            mapping[token] = new
            inner = (old,) if isinstance(old, str) else \
                old.indices if isinstance(old, Tensor) else tuple(i for _, i in old.terms)
            placed.append(Tensor(DELTA, unique((token,) + inner), None, (token, old)))
        elif old in mapping:
            deltas.append(Tensor(DELTA, (mapping[old], new)))
        else:
            mapping[old] = new
    product = _simplify(Mul(tuple(factors)))
    if product is None:
        return None
    phantom = [i for i in unique(bound) if i not in leaf_indices and i not in _outer_indices(product)]
    if placed:
        product = _simplify(Mul((product,) + tuple(placed)))
    product = _rename(product, mapping, used=set(lhs))
    if deltas:
        product = _simplify(Mul((product,) + tuple(deltas)))
    if phantom and sizes is not None:  # the size of what the term was broadcast along
        product = _simplify(Mul((Const(math.prod(sizes[i] for i in phantom)), product)))
    elif phantom:
        taken = set(lhs) | set(_outer_indices(product))
        product = Sigma(tuple(_fresh(i, taken) if i in taken else i for i in phantom), product)
    return product


def _outer_indices(e):
    """Indices of e not bound inside it."""
    if isinstance(e, Tensor):
        return list(e.indices)
    if isinstance(e, (Sigma, Reduce)):
        return [i for i in _outer_indices(e.body) if i not in e.indices]
    return [i for c in children(e) for i in _outer_indices(c)]


def _rename(e, mapping, used):
    """Rename the formula-level indices: mapping first, any other that clashes gets a fresh name."""
    taken = set(used) | set(mapping.values())
    full = dict(mapping)
    for i in _outer_indices(e):
        if i not in full:
            full[i] = _fresh(i, taken) if i in taken else i
            taken.add(full[i])
    return _apply(e, full)


def _fresh(i, taken):
    name = i + PRIME
    while name in taken:
        name += PRIME
    return name


def _apply(e, mapping):
    if isinstance(e, Tensor):
        access = None if e.access is None else tuple(_apply_subscript(a, mapping) for a in e.access)
        return Tensor(e.name, tuple(mapping.get(i, i) for i in e.indices), e.span, access)
    if isinstance(e, (Sigma, Reduce)):
        inner = {k: v for k, v in mapping.items() if k not in e.indices}
        clash = [i for i in e.indices if i in inner.values()]
        if clash:  # a free index would be renamed to a bound one: rename the bound one first
            taken = set(inner) | set(inner.values()) | set(_all_indices(e.body))
            fresh = {}
            for i in clash:
                fresh[i] = _fresh(i, taken)
                taken.add(fresh[i])
            e = replace(e, indices=tuple(fresh.get(i, i) for i in e.indices), body=_apply(e.body, fresh))
        return with_children(e, (_apply(e.body, inner),))
    return with_children(e, tuple(_apply(c, mapping) for c in children(e)))


def _all_indices(e):
    """Every index named anywhere in e, bound or free."""
    own = set(getattr(e, "indices", ())) if isinstance(e, (Tensor, Sigma, Reduce)) else set()
    return own.union(*(_all_indices(c) for c in children(e)))


def _apply_subscript(a, mapping):
    if isinstance(a, str):
        return mapping.get(a, a)
    if isinstance(a, Tensor):
        return _apply(a, mapping)
    return Affine(tuple((c, mapping.get(i, i)) for c, i in a.terms), a.offset)


def _unique_bound(e, taken, scope=None):
    """Give every index bound inside the formula a name used nowhere else in it, so that the
    formula, read as a statement, sums each index where it sits. An explicit reduction's
    index needs only differ from the indices visible where it sits (`scope`): sibling
    reductions may share a name, as they may in a statement."""
    scope = set(taken) if scope is None else scope
    if isinstance(e, (Sigma, Reduce)):
        mapping = {}
        for i in e.indices:
            clash = (taken | scope) if isinstance(e, Sigma) else scope
            name = _fresh(i, clash) if i in clash else i
            if isinstance(e, Sigma):
                taken.add(name)
            mapping[i] = name
        inner = scope | set(mapping.values())
        body = _unique_bound(_apply(e.body, mapping), taken, inner)
        indices = tuple(mapping[i] for i in e.indices)
        return Sigma(indices, body) if isinstance(e, Sigma) else Reduce(e.op, indices, body, e.span)
    return with_children(e, tuple(_unique_bound(c, taken, scope) for c in children(e)))


def _simplify(product):
    """Flatten a product and fold its numbers into one leading constant; None when zero."""
    factors, value = [], 1
    stack = list(product.factors)
    while stack:
        f = stack.pop(0)
        if isinstance(f, Mul):
            stack[:0] = f.factors
        elif isinstance(f, Const):
            value *= f.value
        else:
            factors.append(f)
    if value == 0:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return Mul(((Const(value),) if value != 1 else ()) + tuple(factors))


def _flat(e):
    """Nested sums and products flattened, numbers folded into one leading factor."""
    if isinstance(e, Add):
        terms, signs = [], []
        for t, s in zip(e.terms, e.signs):
            t = _flat(t)
            if isinstance(t, Add):
                terms += t.terms
                signs += [s * u for u in t.signs]
            elif (isinstance(t, Mul) or isinstance(t, Sigma) and isinstance(t.body, Mul)) \
                    and _negative(t):  # x + -y reads x - y
                terms.append(_flat(_negated(t)))
                signs.append(-s)
            else:
                terms.append(t)
                signs.append(s)
        if len(terms) == 1:  # one term: itself, or its negation (no sum of one)
            return terms[0] if signs[0] > 0 else _flat(Mul((Const(-1), terms[0])))
        return Add(tuple(terms), tuple(signs))
    if isinstance(e, Mul):
        product = _simplify(Mul(tuple(_flat(f) for f in e.factors)))
        if product is None:
            return Const(0)
        return product.factors[0] if len(product.factors) == 1 else product
    if isinstance(e, (Sigma, Reduce, Binary)):
        return with_children(e, tuple(_flat(c) for c in children(e)))
    if isinstance(e, Call):
        return Call(e.func, _flat(e.arg))
    if isinstance(e, Pow):
        return Pow(_flat(e.base), _flat(e.exponent))
    return e
