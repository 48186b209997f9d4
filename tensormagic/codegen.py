"""Program → Python source: a forward function and its reverse-mode backward.

Only the program's data is read: einsum equations are letters, names are
identifiers the parser has already validated, numbers are repr()s. Nothing a
user typed is pasted in.
"""
import cmath
import math
import re
from dataclasses import dataclass

import opt_einsum

from . import layout
from .functions import FUNCTIONS, X
from .ir import Add, Call, Const, Mul, Pow, Scalar, signed_sum
from .plan import Ref


@dataclass(frozen=True)
class Source:
    text: str
    saved: tuple     # var ids the backward reads
    outputs: tuple   # var ids returned by forward


def generate(program, comments=None):
    """comments: {op index: text} shown above that op in the forward."""
    gen = _Gen(program)
    backward = gen.backward()
    forward = gen.forward(comments or {})
    return Source("\n".join(forward + [""] + backward) + "\n", tuple(gen.saved), program.outputs)


def _eq(operands, out):
    letters = {}
    for label in [i for labels in operands for i in labels] + list(out):
        letters.setdefault(label, opt_einsum.get_symbol(len(letters)))
    return ",".join("".join(letters[i] for i in labels) for labels in operands) + "->" + \
        "".join(letters[i] for i in out)


def _matrix_shape(sizes, batch, rows, cols):
    """The (batch ×) rows × cols shape of a tensor read as a (batched) matrix."""
    shape = [math.prod(sizes[i] for i in rows), math.prod(sizes[i] for i in cols)]
    return ([math.prod(sizes[i] for i in batch)] if batch else []) + shape


def _plain(batch, first, second):
    """A tensor with these index groups is already a (batched) matrix: no reshape needed."""
    return batch <= 1 and len(first) == 1 and len(second) == 1


def _t(text):
    """The matrix transpose of a matrix expression."""
    return text[:-3] if text.endswith(".mT") else text + ".mT"


def _shape(sizes, labels):
    dims = [str(sizes[i]) for i in labels]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _num(value):
    if isinstance(value, complex):
        return f"complex({_num(value.real)}, {_num(value.imag)})"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    return repr(value)


def _log(value, complex_dtype):
    """log of a constant base, as torch would take it in this dtype."""
    if not isinstance(value, complex) and value > 0:
        return math.log(value)
    if value == 0:
        return float("-inf")
    return cmath.log(value) if complex_dtype else float("nan")


