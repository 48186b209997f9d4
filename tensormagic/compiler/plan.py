"""Cell + input shapes → a program of tensor operations (the plan).

Every product is split into pairwise contractions in the order opt_einsum
finds cheapest for these shapes (up to TIE_OPERANDS operands, among the paths
of equal FLOPs the one whose layouts copy least; from search.OPERANDS operands,
cotengra's path when it is installed); traces, diagonals and indices
private to one operand are taken first. Under a memory budget (or to spread over ranks) a
product too large is one "sliced" op instead, whose inner program is one slice's pairwise
contractions (slicing.py chooses the slices). The program is data: codegen turns it into
source, `describe` turns it into a readable table.
"""
import math
from dataclasses import dataclass
from typing import Optional

import opt_einsum

from ..language.errors import NotationValueError
from ..language.functions import FUNCTIONS
from ..language.ir import (Add, Binary, Call, Const, Mul, Pow, Reduce, Scalar, Sigma, Tensor, free,
                           unique)
from ..language.ranges import index_sizes
from . import convs, layout, search, slicing
from .layout import natural_labels
from .program import Op, Program, Ref, Var


def build(cell, shapes, wants, sizes=None, complex=False, complex_inputs=None, budget=None,
          ranks=1):
    """shapes: one shape tuple per cell input; wants: input names whose gradient is needed;
    sizes: {index: size} for indices no shape fixes; complex: the program computes in a
    complex dtype; complex_inputs: per input, is it complex (default: all are when the program
    is). Real values (real inputs, abs(z)) stay real, as in torch, and are cast where they meet
    complex ones. budget: a slicing.Budget, the memory one product's slice may hold (None: no
    limit); ranks: cut every product into at least this many slices, spread over the ranks of
    torch.distributed (1: none)."""
    if complex_inputs is None:
        complex_inputs = (complex,) * len(shapes)
    program = _Builder(cell, wants, sizes or {}, complex, budget, ranks).run(shapes, complex_inputs)
    if budget is not None:
        slicing.check_values(program, budget, cell.statements)
    return program


# Functions whose value is real for any argument; the others are real for a real argument.
_REAL_VALUED = ("abs",)


