"""Brute-force reference evaluator of the tensormagic language.

Written from the summation rule in the contract (Einstein, each top-level
term read on its own), independently of the engine
(it never imports ``tensormagic``).  Every node of a right-hand side is
evaluated as a torch tensor with one dimension per index of the statement
(size 1 where the node does not depend on the index), and each Σ is applied
at the slot where the rule places it.  Being plain torch, autograd through
:func:`evaluate` is an independent gradient reference.

    outputs = evaluate(text, {"B": B, "C": C})      # {name: tensor}
    statements(text), inputs(text), outputs(text)   # structure only
"""

import ast
import copy
import itertools
import math
import re
from dataclasses import dataclass

import torch

FUNCTIONS = {
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "conj": lambda t: torch.conj(t).resolve_conj(),
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "log1p": torch.log1p,
    "expm1": torch.expm1,
    "softplus": torch.nn.functional.softplus,
    "sgn": torch.sgn,
    "erf": torch.erf,
    "step": lambda t: (t > 0).to(t.dtype),  # relu's derivative, in derived formulas
}

CONSTANTS = {"pi": math.pi, "π": math.pi}  # the language's named numbers

# How the generated tests draw each function's argument (every table of functions in the tests
# is made from FUNCTIONS and this, so a new function enters them all by two lines here):
# "bounded" any argument; "growing" an argument without nested calls; "positive" positive
# arguments only; "kinked" an argument kept away from its kink at 0; "pole" an argument in
# [-1, 1]; "complex" drawn only in complex programs; "flat" (a derivative zero almost everywhere)
# never drawn as a form of its own.
DRAW = {
    "exp": "growing", "log": "positive", "sqrt": "positive", "sin": "bounded", "cos": "bounded",
    "tan": "pole", "tanh": "bounded", "sigmoid": "bounded", "relu": "kinked", "abs": "kinked",
    "conj": "complex", "sinh": "growing", "cosh": "growing", "log1p": "positive",
    "expm1": "growing", "softplus": "growing", "sgn": "flat", "erf": "bounded", "step": "flat",
}
REAL_ONLY = {"relu", "softplus", "erf", "step"}  # torch has no complex version
POSITIVE_RESULT = {"exp", "sigmoid", "cosh", "softplus", "sqrt"}

_ASSIGN = re.compile(r"^(?P<lhs>.*?)(?P<op>:=|\+=|=)(?P<rhs>.*)$", re.S)
_LHS = re.compile(r"^\s*(?P<name>\w+)\s*(?:\[(?P<idx>[^\]]*)\])?\s*$")


@dataclass(frozen=True)
class Statement:
    name: str
    indices: tuple  # left-hand indices ('' for a scalar); a scatter's, those of its index tensors too
    op: str  # ':=', '=' or '+='
    rhs: ast.expr
    text: str
    target: tuple = None  # a scatter on the left (H[tok[b], d]): its subscripts, as ast nodes


def statements(text):
    """The statements of ``text`` (comments and blank lines dropped)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _ASSIGN.match(line)
        if not m:
            raise SyntaxError(f"no assignment in {line!r}")
        lhs = _LHS.match(m["lhs"])
        if not lhs:
            out.append(_scatter_statement(m, line))
            continue
        idx = tuple(s.strip() for s in (lhs["idx"] or "").split(",") if s.strip())
        # Python identifiers are NFKC-normalised by ast; do the same here.
        name = ast.parse(lhs["name"], mode="eval").body.id
        idx = tuple(ast.parse(i, mode="eval").body.id for i in idx)
        if len(set(idx)) != len(idx):
            raise ValueError(f"repeated left index in {line!r}")
        rhs = ast.parse(m["rhs"].strip(), mode="eval").body
        out.append(Statement(name, idx, m["op"], rhs, line))
    if not out:
        raise SyntaxError("empty text")
    return out


def _scatter_statement(m, line):
    """H[tok[b], d] op rhs: the left side's subscripts are indices or integer tensors."""
    try:
        node = ast.parse(m["lhs"].strip(), mode="eval").body
    except SyntaxError:
        raise SyntaxError(f"bad left-hand side in {line!r}") from None
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)):
        raise SyntaxError(f"bad left-hand side in {line!r}")
    elts = tuple(_elts(node))
    idx = []
    for e in elts:
        for n in ([e.id] if isinstance(e, ast.Name) else [x.id for x in _elts(e)]):
            if n not in idx:
                idx.append(n)
    rhs = ast.parse(m["rhs"].strip(), mode="eval").body
    return Statement(node.value.id, tuple(idx), m["op"], rhs, line, elts)


