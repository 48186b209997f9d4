"""The rewrites that make a formula read like print, on the IR: both math views (LaTeX in
render.py, MathML in mathml.py) show what these return, so they read alike.

A product becomes a signed fraction with equal factors as powers and common factors
cancelled (x_i x_i / (x_i Z Z) is x_i / Z²), and a repeated scalar sub-expression holding a
sum is named once (N = √Σ_j x_j²).  Nothing here changes a value."""
import functools
from dataclasses import dataclass
from difflib import SequenceMatcher

from .ir import Add, Binary, Call, Const, Mul, Pow, Reduce, Scalar, Sigma, Tensor, children, free, unique, \
    with_children


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


# -- a long cell: its repeated sub-expressions named once ------------------------------------
LONG_NODES = 300    # a cell with a formula of more nodes than this (some 2 000 characters) is shortened
_MIN_NODES = 5      # a named sub-expression is at least this big
_SHARED_NAMES = "ABCDEFGHKLMNPQRSTUVZ"


@dataclass(frozen=True)
class Shortened:
    """The formulas as the views show them, and the definitions they use, in order (each
    reads only those before it): Formula objects whose target is the name, e.g. A[j]."""
    formulas: tuple
    definitions: tuple = ()

    def used_by(self, formula):
        """The definitions one formula needs, in order."""
        names = {d.target.name: d for d in self.definitions}
        need, todo = set(), [formula.rhs]
        while todo:
            for n in nodes(todo.pop()):
                if isinstance(n, Tensor) and n.name in names and n.name not in need:
                    need.add(n.name)
                    todo.append(names[n.name].rhs)
        return tuple(d for d in self.definitions if d.target.name in need)


def shorten(formulas, taken):
    """When some formula is long (a deep network's gradient repeats its whole forward
    expression in every factor), each sub-expression that the display would show more than
    once is named once, largest first, so the definitions nest (B[j] = σ(tanh(A[j]) w[j] + b[j]))
    and the display grows with the depth, not its square.  Nothing changes otherwise."""
    formulas = tuple(formulas)
    if not any(_more_nodes_than(f.rhs, LONG_NODES) for f in formulas):
        return Shortened(formulas)
    keys = _Keys()
    rhss = _share_runs(keys, [f.rhs for f in formulas])
    roots = [keys.key(r, ()) for r in rhss]
    named = sorted(_shared(keys, roots), key=lambda k: keys.size[k])  # each reads earlier ones
    if not named:
        return Shortened(formulas)
    leaves_ = [keys.example[k] for k, kids in keys.children.items()
               if not kids and isinstance(keys.example[k], (Tensor, Scalar))]
    used = set(taken) | {f.target.name for f in formulas} | {n.name.lstrip("Δ") for n in leaves_} \
        | {i for n in leaves_ if isinstance(n, Tensor) for i in n.indices}
    fresh = (n + s for s in ("", "2", "3", "4", "5", "6", "7", "8", "9") for n in _SHARED_NAMES)
    by, bodies, definitions = {}, {}, []
    for key in named:
        node = keys.example[key]
        body = _inlined(keys.rewrite(node, by, keys.where[key]), bodies)
        if _more_nodes_than(body, _MIN_NODES - 1):
            name = next(n for n in fresh if n not in used)
            by[key] = Tensor(name, free(node))
            definitions.append(replace_formula(formulas[0], name, by[key], _tidy_bound(body)))
        else:  # small once its parts are named (tanh(A[j])): shown where it stands
            bodies[key] = body
            by[key] = _Inline(key)
    shown = tuple(replace_formula(f, f.name, f.target, _inlined(keys.rewrite(r, by), bodies))
                  for f, r in zip(formulas, rhss))
    return Shortened(shown, tuple(definitions))


_MIN_RUN = 3     # factors
_MAX_RUNS = 64


def _share_runs(keys, rhss):
    """The longest run of factors that two products have in common (the chain of a deep
    network's layers, in the gradient of each of its inputs) as one nested product, which
    the naming that follows names once; again while such runs are long."""
    for r in rhss:
        keys.key(r, ())
    products = [[list(t.factors) for t in (r.terms if isinstance(r, Add) else (r,))
                 if isinstance(t, Mul)] for r in rhss]
    slots = [factors for p in products for factors in p]
    runs = []   # (placeholder, its factors): a later, shorter run may sit inside an earlier one
    common = functools.lru_cache(maxsize=None)(_longest_common)  # most pairs stay as they were
    for _ in range(_MAX_RUNS):
        seqs = [[keys.key(f, ()) for f in factors] for factors in slots]
        frozen = [tuple(seq) for seq in seqs]
        best = None
        for a in range(len(seqs)):
            for b in range(a + 1, len(seqs)):
                start, size = common(frozen[a], frozen[b])
                if size >= _MIN_RUN and (best is None or size > best[2]):
                    best = (a, start, size)
        if best is None:
            break
        a, start, size = best
        run = tuple(seqs[a][start:start + size])
        node = Mul(tuple(slots[a][start:start + size]))
        for k, seq in enumerate(seqs):
            at = _find(seq, run)
            while at is not None:  # each time the run occurs, left to right
                slots[k][at:at + size] = [node]
                seq[at:at + size] = [None]
                at = _find(seq, run)
        runs.append((node, list(node.factors)))
        slots.append(runs[-1][1])
    built = {}
    for node, factors in reversed(runs):  # the inner runs first
        built[id(node)] = Mul(tuple(built.get(id(f), f) for f in factors))
        keys.nameable[keys.key(built[id(node)], ())] = True
    out, k = [], 0
    for r, p in zip(rhss, products):
        terms = list(r.terms) if isinstance(r, Add) else [r]
        for t, term in enumerate(terms):
            if isinstance(term, Mul):
                factors = tuple(built.get(id(f), f) for f in slots[k])
                terms[t] = Mul(factors) if len(factors) > 1 else factors[0]
                k += 1
        out.append(Add(tuple(terms), r.signs) if isinstance(r, Add) else terms[0])
    return out