class _Builder:
    def __init__(self, cell, wants, given, complex=False, budget=None, ranks=1):
        self.cell, self.wants, self.given, self.complex = cell, set(wants), given, complex
        self.budget, self.ranks = budget, ranks
        self.vars, self.ops, self.env, self.products = [], [], {}, []
        self.casts = {}  # real var id -> its complex copy

    def run(self, shapes, complex_inputs):
        inputs = []
        for name, shape, cx in zip(self.cell.inputs, shapes, complex_inputs):
            v = self.new((), tuple(shape), name in self.wants, name, real=not cx)
            self.ops.append(Op("input", v.id, (name,)))
            self.env[name] = v.id
            inputs.append(v.id)
        starts = []
        for st in self.cell.statements:
            starts.append(len(self.ops))
            self.statement(st)
        outputs = tuple(self.env[name] for name in self.cell.outputs)
        return Program(self.vars, self.ops, tuple(inputs), outputs, complex=self.complex,
                       products=tuple(self.products), starts=tuple(starts))

    def new(self, labels, shape, needs=False, name=None, real=True):
        v = Var(len(self.vars), tuple(labels), tuple(shape), needs, name, real)
        self.vars.append(v)
        return v

    def emit(self, kind, labels, args, **info):
        real = self.is_real(kind, args, info)
        if not real and kind != "gather":  # real operands of a complex op are cast (their
            args = tuple(self.cast(a) for a in args)  # gradient: its real part); not indices
        needs = any(self.vars[a.var].needs for a in args if isinstance(a, Ref))
        v = self.new(labels, tuple(self.sizes[i] for i in labels), needs, real=real)
        self.ops.append(Op(kind, v.id, tuple(args), info))
        return Ref(v.id, v.labels)

    def is_real(self, kind, args, info):
        if kind == "map" and info["func"] in _REAL_VALUED:
            return True
        if kind == "gather":  # the values gathered, not the integer indices
            args = args[:1]
        numbers = [a.value for a in args if isinstance(a, Const)]
        numbers += [info[k] for k in ("value", "p") if k in info]
        return not any(isinstance(n, complex) for n in numbers) and \
            all(self.vars[a.var].real for a in args if isinstance(a, Ref))

    def cast(self, ref):
        """A real var read as complex: one copy per var, read with the same labels."""
        if not isinstance(ref, Ref) or not self.vars[ref.var].real:
            return ref
        if ref.var not in self.casts:
            var = self.vars[ref.var]
            v = self.new(var.labels, var.shape, var.needs, real=False)
            self.ops.append(Op("cast", v.id, (Ref(var.id, var.labels),)))
            self.casts[ref.var] = v.id
        return Ref(self.casts[ref.var], ref.labels)

    # -- one statement -------------------------------------------------------------
    def statement(self, st):
        self.st = st
        self.sizes = index_sizes(st, self.env, self.vars, self.given)
        self.prefer = st.indices  # the order the statement's result is wanted in
        rhs = self.expr(st.rhs)
        args = [rhs]
        if st.op != ":=":
            old = self.vars[self.env[st.target]].shape
            new = tuple(self.sizes[i] for i in st.indices)
            if old != new:
                raise NotationValueError(f"'{st.target}' has shape {old} but the right side gives {new}",
                                         st.text, st.lineno, *(st.target_span or (None, None)))
            args.append(Ref(self.env[st.target], st.indices))
        real = self.is_real("emit", args if st.op == "+=" else [rhs], {})
        if not real:
            rhs = args[0] = self.cast(rhs)
            if st.op == "+=":
                args[1] = self.cast(args[1])
        needs = any(self.vars[a.var].needs for a in args if isinstance(a, Ref) and (st.op == "+=" or a is rhs))
        v = self.new(st.indices, tuple(self.sizes[i] for i in st.indices), needs, st.target, real)
        self.ops.append(Op("emit", v.id, tuple(args), {"op": st.op}))
        self.env[st.target] = v.id

    def expr(self, e):
        """A Ref whose labels are free(e), or a Const."""
        if isinstance(e, Const):
            return e
        if isinstance(e, Scalar):
            return Ref(self.env[e.name], ())
        if isinstance(e, Tensor):
            return self.reshape(self.read(e), unique(e.indices))
        if isinstance(e, Mul):
            return self.contract(e.factors, free(e))
        if isinstance(e, Sigma):
            if isinstance(e.body, Mul):
                return self.contract(e.body.factors, free(e))
            if isinstance(e.body, Tensor):
                return self.reshape(self.read(e.body), free(e))
            return self.reshape(self.expr(e.body), free(e))
        if isinstance(e, Reduce):
            return self.reduction(e)
        if isinstance(e, Binary):
            a, b = self.expr(e.left), self.expr(e.right)
            if isinstance(a, Const) and isinstance(b, Const):
                return Const((max if e.func == "max" else min)(a.value, b.value))
            return self.emit("binary", free(e), (a, b), func=e.func)
        if isinstance(e, Add):
            terms = tuple(self.expr(t) for t in e.terms)
            return self.emit("add", free(e), terms, signs=e.signs)
        if isinstance(e, Call):
            arg = self.expr(e.arg)
            if isinstance(arg, Const):
                arg = self.emit("literal", (), (), value=arg.value)
            if not FUNCTIONS[e.func].complex and not self.vars[arg.var].real:
                raise NotationValueError(f"{e.func}() does not take complex values (torch has no "
                                         f"complex {e.func})", self.st.text, self.st.lineno,
                                         *(e.span or (None, None)))
            return self.emit("map", arg.labels, (arg,), func=e.func)
        if isinstance(e, Pow):
            base, exponent = self.expr(e.base), self.expr(e.exponent)
            if isinstance(exponent, Const) and isinstance(base, Ref):
                return self.emit("map", base.labels, (base,), func="pow", p=exponent.value)
            return self.emit("pow", free(e), (base, exponent))
        raise TypeError(e)

    def reduction(self, e):
        if e.op in ("sum", "mean"):
            total = self.expr(Sigma(e.indices, e.body))
            if e.op == "sum":
                return total
            count = math.prod(self.sizes[i] for i in e.indices)
            if isinstance(total, Const):
                return Const(total.value / count)
            return self.emit("scale", total.labels, (total, Const(1 / count)))
        ref = self.expr(e.body)
        keep = tuple(i for i in ref.labels if i not in e.indices)
        return self.emit("reduce", keep, (ref,), op=e.op, over=tuple(e.indices))

    # -- reading a tensor ------------------------------------------------------------
    def read(self, e):
        """A tensor's values at its subscripts: the var itself (labels may repeat: a diagonal),
        a strided view (shifted, fixed or narrowed subscripts), or a gather."""
        var = self.vars[self.env[e.name]]
        access = e.access if e.access is not None else e.indices
        if e.access is None and all(var.shape[d] == self.sizes[i] for d, i in enumerate(e.indices)):
            return Ref(var.id, e.indices)
        labels = unique(e.indices)
        if e.gathers():
            return self.gather(e, var, access, labels)
        coefs = tuple(tuple(_coef(a, label) for a in access) for label in labels)
        offsets = tuple(_offset(a, n) for a, n in zip(access, var.shape))
        return self.emit("view", labels, (Ref(var.id, ()),), coefs=coefs, offsets=offsets)

    def gather(self, e, var, access, labels):
        """Advanced indexing: one integer index per dimension, broadcast over `labels`."""
        args, dims = [Ref(var.id, ())], []
        for d, a in enumerate(access):
            if isinstance(a, Tensor):
                dims.append(("gather", len(args), a.name))
                args.append(Ref(self.env[a.name], a.indices))
            elif isinstance(a, str):
                dims.append(("affine", ((1, a),), 0))
            else:
                dims.append(("affine", a.terms, _offset(a, var.shape[d])))
        return self.emit("gather", labels, tuple(args), dims=tuple(dims), of=e.name)

    def reshape(self, ref, labels):
        """Diagonals, sums and transposes of one operand (nothing to do: the ref itself)."""
        if ref.labels == tuple(labels):
            return ref
        return self.emit("einsum1", tuple(labels), (ref,))

    # -- products --------------------------------------------------------------------
    def contract(self, factors, out):
        if set(out) == set(self.prefer):
            out = tuple(self.prefer)
        out = tuple(out)
        conv = self.convolution(factors, out)
        if conv is not None:
            return conv
        operands, scalars = [], []
        for f in factors:
            if isinstance(f, Tensor):
                operands.append(self.read(f))
                continue
            r = self.expr(f)
            (operands if isinstance(r, Ref) and r.labels else scalars).append(r)
        operands = self.pretrace(operands, out)
        scalars += [r for r in operands if not r.labels]  # full traces are scalar factors
        operands = [r for r in operands if r.labels]
        if not operands:
            result = self.emit("scale", (), (None, *scalars)) if scalars else Const(1)
            return result
        result = self.pairwise(operands, out)
        if scalars:
            result = self.emit("scale", result.labels, (result, *scalars))
        return result

    def convolution(self, factors, out):
        """x[b,c,i+a] * w[o,c,a] (times numbers) as torch's convolution, or None."""
        tensors = [f for f in factors if isinstance(f, Tensor)]
        rest = [f for f in factors if not isinstance(f, Tensor)]
        if len(tensors) != 2 or any(not isinstance(f, (Const, Scalar)) for f in rest):
            return None
        for x, w in (tensors, tensors[::-1]):
            xv, wv = self.vars[self.env[x.name]], self.vars[self.env[w.name]]
            found = convs.match(x, xv.shape, w, wv.shape, out, self.sizes)
            if found is not None:
                result = self.emit("conv", out, (Ref(xv.id, ()), Ref(wv.id, w.indices)), conv=found)
                scalars = [self.expr(f) for f in rest]
                return self.emit("scale", out, (result, *scalars)) if scalars else result
        return None

    def pretrace(self, operands, out):
        """Take each operand's diagonals, and sum the indices no one else needs, first."""
        taken = []
        for k, ref in enumerate(operands):
            others = set(out).union(*(r.labels for j, r in enumerate(operands) if j != k))
            keep = tuple(i for i in unique(ref.labels) if i in others)
            taken.append(self.reshape(ref, keep))
        return taken

    def pairwise(self, operands, out, path=None):
        """The product as pairwise contractions (along `path` when given, else the best one
        found), or as one sliced op when it exceeds the memory budget or must be spread."""
        if len(operands) == 1:
            return self.reshape(operands[0], out)
        fixed = path is not None
        if not fixed:
            path = self.path(operands, out)
            cut = self.sliced(operands, out, path)
            if cut is not None:
                return cut
        self.products.append((tuple(operands), out, dict(self.sizes)))
        tree = _tree(operands, path, out)
        # orders kept per node: a wide search for small trees, a narrow one for many operands
        states = 8 if len(operands) <= 8 else 3
        memo = {}
        moved = _orient(tree, tuple(out), self.sizes, self.needs, states, memo)
        if len(operands) <= TIE_OPERANDS and not fixed:
            # another path as cheap in FLOPs may need fewer copies: the layout cost decides,
            # then the elements its intermediates hold
            best = (moved, _held(tree, self.sizes))
            flops = _flops(tree, self.sizes)
            for other in _other_trees(operands, out, tree):
                if _flops(other, self.sizes) <= flops:
                    cost = (_orient(other, tuple(out), self.sizes, self.needs, states, memo),
                            _held(other, self.sizes))
                    if cost < best:
                        tree, best = other, cost
        return self.emit_tree(tree)

    def needs(self, node):
        """Does a gradient flow into this operand or subtree?"""
        if isinstance(node, Ref):
            return self.vars[node.var].needs
        return self.needs(node.a) or self.needs(node.b)

    def emit_tree(self, node):
        if isinstance(node, Ref):
            return node
        a, b = self.emit_tree(node.a), self.emit_tree(node.b)
        labels = node.order or natural_labels(a.labels, b.labels, node.keep)
        return self.emit("pair", labels, (a, b), recipe=node.recipe)

    def path(self, operands, out, sizes=None):
        sizes = self.sizes if sizes is None else sizes
        letters = _letters(unique([i for r in operands for i in r.labels] + list(out)))
        eq = ",".join("".join(letters[i] for i in r.labels) for r in operands)
        eq += "->" + "".join(letters[i] for i in out)
        found = search.path([[letters[i] for i in r.labels] for r in operands],
                            [letters[i] for i in out], {letters[i]: sizes[i] for i in letters})
        if found is not None:
            return found
        shapes = [tuple(sizes[i] for i in r.labels) for r in operands]
        strategy = "optimal" if len(operands) <= 4 else "auto-hq"
        path, _ = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=strategy)
        return path

    # -- sliced products -------------------------------------------------------------
    def sliced(self, operands, out, path):
        """One "sliced" op looping over chunks of some indices (compiler/slicing.py), or None
        when the product fits the budget whole (and need not be spread)."""
        if self.budget is None and self.ranks < 2:
            return None
        sizes = {i: self.sizes[i] for i in unique([i for r in operands for i in r.labels] + list(out))}
        labels = [r.labels for r in operands]
        found = slicing.choose(labels, out, sizes, path, lambda s: self.path(operands, out, s),
                               self.budget, self.ranks)
        if found is None:
            return None
        if not all(self.vars[r.var].real for r in operands):  # one dtype inside the loop
            operands = [self.cast(r) for r in operands]
        chunks, inner_path = found
        self.products.append((tuple(operands), out, dict(self.sizes)))
        inner = self.inner(operands, out, chunks, inner_path)
        info = slicing.summary(labels, out, sizes, chunks, path, inner_path, self.ranks > 1)
        return self.emit("sliced", tuple(out), tuple(operands), slices=info, inner=inner)

    def inner(self, operands, out, chunks, path):
        """The program of one slice: the product on operands of the chunks' sizes."""
        b = _Builder(None, (), {}, self.complex)
        b.sizes, b.prefer = dict(chunks), tuple(out)
        refs = []
        for k, r in enumerate(operands):
            var = self.vars[r.var]
            v = b.new((), tuple(chunks[i] for i in r.labels), var.needs, f"x{k}", var.real)
            b.ops.append(Op("input", v.id, (v.name,)))
            refs.append(Ref(v.id, r.labels))
        result = b.reshape(b.pairwise(refs, out, path), out)
        return Program(b.vars, b.ops, tuple(r.var for r in refs), (result.var,), complex=self.complex,
                       products=tuple(b.products))