def _left_index_tensors(st):
    return [e.value.id for e in st.target or () if isinstance(e, ast.Subscript)]


def _reads(expr):
    """Names read by an expression, in textual order (not functions, not indices)."""
    found = []

    def walk(node):
        if isinstance(node, ast.Subscript):
            found.append((node.col_offset, node.value.id))
            for inner in ast.walk(node.slice):  # index tensors: W[tok[b], d]
                if isinstance(inner, ast.Subscript):
                    found.append((inner.col_offset, inner.value.id))
            return
        if isinstance(node, ast.Call):
            for a in node.args:
                walk(a)
            return
        if isinstance(node, ast.Name) and node.id not in CONSTANTS:
            found.append((node.col_offset, node.id))
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(expr)
    names = []
    for _, n in sorted(found):
        if n not in names:
            names.append(n)
    return names


def inputs(text):
    """Names read before they are assigned, in order of first appearance."""
    assigned, result = set(), []
    for st in statements(text):
        reads = ([st.name] if st.op != ":=" else []) + _left_index_tensors(st) + _reads(st.rhs)
        for n in reads:
            if n not in assigned and n not in result:
                result.append(n)
        assigned.add(st.name)
    return tuple(result)


def outputs(text):
    """Names assigned, in order of their last assignment (the last statement's target is last)."""
    result = []
    for st in statements(text):
        if st.name in result:
            result.remove(st.name)
        result.append(st.name)
    return tuple(result)


# ----------------------------------------------------------------------------
# Where the sums sit


def _parents(root):
    parent = {}
    for node in ast.walk(root):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    return parent


def _is_sum(node):
    return isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))


def _flat_terms(node):
    """Operands of a (flattened) chain of + and -."""
    if _is_sum(node):
        return _flat_terms(node.left) + _flat_terms(node.right)
    return [node]


def _slots(root):
    slots = {root}
    for node in ast.walk(root):
        if _is_sum(node):
            slots.update(_flat_terms(node))
        elif isinstance(node, ast.Call):
            slots.update(node.args)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            slots.update((node.left, node.right))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            slots.add(node.right)
    return slots


REDUCTIONS = {
    "sum": lambda v, d: v.sum(d, keepdim=True),
    "prod": lambda v, d: _prod_keep(v, d),
    "max": lambda v, d: v.amax(d, keepdim=True),
    "min": lambda v, d: v.amin(d, keepdim=True),
    "logsumexp": lambda v, d: torch.logsumexp(v, d, keepdim=True),
    "mean": lambda v, d: v.mean(d, keepdim=True),
}


def _prod_keep(v, dims):
    for d in dims:
        v = v.prod(d, keepdim=True)
    return v


def _is_reduction(node):
    """op[j,k](body): a Call whose function is subscripted."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)


def _reduced(node):
    sl = node.func.slice
    return tuple(e.id for e in (sl.elts if isinstance(sl, ast.Tuple) else [sl]))


def _reads_of(root, bound=()):
    """[(tensor read node, indices bound around it)], index tensors and reductions' own
    brackets excluded."""
    if isinstance(root, ast.Subscript):
        return [(root, bound)]
    if _is_reduction(root):
        return [r for a in root.args for r in _reads_of(a, bound + _reduced(root))]
    if isinstance(root, ast.Call):
        return [r for a in root.args for r in _reads_of(a, bound)]
    return [r for child in ast.iter_child_nodes(root) for r in _reads_of(child, bound)]


def _elts(node):
    sl = node.slice
    return sl.elts if isinstance(sl, ast.Tuple) else [sl]


def _elt_names(e):
    """Index names in one subscript (with repetition); an index tensor contributes its own."""
    if isinstance(e, ast.Subscript):
        return [n for x in _elts(e) for n in _elt_names(x)]
    if isinstance(e, ast.Name):
        return [e.id]
    return [n for child in ast.iter_child_nodes(e) for n in _elt_names(child)]


def _subscript_indices(node):
    """Every index name a tensor read's subscripts mention, in order, with repetition."""
    return tuple(n for e in _elts(node) for n in _elt_names(e))


