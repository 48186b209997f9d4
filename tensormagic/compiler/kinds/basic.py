"""The kinds every program uses: inputs, numbers, casts, one-operand sums, scalar factors,
sums of terms, elementwise functions, powers and the statements' results."""
import math

from ...language.functions import FUNCTIONS, X
from ...language.ir import Const, Mul, Pow, signed_sum
from ..program import Ref
from ..pysrc import const_log, dims, num
from .base import Kind


class Input(Kind):
    name = "input"
    leaf = True

    def forward(self, gen, op):
        return []


class Literal(Kind):
    """A number made a 0-dim tensor (the argument of a function of numbers)."""
    name = "literal"

    def expr(self, gen, op):
        return f"torch.tensor({num(op.info['value'])}, dtype={gen.dtype(op.out)}, device=_device)"

    def backward(self, gen, op, g):
        pass

    def tangent(self, gen, op):
        return None


class Cast(Kind):
    """A real value read by a complex op; its gradient is the real part (torch's rule for
    type promotion). Real values stay real, as in torch: abs(z) is real."""
    name = "cast"

    def expr(self, gen, op):
        return f"{gen.name(op.args[0])}.to(_dtype)"

    def backward(self, gen, op, g):
        gen.give(op.args[0], f"{g}.real")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        return f"{t}.to(_dtype)" if t else None


class Einsum1(Kind):
    """One operand's diagonals, then a sum over some indices or a transpose."""
    name = "einsum1"

    def expr(self, gen, op, text=None):
        a = op.args[0]
        text, labels = text or gen.name(a), list(a.labels)
        while len(set(labels)) < len(labels):
            first = next(i for i in labels if labels.count(i) > 1)
            p = labels.index(first)
            q = labels.index(first, p + 1)
            text = f"torch.diagonal({text}, 0, {p}, {q})"
            labels = [i for k, i in enumerate(labels) if k not in (p, q)] + [first]
        return gen.reduce(text, labels, gen.labels(op.out))

    def backward(self, gen, op, g):
        a = op.args[0]
        gen.give(a, gen.spread([(g, gen.labels(op.out))], a))

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])  # linear: the same diagonals and sums of the tangent
        return t and self.expr(gen, op, t)


class Scale(Kind):
    """A tensor (or nothing: None) times scalar factors."""
    name = "scale"

    def expr(self, gen, op):
        return " * ".join(gen.value(x) for x in op.args if x is not None)

    def backward(self, gen, op, g):
        src, *scalars = op.args
        inner = None
        for k, s in enumerate(scalars):
            if not gen.wants(s):
                continue
            rest = self.conj_product(gen, [t for j, t in enumerate(scalars) if j != k])
            if src is None:
                text = g if rest is None else f"{g} * {rest}"
            else:
                if inner is None:
                    # Σ ΔC · conj(C/α) as one dot product: no temporary the size of C; taken
                    # now, so that C is released before the gradients below are made
                    dot = "torch.vdot" if gen.conj else "torch.dot"
                    inner = f"_d{op.out}"
                    gen.line(f"{inner} = {dot}({gen.use(src)}.reshape(-1), {g}.reshape(-1))")
                text = inner if rest is None else f"{inner} * {rest}"
            gen.give(s, text)
        if src is not None and gen.wants(src):
            gen.give(src, f"{g} * {self.conj_product(gen, scalars)}")

    @staticmethod
    def conj_product(gen, factors):
        """conj of a product of scalar factors (None for none): a number is conjugated here,
        since a Python number has no .conj()."""
        parts = []
        for f in factors:
            if isinstance(f, Const):
                parts.append(num(f.value.conjugate() if gen.conj else f.value))
            else:
                parts.append(gen.cj(gen.use(f)))
        return " * ".join(parts) if parts else None

    def tangent(self, gen, op):
        """The product rule: one term per factor that carries a tangent."""
        factors = [x for x in op.args if x is not None]
        terms = []
        for k, x in enumerate(factors):
            t = gen.tangent(x)
            if t:
                terms.append(" * ".join([t] + [gen.value(y) for j, y in enumerate(factors) if j != k]))
        return " + ".join(terms) or None


TRANSPOSED_COPY = 1 << 16  # elements: a larger sum copies a transposed term first