@dataclass
class _Node:
    """One pairwise product of the contraction tree: its operands, the labels it keeps,
    and the order its result should come out in (None: whatever is natural)."""
    a: object
    b: object
    keep: frozenset
    order: Optional[tuple] = None
    recipe: Optional[layout.Recipe] = None


def _labels(node):
    return set(node.labels) if isinstance(node, Ref) else set(node.keep)


def _tree(operands, path, out):
    pending = list(operands)
    for pair in path:
        a, b = (pending[i] for i in pair)
        pending = [r for i, r in enumerate(pending) if i not in pair]
        needed = set(out).union(*(_labels(r) for r in pending))
        keep = frozenset((_labels(a) | _labels(b)) & needed)
        pending.append(_Node(a, b, keep))
    return pending[0]


TIE_OPERANDS = 4  # up to this many operands every path is tried for a FLOP tie (15 trees at 4)


def _paths(n):
    """Every contraction path of n operands, as opt_einsum writes one: pairs of positions in
    the pending list, each result appended at its end."""
    if n == 1:
        yield []
        return
    for i in range(n):
        for j in range(i + 1, n):
            for rest in _paths(n - 1):
                yield [(i, j)] + rest


def _other_trees(operands, out, tree):
    """The trees of every path whose tree is shaped unlike `tree`, each shape once."""
    seen = {_shape(tree)}
    for other in _paths(len(operands)):
        tree = _tree(operands, other, out)
        key = _shape(tree)
        if key not in seen:
            seen.add(key)
            yield tree