def _occurrences(root):
    """[(tensor node, index name)] for every occurrence an implicit sum may take, B[l,l]
    counts twice; indices bound by an explicit reduction around the read are left out."""
    return [(node, i) for node, bound in _reads_of(root) for i in _subscript_indices(node) if i not in bound]


def _all_indices(root):
    """Every index of a right side, bound ones included, in order of appearance."""
    out = []
    for node, _ in sorted(_reads_of(root), key=lambda p: p[0].col_offset):
        for i in _subscript_indices(node):
            if i not in out:
                out.append(i)
    return out


def _ancestors(node, parent):
    chain = [node]
    while chain[-1] in parent:
        chain.append(parent[chain[-1]])
    return chain


def _is_product(node):
    """Products are what Einstein sums multiply through: *, the / numerator side, a trace."""
    return isinstance(node, ast.Subscript) or (
        isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div))
    )


def place_sums(rhs, lhs_indices):
    """{slot node: [indices summed there]} following the contract's rule, term by term.

    Each top-level term (an operand of the flattened + / - chain of the right side) is
    read on its own.  An index whose occurrences *in that term* meet in a product (or
    one tensor: a trace) is summed at the nearest slot at or above their lowest common
    ancestor.  Any other index of the term (one occurrence, or occurrences meeting in a
    sum or across **) is free where it stands and is summed over that whole term.
    """
    parent = _parents(rhs)
    slots = _slots(rhs)
    top_terms = _flat_terms(rhs) if _is_sum(rhs) else [rhs]
    placed = {}
    for term in top_terms:
        by_index = {}
        for node, i in _occurrences(term):
            if i not in lhs_indices:
                by_index.setdefault(i, []).append(node)
        for i, nodes in by_index.items():
            chains = [_ancestors(n, parent) for n in nodes]
            common = set(chains[0]).intersection(*map(set, chains[1:]))
            lca = next(n for n in chains[0] if n in common)
            if len(nodes) >= 2 and _is_product(lca):
                where = next(n for n in _ancestors(lca, parent) if n in slots)
            else:
                where = term
            placed.setdefault(where, []).append(i)
    return placed


# ----------------------------------------------------------------------------
# Evaluation


class _Ctx:
    def __init__(self, env, index_order, sizes, placed, pad=None):
        self.env, self.order, self.sizes, self.placed = env, index_order, sizes, placed
        self.pos = {i: d for d, i in enumerate(index_order)}
        self.pad = pad or {}


def _letters(names):
    return {n: chr(ord("a") + k) for k, n in enumerate(names)}


def _grid(e, ctx, size):
    """The integer positions one subscript reads, as a tensor over the statement's indices."""
    if isinstance(e, ast.Name):
        shape = [1] * len(ctx.order)
        shape[ctx.pos[e.id]] = ctx.sizes[e.id]
        return torch.arange(ctx.sizes[e.id]).reshape(shape)
    if isinstance(e, ast.Constant) and type(e.value) is int:
        return torch.tensor(e.value % size if e.value < 0 else e.value)
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        return torch.tensor(size - e.operand.value)
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        return _grid(e.left, ctx, size) + _grid(e.right, ctx, size)
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Sub):  # a padded read: i+a-1
        return _grid(e.left, ctx, size) - _grid(e.right, ctx, size)
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult):
        return _grid(e.left, ctx, size) * _grid(e.right, ctx, size)
    if isinstance(e, ast.Subscript):  # an integer index tensor, read at plain indices
        return _tensor(e, ctx).long()
    raise SyntaxError(f"unsupported subscript {ast.unparse(e)!r}")


