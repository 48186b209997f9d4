"""A long cell's formulas with their repeated parts named once, for every view.

A deep network's gradient repeats the whole nested forward expression in each factor, and the
gradient of every input repeats the chain through the layers: its text grows with the square
of the depth.  Here each sub-expression the display would show twice or more is named once,
the largest first (so the definitions nest: B[j] = sigmoid(tanh(A[j]) * w[j] + b[j])), as is
the longest run of factors that products share.  Text (render.where_text), LaTeX and MathML
show the same definitions below the formulas; nothing changes a value."""
import functools
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import chain, count

from ..language.ir import (Add, Binary, Call, Const, Mul, Reduce, Scalar, Sigma, Tensor, children,
                           free, unique, with_children)
from .readable import _renamed, nodes

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
    used = set(taken) | {f.target.name for f in formulas} | _names(keys)
    fresh = (n + s for s in chain([""], map(str, count(2))) for n in _SHARED_NAMES)
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
        best = _longest_run(seqs, common)
        if best is None:
            break
        a, start, size = best
        node = Mul(tuple(slots[a][start:start + size]))
        _put(node, tuple(seqs[a][start:start + size]), slots, seqs)
        runs.append((node, list(node.factors)))
        slots.append(runs[-1][1])
    built = {}
    for node, factors in reversed(runs):  # the inner runs first
        built[id(node)] = Mul(tuple(built.get(id(f), f) for f in factors))
        keys.nameable[keys.key(built[id(node)], ())] = True
    return _rebuilt(rhss, iter(slots), built)


def _longest_run(seqs, common):
    """(which sequence, where, how long) of the longest run two sequences share, if long."""
    best = None
    frozen = [tuple(seq) for seq in seqs]
    for a in range(len(seqs)):
        for b in range(a + 1, len(seqs)):
            start, size = common(frozen[a], frozen[b])
            if size >= _MIN_RUN and (best is None or size > best[2]):
                best = (a, start, size)
    return best


def _put(node, run, slots, seqs):
    """node in place of each occurrence of run, left to right."""
    for k, seq in enumerate(seqs):
        at = _find(seq, run)
        while at is not None:
            slots[k][at:at + len(run)] = [node]
            seq[at:at + len(run)] = [None]
            at = _find(seq, run)


def _rebuilt(rhss, slots, built):
    """Each formula with its products' factors taken from slots, in order."""
    out = []
    for r in rhss:
        terms = list(r.terms) if isinstance(r, Add) else [r]
        for t, term in enumerate(terms):
            if isinstance(term, Mul):
                factors = tuple(built.get(id(f), f) for f in next(slots))
                terms[t] = Mul(factors) if len(factors) > 1 else factors[0]
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


def _names(keys):
    """Every tensor, scalar and index name the formulas use (Δx as x too)."""
    leaves = [keys.example[k] for k, kids in keys.children.items()
              if not kids and isinstance(keys.example[k], (Tensor, Scalar))]
    return {n.name.lstrip("Δ") for n in leaves} | {n.name for n in leaves} | \
        {i for n in leaves if isinstance(n, Tensor) for i in n.indices}


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
