"""What only derived formulas read, when second order compiles them: the identity δ (an
identity matrix, read like any tensor: at a shift, a fixed position or a gather) and the
indicator 𝟙(a == b) of max and min's gradient. Both are constant: no gradient, no tangent."""
from .base import Kind


class Eye(Kind):
    name = "eye"

    def expr(self, gen, op):
        return f"torch.eye({op.info['n']}, dtype={gen.dtype(op.out)}, device=_device)"

    def backward(self, gen, op, g):
        pass

    def tangent(self, gen, op):
        return None


class IndicatorOf(Kind):
    name = "indicator"

    def expr(self, gen, op):
        labels = gen.labels(op.out)
        a, b = (gen.align(x, labels) for x in op.args)
        return f"({a} == {b}).to({gen.dtype(op.out)})"

    def backward(self, gen, op, g):
        pass

    def tangent(self, gen, op):
        return None
