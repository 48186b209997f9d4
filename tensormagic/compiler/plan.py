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
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import opt_einsum

from ..language.bindings import distinct
from ..language.errors import NotationValueError
from ..language.functions import FUNCTIONS
from ..language.ir import (Add, Binary, Call, Const, Indicator, Mul, Pow, Reduce, Scalar, Sigma,
                           Tensor, free, leaves, unique)
from ..language.numbers import ConstantError, function
from ..language.ranges import index_sizes
from . import convs, layout, lowering, search, slicing
from .derived import Derived
from .layout import broadcast_orders, natural_labels
from .program import Op, Program, Ref, Var
from .sizes import plain


def build(cell, shapes, wants, sizes=None, complex=False, complex_inputs=None, every=True,
          budget=None, ranks=1):
    """shapes: one shape tuple per cell input; wants: input names whose gradient is needed;
    sizes: {index: size} for indices no shape fixes; complex: the program computes in a
    complex dtype; complex_inputs: per input, is it complex (default: all are when the program
    is). Real values (real inputs, abs(z)) stay real, as in torch, and are cast where they meet
    complex ones. every: the program returns every output (else only the last statement's).
    budget: a slicing.Budget, the memory one product's slice may hold (None: no limit); ranks:
    cut every product into at least this many slices, spread over the ranks of
    torch.distributed (1: none)."""
    if complex_inputs is None:
        complex_inputs = (complex,) * len(shapes)
    program = _Builder(cell, wants, sizes or {}, complex, budget, ranks).run(shapes, complex_inputs,
                                                                              every)
    if budget is not None:
        slicing.check_values(program, budget, cell.statements)
    return program


# Functions whose value is real for any argument; the others are real for a real argument.
_REAL_VALUED = ("abs",)