class AddTerms(Kind):
    """Signed terms, each broadcast to the result's labels."""
    name = "add"

    def expr(self, gen, op):
        labels = gen.labels(op.out)
        big = math.prod(gen.p.vars[op.out].shape) >= TRANSPOSED_COPY
        return signed_sum([self.term(gen, t, labels, big) for t in op.args], op.info["signs"])

    @staticmethod
    def term(gen, t, labels, big):
        """A term in the result's layout. In a large sum a term of two or more dims goes
        through _dense: laid out transposed (a permuted view), it is copied first, since
        torch's transposing copy is blocked and its elementwise kernels read a transposed
        operand several times slower (A + A.T at 2048²: 44 ms; with the copy, 12 ms)."""
        if big and isinstance(t, Ref) and len(t.labels) > 1:
            return gen.broadcast(f"_dense({gen.name(t)})", t.labels, labels)
        return gen.align(t, labels)

    def backward(self, gen, op, g):
        for term, sign in zip(op.args, op.info["signs"]):
            if gen.wants(term):
                text = gen.reduce(g, gen.labels(op.out), term.labels)
                gen.give(term, text if sign > 0 else f"-{text}")

    def tangent(self, gen, op):
        labels = gen.labels(op.out)
        pieces, signs, covered = [], [], set()
        for term, sign in zip(op.args, op.info["signs"]):
            t = gen.tangent(term)
            if t:
                pieces.append(gen.align(term, labels, t))
                signs.append(sign)
                covered |= set(term.labels)
        if not pieces:
            return None
        text = signed_sum(pieces, signs)
        if covered != set(labels):  # only terms broadcast along some index move
            text = f"({text}).expand({dims(gen.p.vars[op.out].shape)})"
        return text


def _derivative(op):
    """f′ of a map op, in the placeholders X and Y."""
    if op.info["func"] == "pow":
        p = op.info["p"]
        if p == 0:  # x ** 0 is 1 everywhere, 0 ** 0 included
            return Const(0)
        return Mul((Const(p), Pow(X, Const(p - 1)))) if p != 2 else Mul((Const(2), X))
    return FUNCTIONS[op.info["func"]].derivative


class Map(Kind):
    """An elementwise function (or a constant power) of one operand."""
    name = "map"

    def expr(self, gen, op):
        return gen.call(op.info["func"], gen.name(op.args[0]), op.info.get("p"))

    def backward(self, gen, op, g):
        src = op.args[0]
        if not gen.wants(src):
            return
        func = op.info["func"]
        if func == "conj":
            gen.give(src, f"{g}.conj()")
            return
        if func == "sgn" and not gen.real(src):
            gen.give(src, self.sgn_backward(gen, src, op.out, g))
            return
        if func == "pow":
            p = op.info["p"]
            if p == 0:  # x ** 0 is 1 everywhere, 0 ** 0 included: no gradient (torch's rule)
                return
            deriv = Mul((Const(p), Pow(X, Const(p - 1)))) if p != 2 else Mul((Const(2), X))
            conj = True
        else:
            deriv, conj = FUNCTIONS[func].derivative, FUNCTIONS[func].conj
        if isinstance(deriv, Const) and deriv.value == 0:
            return
        if func in ("tanh", "sigmoid") and not gen.conj:  # one fused kernel, same formula
            gen.give(src, f"torch.ops.aten.{func}_backward({g}, {gen.use(op.out)})")
            return
        text = gen.elementwise(deriv, {"@x": src.var, "@y": op.out})
        gen.give(src, f"{g} * {gen.cj(text) if conj else text}")

    @staticmethod
    def sgn_backward(gen, src, out, g):
        """sgn(z) = z/|z| is not holomorphic: Δz = (Δs − s·Re(Δs·conj(s))) / |z|, 0 at z = 0."""
        z, s = gen.use(src), gen.use(out)
        return (f"torch.where({z} == 0, 0, ({g} - {s} * ({g} * {s}.conj()).real) / "
                f"torch.where({z} == 0, 1, torch.abs({z})))")

    def tangent(self, gen, op):
        """f′(x) · ẋ (no conjugate: holomorphic functions are complex-linear in ẋ)."""
        src = op.args[0]
        t = gen.tangent(src)
        func = op.info["func"]
        if not t:
            return None
        if func == "conj":
            return f"{t}.conj()"
        z = gen.name(src)
        if func == "abs" and not gen.real(src):  # |z| is not holomorphic: Re(conj(sgn z) · ż)
            return f"(torch.sgn({z}).conj() * {t}).real"
        if func == "sgn" and not gen.real(src):  # (ż − s·Re(conj(s)·ż)) / |z|, 0 at z = 0
            s = gen.name(op.out)
            return (f"torch.where({z} == 0, 0, ({t} - {s} * ({s}.conj() * {t}).real) / "
                    f"torch.where({z} == 0, 1, torch.abs({z})))")
        deriv = _derivative(op)
        if isinstance(deriv, Const) and deriv.value == 0:
            return None
        if func in ("tanh", "sigmoid") and not gen.conj:  # f′ from the value: one fused kernel
            return f"torch.ops.aten.{func}_backward({t}, {gen.name(op.out)})"
        return f"{t} * {gen.elementwise(deriv, {'@x': src.var, '@y': op.out})}"


