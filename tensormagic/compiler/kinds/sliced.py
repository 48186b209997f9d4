"""A sliced product: the same product over chunks of some indices, one slice at a time
(compiler/slicing.py chooses the chunks). Each slice runs a planned inner program (its own
pairwise contractions on the chunks' shapes), generated as two functions beside the forward
and backward; the loops, the sums and the blocks are the run-time helpers _sliced_forward and
_sliced_backward (compiler/slicekernels.py). The forward keeps nothing of a slice: the
backward recomputes each slice's intermediates before its gradients, so that the memory one
slice holds bounds the backward too."""
from .base import Kind


class Sliced(Kind):
    name = "sliced"

    def forward(self, gen, op):
        inner, _ = gen.define(op)
        s = op.info["slices"]
        cut = ", ".join(f"{i} {n // c}×{c}" for i, n, c in zip(s.labels, s.sizes, s.chunks))
        text = self.call(gen, op, inner, [gen.name(a) for a in op.args])
        return [(gen.name(op.out), f"{text}  # {s.count:,} slices: {cut}")]

    def call(self, gen, op, inner, names):
        return f"_sliced_forward({inner}, ({''.join(n + ', ' for n in names)}), {self.spec(gen, op)})"

    @staticmethod
    def spec(gen, op):
        """The slicing as literals: (size, chunk) per sliced index, each operand's and the
        result's sliced dims, the result's shape, whether slices go round the ranks."""
        s = op.info["slices"]
        chunks = tuple(zip(s.sizes, s.chunks))
        return f"chunks={chunks!r}, dims={s.operands!r}, out={s.out!r}, " \
               f"shape={tuple(gen.p.vars[op.out].shape)!r}, spread={s.spread!r}"

    def backward(self, gen, op, g):
        forward, backward = gen.define(op)
        names = "".join(gen.use(a) + ", " for a in op.args)
        wants = tuple(gen.wants(a) for a in op.args)
        gen.line(f"_s{op.out} = _sliced_backward({forward}, {backward}, ({names}), {g}, {wants!r}, "
                 f"{self.spec(gen, op)})")
        for k, a in enumerate(op.args):
            if wants[k]:
                gen.give(a, f"_s{op.out}[{k}]")

    def tangent(self, gen, op):
        """The product is linear in each operand: Σ_k the sliced product with operand k's
        tangent in its place (sliced as the forward is)."""
        inner, _ = gen.define(op)
        terms = []
        for k, a in enumerate(op.args):
            t = gen.tangent(a)
            if t:
                names = [t if j == k else gen.name(b) for j, b in enumerate(op.args)]
                terms.append(self.call(gen, op, inner, names))
        return " + ".join(terms) or None
