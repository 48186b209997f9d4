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
}

_ASSIGN = re.compile(r"^(?P<lhs>.*?)(?P<op>:=|\+=|=)(?P<rhs>.*)$", re.S)
_LHS = re.compile(r"^\s*(?P<name>\w+)\s*(?:\[(?P<idx>[^\]]*)\])?\s*$")


@dataclass(frozen=True)
class Statement:
    name: str
    indices: tuple  # left-hand indices ('' for a scalar)
    op: str  # ':=', '=' or '+='
    rhs: ast.expr
    text: str


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
            raise SyntaxError(f"bad left-hand side in {line!r}")
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


def _reads(expr):
    """Names read by an expression, in textual order (not functions, not indices)."""
    found = []

    def walk(node):
        if isinstance(node, ast.Subscript):
            found.append((node.col_offset, node.value.id))
            return
        if isinstance(node, ast.Call):
            for a in node.args:
                walk(a)
            return
        if isinstance(node, ast.Name):
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
        reads = ([st.name] if st.op != ":=" else []) + _reads(st.rhs)
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


def _occurrences(root):
    """[(tensor node, index name)] for every index occurrence, B[l,l] counts twice."""
    occ = []
    for node in ast.walk(root):
        if isinstance(node, ast.Subscript):
            occ.extend((node, i) for i in _subscript_indices(node))
    return occ


def _subscript_indices(node):
    sl = node.slice
    elts = sl.elts if isinstance(sl, ast.Tuple) else [sl]
    for e in elts:
        if not isinstance(e, ast.Name):
            raise SyntaxError(f"index must be a name: {ast.unparse(e)!r}")
    return tuple(e.id for e in elts)


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
    def __init__(self, env, index_order, sizes, placed):
        self.env, self.order, self.sizes, self.placed = env, index_order, sizes, placed
        self.pos = {i: d for d, i in enumerate(index_order)}


def _letters(names):
    return {n: chr(ord("a") + k) for k, n in enumerate(names)}


def _tensor(node, ctx):
    name = node.value.id
    t = ctx.env[name]
    idx = _subscript_indices(node)
    if t.dim() != len(idx):
        raise ValueError(f"{name} has {t.dim()} dims, indexed with {len(idx)}")
    uniq = [i for i in ctx.order if i in idx]
    let = _letters(uniq)
    t = torch.einsum("".join(let[i] for i in idx) + "->" + "".join(let[i] for i in uniq), t)
    shape = [ctx.sizes[i] if i in idx else 1 for i in ctx.order]
    return t.reshape(shape)


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
        return ctx.env[node.id]
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


def index_sizes(st, env):
    """{index: size} from the shapes in ``env``; ValueError when they disagree."""
    sizes = {}
    pairs = [(st.name, st.indices)] if st.op != ":=" else []
    pairs += [(n.value.id, _subscript_indices(n)) for n in ast.walk(st.rhs) if isinstance(n, ast.Subscript)]
    for name, idx in pairs:
        shape = tuple(torch.as_tensor(env[name]).shape)
        if len(shape) != len(idx):
            raise ValueError(f"{name} has {len(shape)} dims, indexed with {len(idx)}")
        for i, n in zip(idx, shape):
            if sizes.setdefault(i, n) != n:
                raise ValueError(f"index {i}: sizes {sizes[i]} and {n} (tensor {name})")
    return sizes


def evaluate_statement(st, env):
    """Value of one statement's right-hand side, shaped like its left-hand side."""
    rhs_indices = []
    for node, i in sorted(_occurrences(st.rhs), key=lambda p: (p[0].lineno, p[0].col_offset)):
        if i not in rhs_indices:
            rhs_indices.append(i)
    missing = [i for i in st.indices if i not in rhs_indices]
    if missing:
        raise ValueError(f"left index {missing[0]} not on the right")
    order = list(st.indices) + [i for i in rhs_indices if i not in st.indices]
    sizes = index_sizes(st, env)
    ctx = _Ctx(env, order, sizes, place_sums(st.rhs, st.indices))
    value = _as_tensor(_eval(st.rhs, ctx), _any_tensor(env))
    if value.dim() == 0:
        value = value.reshape([1] * len(order))
    extra = list(range(len(st.indices), len(order)))
    assert all(value.shape[d] == 1 for d in extra), "an index was left unsummed"
    if extra:
        value = value.sum(dim=extra)
    return value.expand([sizes[i] for i in st.indices])


def _any_tensor(env):
    return next((v for v in env.values() if isinstance(v, torch.Tensor)), None)


def evaluate(text, values):
    """Run every statement of ``text``; return {output name: final value}."""
    env = {k: (torch.as_tensor(v) if not isinstance(v, (int, float, complex)) else v) for k, v in values.items()}
    outs = {}
    for st in statements(text):
        value = evaluate_statement(st, env)
        if st.op != ":=":
            old = env[st.name]
            if tuple(old.shape) != tuple(value.shape):
                raise ValueError(f"{st.name}: shape {tuple(old.shape)} != {tuple(value.shape)}")
            if st.op == "+=":
                value = old + value
        env[st.name] = value
        outs[st.name] = value
    return outs