def _longest_common(a, b):
    m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.a, m.size


def _find(seq, run):
    for at in range(len(seq) - len(run) + 1):
        if tuple(seq[at:at + len(run)]) == run:
            return at
    return None


@dataclass(frozen=True)
class _Inline:
    """A placeholder for a sub-expression too small to name, put back by _inlined."""
    key: int


def _inlined(e, bodies):
    if isinstance(e, _Inline):
        return bodies[e.key]
    kids = children(e)
    return with_children(e, tuple(_inlined(c, bodies) for c in kids)) if kids else e


def replace_formula(f, name, target, rhs):
    return type(f)(name, target, rhs, False) if name != f.name else type(f)(f.name, target, rhs, f.of_input)


def _more_nodes_than(e, limit):
    count = 0
    for _ in nodes(e):
        count += 1
        if count > limit:
            return True
    return False


def _shared(keys, roots):
    """The keys to name: displayed twice or more once the larger ones are named, big enough,
    with no index bound outside them, and not a whole formula."""
    shown = dict.fromkeys(roots, 0)
    for r in roots:
        shown[r] += 1
    named = []
    for key in sorted(keys.size, key=lambda k: -keys.size[k]):
        times = shown.get(key, 0)
        if not times:
            continue
        name = times > 1 and keys.size[key] >= _MIN_NODES and keys.nameable[key] \
            and key not in roots
        if name:
            named.append(key)
        for child in keys.children[key]:
            shown[child] = shown.get(child, 0) + (1 if name else times)
    return named


class _Keys:
    """Each sub-expression interned as an int, equal for equal expressions up to the names
    of the indices summed inside them (an index bound by a Σ or a reduction is written as
    how many binders up it was bound, and where)."""

    def __init__(self):
        self.ids, self.size, self.children, self.example, self.nameable, self.reach = \
            {}, {}, {}, {}, {}, {}
        self.seen, self.alive, self.where = {}, [], {}

    def key(self, e, env):
        """e's key; each node's key is kept for rewrite()."""
        k = self.seen.get((id(e), env))
        if k is not None:
            return k
        kind = type(e)
        reach = 0
        if kind is Tensor:
            local, reach = self._tensor(e, env)
            child_keys = ()
        elif kind is Const:
            local, child_keys = ("C", type(e.value).__name__, e.value), ()
        elif kind is Scalar:
            local, child_keys = ("S", e.name), ()
        else:
            binder = kind is Sigma or kind is Reduce
            inner = env + (e.indices,) if binder else env
            child_keys = tuple(self.key(c, inner) for c in children(e))
            reach = max((self.reach[c] for c in child_keys), default=0) - binder
            local = (kind.__name__, getattr(e, "func", None), getattr(e, "op", None),
                     getattr(e, "signs", None), len(e.indices) if binder else 0)
        structure = local + child_keys
        k = self.ids.get(structure)
        if k is None:
            k = self.ids[structure] = len(self.ids)
            self.size[k] = 1 + sum(self.size[c] for c in child_keys)
            self.children[k] = child_keys
            self.example[k] = e
            self.where[k] = env
            self.reach[k] = max(reach, 0)
            self.nameable[k] = reach <= 0 and (
                kind in (Add, Binary, Reduce) or kind is Call and e.func != "recip")
        self.seen[(id(e), env)] = k
        self.alive.append(e)  # ids stay valid while the keys are used
        return k

    def _tensor(self, e, env):
        if not env and e.access is None:
            return ("T", e.name, e.indices, None), 0
        reach = 0

        def index(i):
            nonlocal reach
            for up, bound in enumerate(reversed(env)):
                if i in bound:
                    reach = max(reach, up + 1)
                    return (up, bound.index(i))
            return i
        access = None if e.access is None else tuple(
            index(a) if isinstance(a, str) else ("g", self.key(a, env)) if isinstance(a, Tensor)
            else ("a", tuple((c, index(i)) for c, i in a.terms), a.offset) for a in e.access)
        for a in e.gathers():
            reach = max(reach, self.reach[self.key(a, env)])
        return ("T", e.name, tuple(index(i) for i in e.indices), access), reach

    def rewrite(self, e, by, env=(), top=True):
        """e (keyed already) with each named sub-expression but e itself replaced by its name
        (by: {key: name})."""
        if not top:
            k = self.seen[(id(e), env)]
            if k in by:
                return by[k]
        kids = children(e)
        if not kids:
            return e
        inner = env + (e.indices,) if isinstance(e, (Sigma, Reduce)) else env
        return with_children(e, tuple(self.rewrite(c, by, inner, False) for c in kids))


def _tidy_bound(e):
    """A definition's summed indices without the primes that kept them apart in the
    formula they came from, where no other index takes the plain name (iʹʹ → i)."""
    bound = unique(i for n in nodes(e) if isinstance(n, (Sigma, Reduce)) for i in n.indices)
    if not bound or any(isinstance(n, Tensor) and n.access is not None for n in nodes(e)):
        return e
    others = {i for n in nodes(e) if isinstance(n, Tensor) for i in n.indices} - set(bound)
    names = {}
    for i in bound:
        name = i.rstrip("ʹ")
        while name in others or name in names.values():
            name += "ʹ"
        names[i] = name
    return _renamed(e, names)