class Power(Kind):
    """base ** exponent with a tensor exponent (a constant one is a map)."""
    name = "pow"

    def expr(self, gen, op):
        labels = gen.labels(op.out)
        return f"{gen.align(op.args[0], labels)} ** {gen.align(op.args[1], labels)}"

    def backward(self, gen, op, g):
        """torch's masks: no base gradient where the exponent is 0, no exponent gradient where
        the base is 0 and the exponent is (real and) ≥ 0."""
        base, exponent = op.args
        labels = gen.labels(op.out)
        b, e = gen.align_used(base, labels), gen.align_used(exponent, labels)
        if gen.wants(base):
            db = f"{g} * {gen.cj(f'{e} * {b} ** ({e} - 1)')}"
            if not (isinstance(exponent, Const) and exponent.value != 0):
                db = f"torch.where({e} == 0, 0, {db})"
            gen.give(base, gen.reduce(f"({db})", labels, base.labels))
        if gen.wants(exponent):
            y = gen.use(op.out)
            if isinstance(base, Const):
                log = num(const_log(base.value, not gen.real(op.out)))
            else:
                log = f"torch.log({b})"
            de = f"{g} * {gen.cj(f'{y} * {log}')}"
            if not (isinstance(base, Const) and base.value != 0):
                de = f"torch.where(({b} == 0) & {self.nonnegative(gen, e, exponent)}, 0, {de})"
            gen.give(exponent, gen.reduce(f"({de})", labels, exponent.labels))

    @staticmethod
    def nonnegative(gen, e, exponent):
        """Source for `e >= 0` as torch reads it for a complex exponent: real and ≥ 0."""
        if not gen.real(exponent):
            return f"({e}.imag == 0) & ({e}.real >= 0)"
        return f"({e} >= 0)"

    def tangent(self, gen, op):
        base, exponent = op.args
        labels = gen.labels(op.out)
        b, e = gen.align(base, labels), gen.align(exponent, labels)
        terms = []
        tb, te = gen.tangent(base), gen.tangent(exponent)
        if tb:
            terms.append(f"{e} * {b} ** ({e} - 1) * {gen.align(base, labels, tb)}")
        if te:
            log = num(const_log(base.value, gen.conj)) if isinstance(base, Const) else f"torch.log({b})"
            terms.append(f"{gen.name(op.out)} * {log} * {gen.align(exponent, labels, te)}")
        return " + ".join(terms) or None


class Emit(Kind):
    """A statement's result: `:=` and `=` name the value, `+=` adds it to the old one."""
    name = "emit"

    def alias(self, program, op):
        rhs = op.args[0] if op.args else None
        if op.info["op"] != "+=" and isinstance(rhs, Ref) and rhs.labels == program.vars[op.out].labels:
            return rhs.var
        return None

    def expr(self, gen, op):
        rhs = op.args[0]
        out = gen.p.vars[op.out]
        shape = tuple(out.shape)
        if isinstance(rhs, Const):
            # (torch.full refuses a number outside a float32's range; a tensor holds it as inf)
            body = f"torch.tensor({num(rhs.value)}, dtype={gen.dtype(op.out)}, device=_device)" + \
                (f".expand({dims(shape)}{',' if len(shape) == 1 else ''})" if shape else "")
        else:
            body = gen.align(rhs, out.labels)
        if op.info["op"] == "+=":
            return f"{gen.name(op.args[1])} + {body}"
        return self.expand(rhs, out, body)

    @staticmethod
    def expand(rhs, out, body):
        if isinstance(rhs, Ref) and set(rhs.labels) != set(out.labels):
            shape = tuple(out.shape)
            body = f"{body}.expand({dims(shape)}{',' if len(shape) == 1 else ''})"
        return body

    def tangent(self, gen, op):
        rhs, out = op.args[0], gen.p.vars[op.out]
        t = gen.tangent(rhs)
        old = gen.tangent(op.args[1]) if op.info["op"] == "+=" else None
        body = t and gen.align(rhs, out.labels, t)
        if old and body:
            return f"{old} + {body}"
        return old or (body and self.expand(rhs, out, body))

    def backward(self, gen, op, g):
        rhs = op.args[0]
        if gen.wants(rhs):
            gen.give(rhs, gen.reduce(g, gen.labels(op.out), rhs.labels))
        if op.info["op"] == "+=" and gen.wants(op.args[1]):
            gen.give(op.args[1], g)
