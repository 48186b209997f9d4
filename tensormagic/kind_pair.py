"""The pairwise product: a (batched) matrix product when something is contracted, an
einsum (outer or elementwise product) otherwise. Layouts are layout.py's recipes."""
import math

from . import layout
from .kinds import Kind, register
from .pysrc import eq, shape as shape_src, transpose


def _matrix_shape(sizes, batch, rows, cols):
    """The (batch ×) rows × cols shape of a tensor read as a (batched) matrix."""
    shape = [math.prod(sizes[i] for i in rows), math.prod(sizes[i] for i in cols)]
    return ([math.prod(sizes[i] for i in batch)] if batch else []) + shape


def _plain(batch, first, second):
    """A tensor with these index groups is already a (batched) matrix: no reshape needed."""
    return batch <= 1 and len(first) == 1 and len(second) == 1


def _mm(recipe):
    """Matrices are exactly 2-D, or 3-D with one batch dimension."""
    return "torch.bmm" if recipe.batch else "torch.mm"


@register
class Pair(Kind):
    name = "pair"

    # -- forward -----------------------------------------------------------------------
    def forward(self, gen, op):
        r = self.recipe(gen, op)
        if not r:
            a = op.args
            text = f"torch.einsum('{eq([x.labels for x in a], gen.labels(op.out))}', " \
                   f"{', '.join(gen.name(x) for x in a)})"
            return [(gen.name(op.out), text)]
        # Operands a product must copy into matrix layout: copied once, kept for the backward.
        lines = [(name, text) for name, text in self.copies(gen, op) if name]
        _, sizes, am, bm = self.operands(gen, op)
        text = f"{_mm(r)}({am}, {bm})"
        if not _plain(len(r.batch), r.left, r.right):
            text += f".reshape({shape_src(sizes, r.natural)})"
        labels = gen.labels(op.out)
        if tuple(labels) != r.natural:
            text += f".permute({', '.join(str(r.natural.index(i)) for i in labels)})"
        return lines + [(gen.name(op.out), text)]

    def recipe(self, gen, op):
        """The matmul recipe, or None when nothing is contracted (einsum does it)."""
        a, b = op.args
        r = layout.recipe(a.labels, b.labels, gen.labels(op.out))
        return r if r.contracted else None

    def copies(self, gen, op):
        """(temporary name or None, matrix expression) of each operand."""
        a, b = op.args
        r = self.recipe(gen, op)
        sizes = gen.sizes(a, b)
        am = self.matrix(gen, a, r.a_order, r.a_perm, r.left, r.contracted, r.a_transposed, sizes)
        bm = self.matrix(gen, b, r.b_order, r.b_perm, r.contracted, r.right, r.b_transposed, sizes)
        return [(f"_m{op.out}a" if r.a_perm is not None else None, am),
                (f"_m{op.out}b" if r.b_perm is not None else None, bm)]

    def matrix(self, gen, ref, order, perm, first, second, transposed, sizes):
        """ref as a (batch ×) first × second matrix (transposed: stored second × first)."""
        text = gen.name(ref)
        if perm is not None:
            text += f".permute({', '.join(map(str, perm))})"
        batch = order[:len(order) - len(first) - len(second)]
        shape = _matrix_shape(sizes, batch, *((second, first) if transposed else (first, second)))
        if perm is not None or not _plain(len(batch), first, second):
            text += f".reshape({', '.join(map(str, shape))})"
        return text + ".mT" if transposed else text

    def operands(self, gen, op, use=()):
        """The recipe, sizes, and the two matrix expressions (a copied one by its name);
        use: the operands the backward reads (they are saved)."""
        a, b = op.args
        mats = []
        for ref, (temp, text) in zip((a, b), self.copies(gen, op)):
            read = ref in use
            if temp:
                mats.append(gen.use(temp) if read else temp)
            else:
                if read:
                    gen.use(ref)
                mats.append(text)
        return (self.recipe(gen, op), gen.sizes(a, b), *mats)

    # -- forward mode ------------------------------------------------------------------
    def tangent(self, gen, op):
        """ȧ ⊗ b + a ⊗ ḃ, each an einsum."""
        a, b = op.args
        equation = eq([a.labels, b.labels], gen.labels(op.out))
        terms = []
        for x, y, first in ((a, b, True), (b, a, False)):
            t = gen.tangent(x)
            if t:
                pair = (t, gen.name(y)) if first else (gen.name(y), t)
                terms.append(f"torch.einsum('{equation}', {pair[0]}, {pair[1]})")
        return " + ".join(terms) or None

    # -- backward ----------------------------------------------------------------------
    def backward(self, gen, op, g):
        if self.recipe(gen, op):
            self.matmul_backward(gen, op, g)
            return
        x, y = op.args
        out = gen.labels(op.out)
        if gen.wants(x):
            gen.give(x, gen.spread([(g, out), (gen.cj(gen.use(y)), y.labels)], x))
        if gen.wants(y):
            gen.give(y, gen.spread([(g, out), (gen.cj(gen.use(x)), x.labels)], y))

    def matmul_backward(self, gen, op, g):
        a, b = op.args
        labels = gen.labels(op.out)
        r, sizes, am, bm = self.operands(gen, op, use=[x for x, y in ((a, b), (b, a)) if gen.wants(y)])
        gm = g
        if tuple(labels) != r.natural:
            gm += f".permute({', '.join(str(labels.index(i)) for i in r.natural)})"
        shape = _matrix_shape(sizes, r.batch, r.left, r.right)
        if gm != g or not _plain(len(r.batch), r.left, r.right):
            gm += f".reshape({', '.join(map(str, shape))})"
            if gen.wants(a) and gen.wants(b):  # read twice: copy (if at all) once
                gen.line(f"_gm{op.out} = {gm}")
                gm = f"_gm{op.out}"
        c = ".conj()" if gen.conj else ""
        mm = _mm(r)
        if gen.wants(a):
            # ΔA = ΔC Bᴴ, read in A's own layout
            prod = f"{mm}({bm}{c}, {transpose(gm)})" if r.a_transposed else f"{mm}({gm}, {transpose(bm)}{c})"
            gen.give(a, self.unlayout(prod, r.a_order, r.a_perm, sizes,
                                      _plain(len(r.batch), r.left, r.contracted)))
        if gen.wants(b):
            # ΔB = Aᴴ ΔC, read in B's own layout
            prod = f"{mm}({transpose(gm)}, {am}{c})" if r.b_transposed else f"{mm}({transpose(am)}{c}, {gm})"
            gen.give(b, self.unlayout(prod, r.b_order, r.b_perm, sizes,
                                      _plain(len(r.batch), r.contracted, r.right)))

    @staticmethod
    def unlayout(text, order, perm, sizes, plain=False):
        if perm is not None or not plain:
            text += f".reshape({shape_src(sizes, order)})"
        if perm is not None:
            inverse = [perm.index(k) for k in range(len(perm))]
            text += f".permute({', '.join(map(str, inverse))})"
        return text