def _tensor(node, ctx):
    """t[subscripts] over the statement's index space (size 1 where it does not depend).
    δ, unless the values name a tensor so, is Kronecker's: 1 where its two subscripts read the
    same position (derived formulas use it; a shifted subscript may reach outside any range)."""
    if node.value.id == "δ" and "δ" not in ctx.env:
        first, second = (_grid(e, ctx, None) for e in _elts(node))
        return (first == second).to(torch.float64)
    t = torch.as_tensor(ctx.env[node.value.id])
    elts = _elts(node)
    if t.dim() != len(elts):
        raise ValueError(f"{node.value.id} has {t.dim()} dims, indexed with {len(elts)}")
    grids = [_grid(e, ctx, n) for e, n in zip(elts, t.shape)]
    p = ctx.pad.get(node.value.id, 0)
    if p:  # padded: zeros p places on either side of each dim read at a shifted subscript
        shifted = [isinstance(e, ast.BinOp) for e in elts]
        t = torch.nn.functional.pad(t, [q for s in reversed(shifted) for q in ((p, p) if s else (0, 0))])
        grids = [g + p if s else g for g, s in zip(grids, shifted)]
    if not grids:
        return t
    shape = torch.broadcast_shapes(*[g.shape for g in grids], (1,) * len(ctx.order))
    return t[tuple(g.expand(shape) for g in grids)]


def _eval(node, ctx):
    value = _eval_node(node, ctx)
    summed = ctx.placed.get(node, [])
    if summed:
        if not isinstance(value, torch.Tensor):
            raise AssertionError("sum over a constant")
        full = [ctx.sizes[i] if i in summed else s for i, s in zip(ctx.order, value.shape)]
        value = value.expand(full).sum(dim=[ctx.pos[i] for i in summed], keepdim=True)
    return value


def _eval_node(node, ctx):
    if isinstance(node, ast.Subscript):
        return _tensor(node, ctx)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)):
        return node.value
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id] if node.id in CONSTANTS else ctx.env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, ctx)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _eval(node.operand, ctx)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, ctx), _eval(node.right, ctx)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        if op is ast.Div:
            return a / b
        if op is ast.Pow:
            if isinstance(b, torch.Tensor) and not isinstance(a, torch.Tensor):
                return torch.pow(_as_tensor(a, b), b)
            return a**b
    if _is_reduction(node):
        value = _as_tensor(_eval(node.args[0], ctx))
        dims = [ctx.pos[i] for i in _reduced(node)]
        full = [ctx.sizes[i] if d in dims else n for d, (i, n) in enumerate(zip(ctx.order, value.shape))]
        return REDUCTIONS[node.func.value.id](value.expand(full), dims)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min") \
            and len(node.args) == 2:
        a, b = (_eval(x, ctx) for x in node.args)
        like = a if isinstance(a, torch.Tensor) else b
        pick = torch.maximum if node.func.id == "max" else torch.minimum
        return pick(_as_tensor(a, like), _as_tensor(b, like))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        if node.func.id not in FUNCTIONS:
            raise ValueError(f"unknown function {node.func.id}")
        arg = _eval(node.args[0], ctx)
        return FUNCTIONS[node.func.id](_as_tensor(arg))
    raise SyntaxError(f"unsupported expression {ast.unparse(node)!r}")


