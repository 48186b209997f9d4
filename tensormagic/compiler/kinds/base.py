"""Each op kind's calculus in one place: its forward source, its backward source, what it saves.

A kind is a small class; compiler/kinds/__init__.py lists every kind in KINDS under the name
program.Op.kind carries.
`forward(gen, op)` returns the assignments computing op.out; `backward(gen, op, g)`
hands each differentiable operand its share of the incoming gradient `g` (source text)
through gen.give. A kind saves exactly the forward values its backward reads through
gen.use: nothing else is kept for the backward. `tangent(gen, op)` is forward mode (jvp):
source for op.out's tangent from its operands' tangents (gen.tangent(ref): a name, or None
where it is zero), None where op.out's tangent is zero.
Adding a kind means one class in a module of this package and its entry in KINDS.
"""


class Kind:
    name = None
    leaf = False       # an input: nothing to compute, its gradient is the cell's result

    def forward(self, gen, op):
        return [(gen.name(op.out), self.expr(gen, op))]

    def expr(self, gen, op):
        raise NotImplementedError(self.name)

    def backward(self, gen, op, g):
        raise NotImplementedError(self.name)

    def tangent(self, gen, op):
        raise NotImplementedError(self.name)

    def alias(self, program, op):
        """The var op.out is merely another name for (None: a value of its own)."""
        return None