class _Builder(Derived):
    def __init__(self, cell, wants, given, complex=False, budget=None, ranks=1):
        self.cell, self.wants, self.given, self.complex = cell, set(wants), given, complex
        self.budget, self.ranks = budget, ranks
        self.vars, self.ops, self.env, self.products = [], [], {}, []
        self.casts = {}  # real var id -> its complex copy
        self.made = {}   # an op's key (_op_key) -> the value it made
        self.defined = {}  # name -> (indices, rhs) of the statement defining its value now
        self.sized = {}    # target -> the index sizes of the statement assigning it
        self.budget, self.ranks = budget, ranks
        self.pad = dict(cell.pad) if cell is not None else {}  # name -> places read as zero
        # outside at shifted subscripts
        self.padded = {}   # (var id, padded dims) -> the padded var

    def run(self, shapes, complex_inputs, every=True):
        inputs = []
        for name, shape, cx in zip(self.cell.inputs, shapes, complex_inputs):
            if name in self.cell.symmetric and (len(shape) != 2 or shape[0] != shape[1]):
                raise NotationValueError(f"'{name}' is declared symmetric but has shape {tuple(shape)}: "
                                         f"a symmetric matrix is square")
            v = self.new((), tuple(shape), name in self.wants, name, real=not cx)
            self.ops.append(Op("input", v.id, (name,)))
            self.env[name] = v.id
            inputs.append(v.id)
        starts = []
        for st in self.cell.statements:
            starts.append(len(self.ops))
            self.statement(st)
        returned = self.cell.outputs if every else self.cell.outputs[-1:]
        outputs = tuple(self.env[name] for name in returned)
        ops, starts = _live(self.ops, outputs, starts)
        symmetric = tuple(v for n, v in zip(self.cell.inputs, inputs) if n in self.cell.symmetric)
        return Program(self.vars, ops, tuple(inputs), outputs, complex=self.complex,
                       products=tuple(self.products), starts=starts, symmetric=symmetric)

    def new(self, labels, shape, needs=False, name=None, real=True):
        v = Var(len(self.vars), tuple(labels), tuple(shape), needs, name, real)
        self.vars.append(v)
        return v

    def emit(self, kind, labels, args, **info):
        real = self.is_real(kind, args, info)
        if not real and kind != "gather":  # real operands of a complex op are cast (their
            args = tuple(self.cast(a) for a in args)  # gradient: its real part); not indices
        shape = tuple(self.sizes[i] for i in labels)
        key = _op_key(kind, labels, shape, args, info)
        if key in self.made:  # the same op on the same values: made once (x - mu in two
            return Ref(self.made[key].var, tuple(labels))  # statements, under any index names)
        needs = any(self.vars[a.var].needs for a in args if isinstance(a, Ref))
        v = self.new(labels, shape, needs, real=real)
        self.ops.append(Op(kind, v.id, tuple(args), info))
        ref = Ref(v.id, v.labels)
        if key is not None:
            self.made[key] = ref
        return ref

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
        st, written = distinct(st)  # sibling reductions that reuse a name: a name per binding
        known = self.target_sizes(st)
        st = self.identities(st, known)
        self.st = st
        self.sizes = index_sizes(st, self.env, self.vars, self.given, written, known, self.pad)
        self.sized[st.target] = self.sizes
        self.costs = plain(self.sizes)  # what paths and layouts are chosen by: no Size guards
        self.prefer = st.indices  # the order the statement's result is wanted in
        rhs = self.expr(st.rhs)
        if st.target_access is not None:
            return self.scatter(st, rhs)
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
        self.define(st)

    def define(self, st):
        """What a later statement may read through (lowering: a layer norm's mean and
        variance): the definition of the name st assigns, and no definition reading its old value."""
        for name, (_, rhs) in list(self.defined.items()):
            if st.target in {leaf.name for leaf in leaves(rhs)}:
                del self.defined[name]
        self.defined.pop(st.target, None)
        if st.op == ":=":
            self.defined[st.target] = (st.indices, st.rhs)

    def expr(self, e):
        """A Ref whose labels are free(e), or a Const."""
        if isinstance(e, Const):
            return e
        found = None if self.complex else lowering.whole(e, self.defined)
        fused = self.lowered(found) if found is not None else None
        if fused is not None:
            return fused
        if isinstance(e, Scalar) and e.name.startswith("|"):  # an index's size, |j|
            return Const(self.sizes[e.name[1:-1]])
        if isinstance(e, Scalar):
            return Ref(self.env[e.name], ())
        if isinstance(e, Tensor):
            return self.reshape(self.read(e), unique(e.indices))
        if isinstance(e, Mul):
            return self.contract(e.factors, free(e))
        if isinstance(e, Indicator):
            return self.emit("indicator", free(e), (self.expr(e.left), self.expr(e.right)))
        if isinstance(e, Sigma) and not set(e.indices) <= set(free(e.body)):
            return self.broadcast_sum(e)
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
            self.refuse_complex(e, f"{e.func}(a, b)", a, b)
            return self.emit("binary", free(e), (a, b), func=e.func)
        if isinstance(e, Add):
            return self.sum(e)
        if isinstance(e, Call):
            arg = self.expr(e.arg)
            if isinstance(arg, Const):
                folded = _folded(e.func, arg.value)
                if folded is not None:
                    return folded
                arg = self.emit("literal", (), (), value=arg.value)
            if not FUNCTIONS[e.func].complex and not self.vars[arg.var].real:
                raise self.error(e, f"{e.func}() does not take complex values (torch has no "
                                    f"complex {e.func})")
            return self.emit("map", arg.labels, (arg,), func=e.func)
        if isinstance(e, Pow):
            base, exponent = self.expr(e.base), self.expr(e.exponent)
            if isinstance(exponent, Const) and isinstance(base, Ref):
                return self.emit("map", base.labels, (base,), func="pow", p=exponent.value)
            return self.emit("pow", free(e), (base, exponent))
        raise TypeError(e)

    def sum(self, e):
        """Signed terms; two of them may be one recognised form (a log-softmax, a cross-entropy)."""
        found = None if self.complex else lowering.in_sum(e)
        fused = self.lowered(found) if found is not None else None
        if fused is None:
            return self.emit("add", free(e), tuple(self.expr(t) for t in e.terms), signs=e.signs)
        rest = [k for k in range(len(e.terms)) if k not in found.terms]
        if not rest:
            return fused
        terms = (fused,) + tuple(self.expr(e.terms[k]) for k in rest)
        return self.emit("add", free(e), terms, signs=(1,) + tuple(e.signs[k] for k in rest))

    def lowered(self, m):
        """The one fused op of a recognised form (lowering.Match), or None where its operands do
        not fit it (a number, a complex value, the normalised index not last)."""
        args = tuple(self.expr(a) for a in m.args)
        if not all(isinstance(a, Ref) and self.vars[a.var].real for a in args):
            return None
        x, info, labels = args[0], dict(m.info), args[0].labels
        if m.index is not None:
            if m.index not in x.labels:
                return None
            info["dim"] = x.labels.index(m.index)
        if m.kind == "cross_entropy":
            labels = tuple(i for i in x.labels if i != m.index)
            info.update(logits=m.args[0].name, targets=m.args[1].name)
        if m.kind == "layer_norm" and x.labels[-1] != m.index:
            return None
        return self.emit(m.kind, labels, args, **info)

    def reduction(self, e):
        empty = [i for i in e.indices if self.sizes[i] == 0]
        if empty and e.op in ("max", "min", "mean"):
            raise self.error(e, f"{e.op}[{','.join(e.indices)}] reduces '{empty[0]}', of size 0 here: "
                                f"an empty {e.op} has no value (sum, prod and logsumexp give 0, 1 and -inf)")
        if e.op in ("sum", "mean"):
            total = self.expr(Sigma(e.indices, e.body))
            if e.op == "sum":
                return total
            count = math.prod(self.sizes[i] for i in e.indices)
            if isinstance(total, Const):
                return Const(total.value / count)
            return self.emit("scale", total.labels, (total, Const(1 / count)))
        pooled = self.pooled(e)
        if pooled is not None:
            return pooled
        ref = self.expr(e.body)
        if e.op in ("max", "min"):
            self.refuse_complex(e, f"{e.op}[{','.join(e.indices)}]", ref)
        keep = tuple(i for i in ref.labels if i not in e.indices)
        return self.emit("reduce", keep, (ref,), op=e.op, over=tuple(e.indices))

    def pooled(self, e):
        """max or min over windows of one real tensor read at shifted subscripts (pooling) as
        one op: its backward shares each window's gradient into the tensor directly; None for
        any other reduction."""
        body = e.body
        if e.op not in ("max", "min") or not isinstance(body, Tensor) or body.access is None \
                or body.gathers():
            return None
        var, body = self.source(body)
        if not var.real:
            return None
        labels = unique(body.indices)
        coefs, offsets = self.strides(body, var, labels)
        keep = tuple(i for i in labels if i not in e.indices)
        return self.emit("pool", keep, (Ref(var.id, ()),), op=e.op, over=tuple(e.indices),
                         window=labels, coefs=coefs, offsets=offsets,
                         shape=tuple(self.sizes[i] for i in labels))

    def strides(self, e, var, labels):
        """(per label, its coefficient along each dim of var; each dim's offset) of a read."""
        access = e.access if e.access is not None else e.indices
        return (tuple(tuple(_coef(a, label) for a in access) for label in labels),
                tuple(_offset(a, n) for a, n in zip(access, var.shape)))

    def refuse_complex(self, e, what, *args):
        """max and min compare: complex values have no order."""
        if any(isinstance(a, Ref) and not self.vars[a.var].real or
               isinstance(a, Const) and isinstance(a.value, complex) for a in args):
            raise self.error(e, f"{what} needs real values: complex numbers have no order "
                                f"(compare abs(z) instead)")

    def error(self, e, message):
        return NotationValueError(message, self.st.text, self.st.lineno, *(e.span or (None, None)))

    # -- reading a tensor ------------------------------------------------------------
    def read(self, e):
        """A tensor's values at its subscripts: the var itself (labels may repeat: a diagonal),
        a strided view (shifted, fixed or narrowed subscripts), or a gather."""
        var, e = self.source(e)
        access = e.access if e.access is not None else e.indices
        if e.access is None and all(var.shape[d] == self.sizes[i] for d, i in enumerate(e.indices)):
            return Ref(var.id, e.indices)
        labels = unique(e.indices)
        if e.gathers():
            return self.gather(e, var, access, labels)
        coefs, offsets = self.strides(e, var, labels)
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
            (xv, x), wv = self.source(x), self.vars[self.env[w.name]]
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
        self.products.append((tuple(operands), out, dict(self.costs)))
        tree = _tree(operands, path, out)
        # orders kept per node: a wide search for small trees, a narrow one for many operands
        states = 8 if len(operands) <= 8 else 3
        memo = {}
        moved = _orient(tree, tuple(out), self.costs, self.needs, states, memo)
        if len(operands) <= TIE_OPERANDS and not fixed:
            # another path as cheap in FLOPs may need fewer copies: the layout cost decides,
            # then the elements its intermediates hold
            best = (moved, _held(tree, self.costs))
            flops = _flops(tree, self.costs)
            for other in _other_trees(operands, out, tree):
                if _flops(other, self.costs) <= flops:
                    cost = (_orient(other, tuple(out), self.costs, self.needs, states, memo),
                            _held(other, self.costs))
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
        sizes = self.costs if sizes is None else sizes
        letters = _letters(unique([i for r in operands for i in r.labels] + list(out)))
        found = search.path([[letters[i] for i in r.labels] for r in operands],
                            [letters[i] for i in out], {letters[i]: sizes[i] for i in letters})
        if found is not None:
            return found
        if len(operands) < 2:
            return [(0,)]  # one operand: nothing to order (as opt_einsum.contract_path says)
        # integer labels: opt_einsum's searches iterate over sets of labels, and sets of
        # strings iterate in an order that changes with each process's hash seed; the ranks
        # of distributed=True (and two runs of a notebook) must plan the same path. Plain ints,
        # as opt_einsum.contract_path makes them: a search's comparisons are no export guards
        number = {i: k for k, i in enumerate(letters)}
        inputs = [frozenset(number[i] for i in r.labels) for r in operands]
        found = (opt_einsum.paths.optimal if len(operands) <= 4 else opt_einsum.paths.auto_hq)(
            inputs, frozenset(number[i] for i in out), {number[i]: int(sizes[i]) for i in letters})
        return [tuple(step) for step in found]

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
        self.products.append((tuple(operands), out, dict(self.costs)))
        inner = self.inner(operands, out, chunks, inner_path)
        info = slicing.summary(labels, out, sizes, chunks, path, inner_path, self.ranks > 1)
        return self.emit("sliced", tuple(out), tuple(operands), slices=info, inner=inner)

    def inner(self, operands, out, chunks, path):
        """The program of one slice: the product on operands of the chunks' sizes."""
        b = _Builder(None, (), {}, self.complex)
        b.sizes, b.prefer = dict(chunks), tuple(out)
        b.costs = plain(b.sizes)
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
                if not forms:  # nothing contracted: a broadcast multiply, in either order
                    forms = [(order, 0.0, None) for order in broadcast_orders(oa, ob)]
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