def _as_tensor(x, like=None):
    """A Python number as a tensor: like `like`'s dtype, else float64/complex128 (Python's own precision)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(like, torch.Tensor):
        dtype = like.dtype
    else:
        dtype = torch.float64
    if isinstance(x, complex) and not dtype.is_complex:
        dtype = torch.complex128
    return torch.tensor(x, dtype=dtype)


def _linear(e):
    """A shifted subscript as ({index: coefficient}, constant)."""
    if isinstance(e, ast.Name):
        return {e.id: 1}, 0
    if isinstance(e, ast.Constant):
        return {}, e.value
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult):
        (ca, oa), (cb, ob) = _linear(e.left), _linear(e.right)
        return ({i: c * ob for i, c in ca.items()} if ca else {i: c * oa for i, c in cb.items()}), oa * ob
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        (ca, oa), (cb, ob) = _linear(e.left), _linear(e.right)
        return {i: ca.get(i, 0) + cb.get(i, 0) for i in {**ca, **cb}}, oa + ob
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Sub) and isinstance(e.right, ast.Constant):
        c, o = _linear(e.left)
        return c, o - e.right.value
    raise SyntaxError(f"not a shifted subscript: {ast.unparse(e)!r}")


def index_sizes(st, env, given=None, known=None, pad=None):
    """{index: size} from the shapes in ``env`` and ``given`` (sizes=); ValueError when they
    disagree.  Plain subscripts fix an index (all must agree, except an index that stands alone
    in some shifted subscript: the smallest is kept); shifted ones give every index they leave
    unknown its largest in-bounds range; an index alone in a shifted subscript is cut to fit."""
    plain, shifted, deltas = [], [], []
    reads = [(st.name, [ast.Name(i) for i in st.indices])] if st.op != ":=" and st.target is None else []
    reads += [(e.value.id, _elts(e)) for e in st.target or () if isinstance(e, ast.Subscript)]
    for node, _ in _reads_of(st.rhs):
        reads.append((node.value.id, _elts(node)))
        reads += [(e.value.id, _elts(e)) for e in _elts(node) if isinstance(e, ast.Subscript)]
    for name, elts in reads:
        if name == "δ" and "δ" not in env:  # Kronecker's: square, its plain indices alike
            if all(isinstance(e, ast.Name) for e in elts):
                deltas.append(tuple(e.id for e in elts))
            continue
        shape = tuple(torch.as_tensor(env[name]).shape)
        if len(shape) != len(elts):
            raise ValueError(f"{name} has {len(shape)} dims, indexed with {len(elts)}")
        for e, n in zip(elts, shape):
            if isinstance(e, ast.Name):
                plain.append((e.id, n, name))
            elif isinstance(e, ast.BinOp):  # (a padded tensor: n + 2p places, from -p)
                coef, off = _linear(e)
                p = (pad or {}).get(name, 0)
                shifted.append((coef, off + p, n + 2 * p))
    alone = {next(iter(c)) for c, _, _ in shifted if len(c) == 1}
    sizes = dict(known or {})
    for i, n, name in plain:
        if i in alone:
            sizes[i] = min(sizes.get(i, n), n)
        elif sizes.setdefault(i, n) != n:
            raise ValueError(f"index {i}: sizes {sizes[i]} and {n} (tensor {name})")
    for _ in deltas:
        for a, b in deltas:
            if (a in sizes) != (b in sizes):
                sizes.setdefault(a, sizes.get(b))
                sizes.setdefault(b, sizes.get(a))
    for i, n in (given or {}).items():
        if i not in sizes and any(i in c for c, _, _ in shifted):
            sizes.setdefault(i, n)

    progress = True
    while progress:
        progress = False
        found = {}
        for coef, off, n in shifted:
            unknown = [i for i in coef if i not in sizes]
            if len(unknown) == 1:
                i = unknown[0]
                room = n - 1 - off - sum(c * (sizes[j] - 1) for j, c in coef.items() if j != i)
                found[i] = min(found.get(i, n), room // coef[i] + 1)
        if found:
            sizes.update(found)
            progress = True
    for coef, off, n in shifted:
        if len(coef) == 1:
            (i, c), = coef.items()
            sizes[i] = min(sizes[i], (n - 1 - off) // c + 1)
    for coef, off, n in shifted:
        missing = [i for i in coef if i not in sizes]
        if missing:
            raise ValueError(f"index {missing[0]} has no size")
        if off + sum(c * (sizes[i] - 1) for i, c in coef.items()) >= n or min(sizes[i] for i in coef) < 1:
            raise ValueError(f"shifted subscript out of bounds ({coef}, {off}, size {n})")
    return sizes


def _one_name_per_binding(st, given):
    """The contract: a reduction binds the indices it lists inside its argument, and each
    binding has its own range. A name a later reduction binds again is renamed throughout that
    reduction (n -> n_b0, ...), and sizes= is given by the names as written."""
    rhs = copy.deepcopy(st.rhs)
    bound, fresh, given = set(), itertools.count(), dict(given or {})

    def rename(node, mapping):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript):  # only subscripts hold indices; not the tensor
                for name in ast.walk(sub.slice):
                    if isinstance(name, ast.Name) and name.id in mapping and \
                            not any(name is s.value for s in ast.walk(sub.slice) if isinstance(s, ast.Subscript)):
                        name.id = mapping[name.id]

    def visit(node):
        if _is_reduction(node):
            mapping = {}
            for n in _reduced(node):
                if n in bound:
                    mapping[n] = f"{n}_b{next(fresh)}"
                    if n in given:
                        given[mapping[n]] = given[n]
                bound.add(mapping.get(n, n))
            if mapping:
                rename(node, mapping)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(rhs)
    return Statement(st.name, st.indices, st.op, rhs, st.text, st.target), given


def evaluate_statement(st, env, given=None, shape=None, pad=None):
    """Value of one statement's right-hand side, shaped like its left-hand side. shape: the
    left side's shape, for a derived formula constant along a left index it does not read."""
    st, given = _one_name_per_binding(st, given)
    rhs_indices = _all_indices(st.rhs)
    scattered = {x.id for e in st.target or () if isinstance(e, ast.Subscript) for x in _elts(e)}
    missing = [i for i in st.indices if i not in rhs_indices and i not in scattered]
    if missing and shape is None:
        raise ValueError(f"left index {missing[0]} not on the right")
    order = list(st.indices) + [i for i in rhs_indices if i not in st.indices]
    known = dict(zip(st.indices, shape or ())) if st.target is None else {}
    sizes = index_sizes(st, env, given, known, pad)
    ctx = _Ctx(env, order, sizes, place_sums(st.rhs, st.indices), pad)
    value = _as_tensor(_eval(st.rhs, ctx), _any_tensor(env))
    if value.dim() == 0:
        value = value.reshape([1] * len(order))
    extra = list(range(len(st.indices), len(order)))
    assert all(value.shape[d] == 1 for d in extra), "an index was left unsummed"
    if extra:
        value = value.sum(dim=extra)
    value = value.expand([sizes[i] for i in st.indices])
    return _scatter(st, value, env, sizes, given, shape) if st.target is not None else value