def _shape(node):
    if isinstance(node, Ref):
        return id(node)
    return frozenset((_shape(node.a), _shape(node.b)))


def _flops(node, sizes):
    """Multiply-adds of the tree's products."""
    if isinstance(node, Ref):
        return 0
    return _cost(_labels(node.a) | _labels(node.b), sizes) + _flops(node.a, sizes) + \
        _flops(node.b, sizes)


def _held(node, sizes):
    """Elements of the tree's intermediates."""
    if isinstance(node, Ref):
        return 0
    return _cost(node.keep, sizes) + _held(node.a, sizes) + _held(node.b, sizes)


def _orient(tree, out, sizes, needs, states=8, memo=None):
    """Choose each intermediate's memory order, and each product's form, by a dynamic program
    over the tree: the cost of a node in an order is the elements its copies move (forward and
    backward, layout.candidates) plus its operands' costs in the orders that form reads them in.
    A result not made in the statement's order `out` is permuted (a copy, both ways).
    Returns the total cost. memo: candidate forms already worked out for these sizes."""
    table = {}
    memo = {} if memo is None else memo

    def solve(node):
        if isinstance(node, Ref):
            return {node.labels: (0.0, None, None, None)}
        sa, sb = solve(node.a), solve(node.b)
        wants = (needs(node.a), needs(node.b))
        best = {}
        for oa, (ca, *_) in sa.items():
            for ob, (cb, *_) in sb.items():
                key = (oa, ob, node.keep, wants)
                if key not in memo:
                    memo[key] = layout.candidates(oa, ob, node.keep, sizes, wants)
                forms = memo[key]
                if not forms:  # nothing contracted: einsum makes the natural order
                    forms = [(natural_labels(oa, ob, node.keep), 0.0, None)]
                else:
                    forms = [(r.produced, r.cost, r) for r in forms]
                for produced, cost, r in forms:
                    total = ca + cb + cost
                    if produced not in best or total < best[produced][0]:
                        best[produced] = (total, r, oa, ob)
        kept = dict(sorted(best.items(), key=lambda kv: kv[1][0])[:states])
        table[id(node)] = kept
        return kept

    def choose(node, order):
        if isinstance(node, Ref):
            return
        _, r, oa, ob = table[id(node)][order]
        node.order, node.recipe = order, r
        choose(node.a, oa)
        choose(node.b, ob)

    if isinstance(tree, Ref):
        return 0.0
    options = solve(tree)
    n = math.prod(sizes[i] for i in out)
    def total(item):
        order, (cost, *_) = item
        if order == tuple(out):
            return cost
        gather = order[-1:] != tuple(out)[-1:]
        return cost + n * (layout.GATHER if gather else layout.COPY) * (2 if needs(tree) else 1)
    order, _ = min(options.items(), key=total)
    choose(tree, order)
    return total((order, options[order]))


def _letters(labels):
    return {label: opt_einsum.get_symbol(k) for k, label in enumerate(labels)}


def _coef(access, label):
    """How far one step of `label` moves along a dimension read with this subscript."""
    if isinstance(access, str):
        return int(access == label)
    return sum(c for c, i in access.terms if i == label)


def _offset(access, size):
    if isinstance(access, str):
        return 0
    return access.offset + size if not access.terms and access.offset < 0 else access.offset


def _cost(labels, sizes):
    return math.prod(sizes[i] for i in set(labels))