class _Gen:
    def __init__(self, program):
        self.p = program
        self.saved = []
        self.conj = program.complex
        # A statement whose right side is already the result, in order, names no new value.
        self.alias = {}
        for op in program.ops:
            rhs = op.args[0] if op.args else None
            if op.kind == "emit" and op.info["op"] != "+=" and isinstance(rhs, Ref) \
                    and rhs.labels == program.vars[op.out].labels:
                self.alias[op.out] = self.alias.get(rhs.var, rhs.var)

    # -- names -------------------------------------------------------------------------
    def name(self, ref_or_id):
        if isinstance(ref_or_id, str):
            return ref_or_id  # a named temporary
        vid = ref_or_id.var if isinstance(ref_or_id, Ref) else ref_or_id
        vid = self.alias.get(vid, vid)
        v = self.p.vars[vid]
        return v.name if vid in self.p.inputs else f"_{vid}"

    def use(self, ref_or_id):
        """A forward value read by the backward: it must be saved."""
        vid = ref_or_id.var if isinstance(ref_or_id, Ref) else ref_or_id
        vid = vid if isinstance(vid, str) else self.alias.get(vid, vid)
        if vid not in self.saved:
            self.saved.append(vid)
        return self.name(vid)

    def value(self, arg, use=False):
        if isinstance(arg, Const):
            return _num(arg.value)
        return self.use(arg) if use else self.name(arg)

    def cj(self, text):
        return f"({text}).conj()" if self.conj else text

    # -- forward -----------------------------------------------------------------------
    def forward(self, comments):
        params = ", ".join(self.name(i) for i in self.p.inputs)
        lines = [f"def forward({params}):"]
        for k, op in enumerate(self.p.ops):
            if k in comments:
                lines.append(f"    # {comments[k]}")
            if op.kind != "input" and op.out not in self.alias:
                lines.extend(f"    {t} = {e}" for t, e in self.temporaries(op))
                lines.append(f"    _{op.out} = {self.forward_expr(op)}")
        outs = "".join(f"{self.name(v)}, " for v in self.p.outputs)
        saved = "".join(f"{self.name(v)}, " for v in self.saved)
        lines.append(f"    return ({outs}), ({saved})")
        return lines

    def temporaries(self, op):
        """Operands a product must copy into matrix layout: copied once, kept for the backward."""
        if op.kind != "pair" or not self.recipe(op):
            return []
        return [(name, text) for name, text in self.copies(op) if name]

    def copies(self, op):
        a, b = op.args
        r = self.recipe(op)
        sizes = self.sizes(a, b)
        am = self.matrix(a, r.a_order, r.a_perm, r.left, r.contracted, r.a_transposed, sizes)
        bm = self.matrix(b, r.b_order, r.b_perm, r.contracted, r.right, r.b_transposed, sizes)
        return [(f"_m{op.out}a" if r.a_perm is not None else None, am),
                (f"_m{op.out}b" if r.b_perm is not None else None, bm)]

    def forward_expr(self, op):
        out = self.p.vars[op.out]
        a = op.args
        if op.kind == "literal":
            return f"torch.tensor({_num(op.info['value'])}, dtype=_dtype, device=_device)"
        if op.kind == "pair" and self.recipe(op):
            return self.matmul_forward(op, out)
        if op.kind == "einsum1":  # diagonals, then a sum or a transpose
            text, labels = self.name(a[0]), list(a[0].labels)
            while len(set(labels)) < len(labels):
                first = next(i for i in labels if labels.count(i) > 1)
                p = labels.index(first)
                q = labels.index(first, p + 1)
                text = f"torch.diagonal({text}, 0, {p}, {q})"
                labels = [i for k, i in enumerate(labels) if k not in (p, q)] + [first]
            return self.reduce(text, labels, out.labels)
        if op.kind == "pair":  # nothing contracted: an outer or elementwise product
            return f"torch.einsum('{_eq([r.labels for r in a], out.labels)}', " \
                   f"{', '.join(self.name(r) for r in a)})"
        if op.kind == "scale":
            parts = [self.value(x) for x in a if x is not None]
            return " * ".join(parts)
        if op.kind == "add":
            return signed_sum([self.align(t, out.labels) for t in a], op.info["signs"])
        if op.kind == "map":
            return self.call(op.info["func"], self.name(a[0]), op.info.get("p"))
        if op.kind == "pow":
            return f"{self.align(a[0], out.labels)} ** {self.align(a[1], out.labels)}"
        if op.kind == "emit":
            return self.emit_expr(op, out)
        raise ValueError(op.kind)

    def call(self, func, x, p=None):
        if func == "pow":
            return f"{x} ** {_num(p)}"
        return f"{FUNCTIONS[func].torch}({x})"

    def align(self, arg, labels):
        """arg broadcast to `labels` (a subset in any order, missing ones as size-1 dims)."""
        if isinstance(arg, Const):
            return _num(arg.value)
        text = self.name(arg)
        own = arg.labels
        if not own:
            return text
        order = [i for i in labels if i in own]
        if list(own) != order:
            text += f".permute({', '.join(str(own.index(i)) for i in order)})"
        index = [":" if i in own else "None" for i in labels]
        while index and index[0] == "None":
            index.pop(0)
        if "None" in index:
            text += f"[{', '.join(index)}]"
        return text

    def emit_expr(self, op, out):
        rhs = op.args[0]
        shape = tuple(out.shape)
        if isinstance(rhs, Const):
            body = f"torch.full({shape!r}, {_num(rhs.value)}, dtype=_dtype, device=_device)"
        else:
            body = self.align(rhs, out.labels)
        if op.info["op"] == "+=":
            return f"{self.name(op.args[1])} + {body}"
        if isinstance(rhs, Ref) and set(rhs.labels) != set(out.labels):
            body = f"{body}.expand({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"
        return body

    # -- backward ----------------------------------------------------------------------
    def backward(self):
        p = self.p
        self.contribs = {v: [] for v in range(len(p.vars))}
        lines = self.blines = []
        for k, vid in enumerate(p.outputs):
            if p.vars[vid].needs:
                self.contribs[vid].append(f"_grads[{k}]")
        for op in reversed(p.ops):
            out = p.vars[op.out]
            if not out.needs or op.kind == "input" or not self.contribs[op.out]:
                continue
            parts = self.contribs[op.out]
            if len(parts) == 1 and re.fullmatch(r"_g\d+|_grads\[\d+\]", parts[0]):
                g = parts[0]  # the gradient passes through unchanged: no new name
            else:
                g = f"_g{op.out}"
                lines.append(f"    {g} = {' + '.join(parts)}")
            self.backward_op(op, out, g)
        body = lines
        grads = []
        for vid in p.inputs:
            v = p.vars[vid]
            if not v.needs:
                grads.append("None")
            elif self.contribs[vid]:
                body.append(f"    _g{vid} = {' + '.join(self.contribs[vid])}  # Δ{v.name}")
                grads.append(f"_g{vid}")
            else:
                grads.append(f"torch.zeros_like({self.use(vid)})")
        saved = "".join(f"{self.name(v)}, " for v in self.saved)
        head = ["def backward(_saved, _grads):", f"    ({saved}) = _saved"]
        return head + body + [f"    return ({''.join(g + ', ' for g in grads)})"]

    def give(self, arg, text):
        if isinstance(arg, Ref) and self.p.vars[arg.var].needs:
            self.contribs[arg.var].append(text)

    def wants(self, arg):
        return isinstance(arg, Ref) and self.p.vars[arg.var].needs

    def backward_op(self, op, out, g):
        a = op.args
        if op.kind == "einsum1":
            self.give(a[0], self.spread([(g, out.labels)], a[0]))
        elif op.kind == "pair" and self.recipe(op):
            self.matmul_backward(op, out, g)
        elif op.kind == "pair":
            x, y = a
            if self.wants(x):
                self.give(x, self.spread([(g, out.labels), (self.cj(self.use(y)), y.labels)], x))
            if self.wants(y):
                self.give(y, self.spread([(g, out.labels), (self.cj(self.use(x)), x.labels)], y))
        elif op.kind == "scale":
            self.backward_scale(op, out, g)
        elif op.kind == "add":
            for term, sign in zip(a, op.info["signs"]):
                if self.wants(term):
                    text = self.reduce(g, out.labels, term.labels)
                    self.give(term, text if sign > 0 else f"-{text}")
        elif op.kind == "map":
            self.backward_map(op, g)
        elif op.kind == "pow":
            self.backward_pow(op, out, g)
        elif op.kind == "emit":
            rhs = a[0]
            if self.wants(rhs):
                self.give(rhs, self.reduce(g, out.labels, rhs.labels))
            if op.info["op"] == "+=" and self.wants(a[1]):
                self.give(a[1], g)

    # -- products as matrix multiplications -----------------------------------------
    def recipe(self, op):
        """The matmul recipe of a pair op, or None when nothing is contracted (einsum does it)."""
        a, b = op.args
        r = layout.recipe(a.labels, b.labels, self.p.vars[op.out].labels)
        return r if r.contracted else None

    def sizes(self, *refs):
        out = {}
        for r in refs:
            out.update(zip(r.labels, self.p.vars[r.var].shape))
        return out

    def matrix(self, ref, order, perm, first, second, transposed, sizes):
        """ref as a (batch ×) first × second matrix (transposed: stored second × first)."""
        text = self.name(ref)
        if perm is not None:
            text += f".permute({', '.join(map(str, perm))})"
        batch = order[:len(order) - len(first) - len(second)]
        shape = _matrix_shape(sizes, batch, *((second, first) if transposed else (first, second)))
        if perm is not None or not _plain(len(batch), first, second):
            text += f".reshape({', '.join(map(str, shape))})"
        return text + ".mT" if transposed else text

    def operands(self, op, use=()):
        """The recipe, sizes, and the two matrix expressions (a copied one by its name);
        use: the operands the backward reads (they are saved)."""
        a, b = op.args
        r = self.recipe(op)
        sizes = self.sizes(a, b)
        mats = []
        for ref, (temp, text) in zip((a, b), self.copies(op)):
            read = ref in use
            if temp:
                mats.append(self.use(temp) if read else temp)
            else:
                if read:
                    self.use(ref)
                mats.append(text)
        return (r, sizes, *mats)

    @staticmethod
    def mm(recipe):
        """Matrices are exactly 2-D, or 3-D with one batch dimension."""
        return "torch.bmm" if recipe.batch else "torch.mm"

    def matmul_forward(self, op, out):
        r, sizes, am, bm = self.operands(op)
        text = f"{self.mm(r)}({am}, {bm})"
        if not _plain(len(r.batch), r.left, r.right):
            text += f".reshape({_shape(sizes, r.natural)})"
        if tuple(out.labels) != r.natural:
            text += f".permute({', '.join(str(r.natural.index(i)) for i in out.labels)})"
        return text

    def matmul_backward(self, op, out, g):
        a, b = op.args
        r, sizes, am, bm = self.operands(op, use=[x for x, y in ((a, b), (b, a)) if self.wants(y)])
        gm = g
        if tuple(out.labels) != r.natural:
            gm += f".permute({', '.join(str(out.labels.index(i)) for i in r.natural)})"
        shape = _matrix_shape(sizes, r.batch, r.left, r.right)
        if gm != g or not _plain(len(r.batch), r.left, r.right):
            gm += f".reshape({', '.join(map(str, shape))})"
            if self.wants(a) and self.wants(b):  # read twice: copy (if at all) once
                self.blines.append(f"    _gm{op.out} = {gm}")
                gm = f"_gm{op.out}"
        c = ".conj()" if self.conj else ""
        mm = self.mm(r)
        if self.wants(a):
            # ΔA = ΔC Bᴴ, read in A's own layout
            prod = f"{mm}({bm}{c}, {_t(gm)})" if r.a_transposed else f"{mm}({gm}, {_t(bm)}{c})"
            self.give(a, self.unlayout(prod, r.a_order, r.a_perm, sizes, _plain(len(r.batch), r.left, r.contracted)))
        if self.wants(b):
            # ΔB = Aᴴ ΔC, read in B's own layout
            prod = f"{mm}({_t(gm)}, {am}{c})" if r.b_transposed else f"{mm}({_t(am)}{c}, {gm})"
            self.give(b, self.unlayout(prod, r.b_order, r.b_perm, sizes, _plain(len(r.batch), r.contracted, r.right)))

    def unlayout(self, text, order, perm, sizes, plain=False):
        if perm is not None or not plain:
            text += f".reshape({_shape(sizes, order)})"
        if perm is not None:
            inverse = [perm.index(k) for k in range(len(perm))]
            text += f".permute({', '.join(map(str, inverse))})"
        return text

    def backward_scale(self, op, out, g):
        src, *scalars = op.args
        for k, s in enumerate(scalars):
            if not self.wants(s):
                continue
            rest = [self.value(t, use=True) for j, t in enumerate(scalars) if j != k]
            if src is None:
                prod = " * ".join(rest) if rest else None
                text = g if prod is None else f"{g} * {self.cj(prod)}"
            else:
                # Σ ΔC · conj(C/α) as one dot product: no temporary the size of C
                dot = "torch.vdot" if self.conj else "torch.dot"
                inner = f"{dot}({self.use(src)}.reshape(-1), {g}.reshape(-1))"
                text = inner if not rest else f"{inner} * {self.cj(' * '.join(rest))}"
            self.give(s, text)
        if src is not None and self.wants(src):
            factors = " * ".join(self.value(t, use=True) for t in scalars)
            self.give(src, f"{g} * {self.cj(factors)}")

    def backward_map(self, op, g):
        src = op.args[0]
        if not self.wants(src):
            return
        func = op.info["func"]
        if func == "conj":
            self.give(src, f"{g}.conj()")
            return
        if func == "pow":
            p = op.info["p"]
            deriv = Mul((Const(p), Pow(X, Const(p - 1)))) if p != 2 else Mul((Const(2), X))
            conj = True
        else:
            deriv, conj = FUNCTIONS[func].derivative, FUNCTIONS[func].conj
        if isinstance(deriv, Const) and deriv.value == 0:
            return
        if func in ("tanh", "sigmoid") and not self.conj:  # one fused kernel, same formula
            self.give(src, f"torch.ops.aten.{func}_backward({g}, {self.use(op.out)})")
            return
        text = self.elementwise(deriv, {"@x": src.var, "@y": op.out})
        self.give(src, f"{g} * {self.cj(text) if conj else text}")

    def backward_pow(self, op, out, g):
        base, exponent = op.args
        b, e = self.align_used(base, out.labels), self.align_used(exponent, out.labels)
        if self.wants(base):
            self.give(base, self.reduce(f"({g} * {self.cj(f'{e} * {b} ** ({e} - 1)')})", out.labels,
                                        base.labels))
        if self.wants(exponent):
            y = self.use(op.out)
            log = _num(_log(base.value, self.conj)) if isinstance(base, Const) else f"torch.log({b})"
            self.give(exponent, self.reduce(f"({g} * {self.cj(f'{y} * {log}')})", out.labels,
                                            exponent.labels))

    def align_used(self, arg, labels):
        if isinstance(arg, Ref):
            self.use(arg)
        return self.align(arg, labels)

    def elementwise(self, e, env):
        """Source for a derivative rule written in the placeholders X and Y."""
        if isinstance(e, Const):
            return _num(e.value)
        if isinstance(e, Scalar):
            return self.use(env[e.name])
        if isinstance(e, Add):
            return f"({signed_sum([self.elementwise(t, env) for t in e.terms], e.signs)})"
        if isinstance(e, Mul):
            return "(" + " * ".join(self.elementwise(f, env) for f in e.factors) + ")"
        if isinstance(e, Pow):
            return f"{self.elementwise(e.base, env)} ** {self.elementwise(e.exponent, env)}"
        if isinstance(e, Call):
            return self.call(e.func, self.elementwise(e.arg, env))
        raise TypeError(e)

    def reduce(self, g, have, want):
        """g over labels `have`, summed down to `want` (a subset) in want's order."""
        have, want = tuple(have), tuple(want)
        if have == want:
            return g
        if set(have) == set(want):
            return f"{g}.permute({', '.join(str(have.index(i)) for i in want)})"
        if [i for i in have if i in want] == list(want):  # a plain sum keeps the order
            dims = [str(k) for k, i in enumerate(have) if i not in want]
            if not want:
                return f"{g}.sum()"
            return f"{g}.sum({dims[0]})" if len(dims) == 1 else f"{g}.sum(({', '.join(dims)}))"
        return f"torch.einsum('{_eq([have], want)}', {g})"

    def spread(self, operands, target):
        """The einsum of `operands` laid out as target's var: diagonals filled through δ,
        indices found in no operand broadcast (the gradient of a sum)."""
        var = self.p.vars[target.var]
        labels, seen, eyes = [], set(), []
        for label in target.labels:
            if label in seen:
                fresh = f"{label}ʹ{len(labels)}"
                eyes.append((label, fresh))
                labels.append(fresh)
            else:
                seen.add(label)
                labels.append(label)
        covered = {i for _, ls in operands for i in ls} | {i for pair in eyes for i in pair}
        computed = [i for i in labels if i in covered]
        args = list(operands)
        for first, fresh in eyes:
            n = var.shape[target.labels.index(first)]
            args.append((f"torch.eye({n}, dtype=_dtype, device=_device)", (first, fresh)))
        if len(args) == 1 and tuple(args[0][1]) == tuple(computed):
            text = args[0][0]
        elif len(args) == 2 and not args[0][1] and tuple(args[1][1]) == tuple(computed):
            text = f"{args[1][0]} * {args[0][0]}"  # a scalar times δ: the gradient of a trace
        else:
            text = f"torch.einsum('{_eq([ls for _, ls in args], computed)}', " \
                   f"{', '.join(t for t, _ in args)})"
        if len(computed) < len(labels):
            index = [":" if i in covered else "None" for i in labels]
            text += f"[{', '.join(index)}].expand({', '.join(map(str, var.shape))})"
        return text