def _folded(func, value):
    """A function of a number as a number (sqrt(2)), where Python computes it as torch would."""
    try:
        return Const(function(func, value))
    except (KeyError, ConstantError):
        return None


def _live(ops, outputs, starts):
    """The ops the outputs need (a recognised form leaves the ops it replaced unread), and
    where each statement's surviving ops start (None: it has none)."""
    live, kept = set(outputs), []
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        if op.out in live or op.kind == "input":
            kept.append(k)
            live.update(a.var for a in op.args if isinstance(a, Ref))
    kept.reverse()
    ends = list(starts[1:]) + [len(ops)]
    first = [next((n for n, k in enumerate(kept) if start <= k < end), None)
             for start, end in zip(starts, ends)]
    return [ops[k] for k in kept], tuple(first)


def _op_key(kind, labels, shape, args, info):
    """What makes an op's value: equal keys, equal values (None: not comparable). Index names
    are the op's own: they are numbered in order of appearance, so that Σ_h H[b,h] W[h,o] and
    Σ_hʹ H[b,hʹ] W[hʹ,o] (a forward sum a gradient reads again) are one op."""
    names = {}
    for i in list(labels) + [i for a in args if isinstance(a, Ref) for i in a.labels]:
        names.setdefault(i, f"#{len(names)}")
    key = (kind, _numbered(tuple(labels), names), shape, _numbered(tuple(args), names),
           _numbered(tuple(sorted(info.items())), names))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _numbered(x, names):
    """x with every index name replaced by its number (through tuples and dataclasses)."""
    if isinstance(x, str):
        return names.get(x, x)
    if isinstance(x, Ref):
        return ("ref", x.var, _numbered(x.labels, names))
    if isinstance(x, (tuple, list)):
        return tuple(_numbered(y, names) for y in x)
    if isinstance(x, (set, frozenset)):
        return frozenset(_numbered(y, names) for y in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__,) + tuple(_numbered(getattr(x, f.name), names) for f in dataclasses.fields(x))
    return x


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