def _scatter(st, value, env, sizes, given, shape=None):
    """A scatter on the left: value (over the left indices) added at the positions the
    subscripts give, repeated ones accumulating, into zeros (:=) or the old value (+=)."""
    ctx = _Ctx(env, list(st.indices), sizes, {})
    grids, dims = [], []
    for d, e in enumerate(st.target):
        grids.append(_grid(e, ctx, None) if isinstance(e, ast.Name) else _tensor(e, ctx).long())
        if isinstance(e, ast.Name):
            dims.append(sizes[e.id])
        elif st.op == "+=":
            dims.append(env[st.name].shape[d])
        else:
            dims.append(shape[d] if shape else given[e.value.id])
    out = env[st.name].clone() if st.op == "+=" else torch.zeros(dims, dtype=value.dtype)
    full = value.shape
    return out.index_put((*(g.expand(full) for g in grids),), value, accumulate=True)


def _any_tensor(env):
    return next((v for v in env.values() if isinstance(v, torch.Tensor)), None)


def evaluate(text, values, sizes=None, shapes=None, pad=None):
    """Run every statement of ``text``; return {output name: final value}.
    sizes: {index: size} for indices no shape fixes (the API's sizes=); shapes: {output:
    shape} for derived formulas constant along a left index; pad: {tensor: p}, read as zero
    p places outside its bounds at its shifted subscripts (the API's pad=)."""
    env = {k: (torch.as_tensor(v) if not isinstance(v, (int, float, complex)) else v) for k, v in values.items()}
    outs = {}
    for st in statements(text):
        value = evaluate_statement(st, env, sizes, (shapes or {}).get(st.name), pad)
        if st.op != ":=" and st.target is None:
            old = env[st.name]
            if tuple(old.shape) != tuple(value.shape):
                raise ValueError(f"{st.name}: shape {tuple(old.shape)} != {tuple(value.shape)}")
            if st.op == "+=":
                value = old + value
        env[st.name] = value
        outs[st.name] = value
    return outs
