"""The pairwise product: a (batched) matrix product when something is contracted (a dot
product when everything is), an einsum (outer or elementwise product) otherwise.
The form — batch, strided operand views, copies — is the plan's choice among layout.py's
recipes; layout.py writes each piece's source."""
import math

from .. import layout
from .base import Kind


class Pair(Kind):
    name = "pair"

    # -- forward -----------------------------------------------------------------------
    def forward(self, gen, op):
        r = self.recipe(gen, op)
        if not r:  # nothing contracted: a broadcast multiply
            out = gen.labels(op.out)
            return [(gen.name(op.out), " * ".join(gen.align(x, out) for x in op.args))]
        sizes = gen.sizes(*op.args)
        # Operands a product must copy into matrix layout: copied once, kept for the backward.
        lines = [(f"_m{op.out}{x}", layout.copy_src(gen.name(ref), m, sizes))
                 for x, ref, m in zip("ab", op.args, r.matrices()) if m.copied]
        if self.dot(r):
            text = f"torch.dot({self.flat(gen, op, 0)}, {self.flat(gen, op, 1)})"
        else:
            _, _, m1, m2 = self.operands(gen, op)
            text = layout.result_src(f"{self.mm(r)}({m1}, {m2})", r, sizes, gen.labels(op.out))
        return lines + [(gen.name(op.out), text)]

    def recipe(self, gen, op):
        """The plan's recipe (None: nothing is contracted, einsum does it); a pair made
        elsewhere gets the cheapest one for its labels."""
        if "recipe" in op.info:
            return op.info["recipe"]
        a, b = op.args
        return layout.recipe(a.labels, b.labels, gen.labels(op.out), gen.sizes(a, b),
                             (gen.wants(a), gen.wants(b)))

    @staticmethod
    def mm(r):
        """Matrices are exactly 2-D, or 3-D with one batch dimension."""
        return "torch.bmm" if r.batch else "torch.mm"

    @staticmethod
    def dot(r):
        """A full contraction of two operands read alike: one dot product."""
        return not r.batch and not r.m1.first and not r.m2.second and r.m1.order == r.m2.order

    def flat(self, gen, op, k, use=False):
        """Operand k of a dot product (its copy if it has one, already flat), flattened."""
        ref, m = op.args[k], self.recipe(gen, op).matrices()[k]
        name = f"_m{op.out}{'ab'[k]}" if m.copied else ref
        text = gen.use(name) if use else gen.name(name)
        return text if m.copied else text + ".reshape(-1)"

    def operands(self, gen, op, use=()):
        """The recipe, sizes and the matrices M1, M2 (a copied operand read by its name);
        use: the operands the backward reads (they are saved)."""
        r = self.recipe(gen, op)
        sizes = gen.sizes(*op.args)
        nb = math.prod(sizes[i] for i in r.batch) if r.batch else None
        mats = []
        for x, ref, m in zip("ab", op.args, r.matrices()):
            name = f"_m{op.out}{x}" if m.copied else ref
            text = gen.use(name) if ref in use else gen.name(name)
            mats.append(layout.matrix_src(text, m, sizes, nb, copied=m.copied))
        m1, m2 = mats if r.a_first else mats[::-1]
        return r, sizes, m1, m2

    # -- forward mode ------------------------------------------------------------------
    def tangent(self, gen, op):
        """ȧ ⊗ b + a ⊗ ḃ, each the same (batched) matrix product as the forward's, the
        tangent read as its operand is (a broadcast multiply when nothing is contracted)."""
        a, b = op.args
        out = gen.labels(op.out)
        r = self.recipe(gen, op)
        terms = []
        for k, (x, y) in enumerate(((a, b), (b, a))):
            t = gen.tangent(x)
            if t and not r:
                terms.append(f"{gen.align(x, out, t)} * {gen.align(y, out)}")
            elif t:
                terms.append(self.product(gen, op, r, {k: t}))
        return " + ".join(terms) or None

    def product(self, gen, op, r, given):
        """The forward's product with operand k read from the tensor named given[k] (a
        tangent, laid out as the operand's var is) instead."""
        sizes = gen.sizes(*op.args)
        if self.dot(r):
            flats = [self.tangent_flat(given[k], m, sizes) if k in given else self.flat(gen, op, k)
                     for k, m in enumerate(r.matrices())]
            return f"torch.dot({flats[0]}, {flats[1]})"
        nb = math.prod(sizes[i] for i in r.batch) if r.batch else None
        mats = []
        for k, (ref, m) in enumerate(zip(op.args, r.matrices())):
            if k in given:
                text = f"{layout.copy_src(given[k], m, sizes)}" if m.copied else given[k]
            else:
                text = f"_m{op.out}{'ab'[k]}" if m.copied else gen.name(ref)
            mats.append(layout.matrix_src(text, m, sizes, nb, copied=m.copied))
        m1, m2 = mats if r.a_first else mats[::-1]
        return layout.result_src(f"{self.mm(r)}({m1}, {m2})", r, sizes, gen.labels(op.out))

    @staticmethod
    def tangent_flat(text, m, sizes):
        return layout.copy_src(text, m, sizes) if m.copied else f"{text}.reshape(-1)"

    # -- backward ----------------------------------------------------------------------
    def backward(self, gen, op, g):
        r = self.recipe(gen, op)
        x, y = op.args
        if not r:  # a broadcast multiply: Δx = Δout * conj(y), summed over what x lacks
            out = gen.labels(op.out)
            for mine, other in ((x, y), (y, x)):
                if gen.wants(mine):
                    times = gen.cj(gen.align_used(other, out))
                    gen.give(mine, gen.reduce(f"({g} * {times})", out, mine.labels)
                             if len(set(mine.labels)) == len(mine.labels) else
                             gen.spread([(g, out), (gen.cj(gen.use(other)), other.labels)], mine))
            return
        sizes = gen.sizes(x, y)
        if self.dot(r):  # ΔA = ΔC conj(B), ΔB = ΔC conj(A), each laid out as it is stored
            mats = r.matrices()
            for k, (ref, m) in enumerate(zip((x, y), mats)):
                if gen.wants(ref):
                    other, om = op.args[1 - k], mats[1 - k]
                    if om.copied:  # its flat copy, reshaped
                        text = f"({gen.cj(self.flat(gen, op, 1 - k, use=True))} * {g})"
                        text += layout.reshape_src([sizes[i] for i in m.order], [-1])
                    else:  # stored in the order this operand is read in
                        text = f"{gen.cj(gen.use(other))} * {g}"
                    back = layout.permute_src(m.order, m.stored)
                    gen.give(ref, f"({text}){back}" if back and not om.copied else text + back)
            return
        self.matmul_backward(gen, op, g, r)

    def matmul_backward(self, gen, op, g, r):
        a, b = op.args
        _, sizes, m1, m2 = self.operands(gen, op, use=[p for p, q in ((a, b), (b, a)) if gen.wants(q)])
        gm = layout.grad_src(g, r, sizes, gen.labels(op.out))
        if gm != g and gen.wants(a) and gen.wants(b):  # read twice: copy (if at all) once
            gen.line(f"_gm{op.out} = {gm}")
            gm = f"_gm{op.out}"
        ma, mb = r.matrices()
        # ΔM1 = ΔC M2ᴴ, ΔM2 = M1ᴴ ΔC, each read back in its operand's own layout
        for ref, m, is_m1 in ((a, ma, r.a_first), (b, mb, not r.a_first)):
            if gen.wants(ref):
                other = m2 if is_m1 else m1
                gen.give(ref, layout.operand_grad_src(gm, other, m, is_m1, r, sizes, gen.conj))
