"""Reads at computed positions: strided views (shifted, fixed or narrowed subscripts:
x[i+a], x[2*i+a], x[b,-1]) and gathers by integer tensors (W[tok[b],d]).

A view copies nothing; its gradient adds the incoming gradient back at the positions
read (positions read more than once, as by a convolution's windows, accumulate). A
gather checks its index tensors at call time and its gradient accumulates repeated
indices; index tensors get no gradient.
"""
from ..pysrc import dims, num
from .base import Kind


class View(Kind):
    name = "view"

    def expr(self, gen, op):
        shape = tuple(gen.p.vars[op.out].shape)
        return f"_view({gen.name(op.args[0])}, {shape!r}, {op.info['coefs']!r}, {op.info['offsets']!r})"

    def backward(self, gen, op, g):
        x = op.args[0]
        if gen.wants(x):
            shape = tuple(gen.p.vars[x.var].shape)
            gen.give(x, f"_unview({g}, {shape!r}, {op.info['coefs']!r}, {op.info['offsets']!r})")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])  # linear: the same positions of the tangent
        if not t:
            return None
        shape = tuple(gen.p.vars[op.out].shape)
        return f"_view({t}, {shape!r}, {op.info['coefs']!r}, {op.info['offsets']!r})"


class Pad(Kind):
    """A tensor with zeros p places on either side of some dims (a padded tensor, read at
    shifted subscripts); its gradient is the middle of the incoming one."""
    name = "pad"

    def expr(self, gen, op, text=None):
        pads = [p for k in reversed(op.info["pads"]) for p in (k, k)]
        while pads and not pads[-1]:
            pads = pads[:-2]
        return f"torch.nn.functional.pad({text or gen.name(op.args[0])}, {pads})"

    def backward(self, gen, op, g):
        x = op.args[0]
        if gen.wants(x):
            cut = ", ".join(f"{p}:-{p}" if p else ":" for p in op.info["pads"])
            gen.give(x, f"{g}[{cut}]")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        return t and self.expr(gen, op, t)


class Gather(Kind):
    name = "gather"

    def forward(self, gen, op):
        lines = [(self.index_name(op, d), self.index_expr(gen, op, d, spec))
                 for d, spec in enumerate(op.info["dims"])]
        picks = ", ".join(name for name, _ in lines)
        return lines + [(gen.name(op.out), f"{gen.name(op.args[0])}[({picks},)]")]

    @staticmethod
    def index_name(op, d):
        return f"_i{op.out}_{d}"

    def index_expr(self, gen, op, d, spec):
        labels = gen.labels(op.out)
        size = gen.p.vars[op.args[0].var].shape[d]
        if spec[0] == "gather":
            ref = op.args[spec[1]]
            checked = f"_index({gen.name(ref)}, {spec[2]!r}, {op.info['of']!r}, {d}, {size})"
            return gen.broadcast(checked, ref.labels, labels)
        _, terms, offset = spec
        sizes = dict(zip(labels, gen.p.vars[op.out].shape))
        parts = []
        for c, i in terms:
            steps = gen.broadcast(f"torch.arange({sizes[i]}, device=_device)", (i,), labels)
            parts.append(steps if c == 1 else f"{c} * {steps}")
        if not parts:  # a fixed position
            return f"torch.tensor({offset}, device=_device)"
        return " + ".join(parts + ([str(offset)] if offset else []))

    def backward(self, gen, op, g):
        x = op.args[0]
        if not gen.wants(x):
            return
        shape = tuple(gen.p.vars[x.var].shape)
        picks = ", ".join(gen.use(self.index_name(op, d)) for d in range(len(op.info["dims"])))
        gen.give(x, f"{g}.new_zeros({shape!r}).index_put(({picks},), {g}, accumulate=True)")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])  # linear: the tangent at the same positions
        if not t:
            return None
        picks = ", ".join(self.index_name(op, d) for d in range(len(op.info["dims"])))
        return f"{t}[({picks},)]"


class Scatter(Kind):
    """A scatter on the left (H[tok[b], d] := / += X[b,d]): the right side added into zeros or
    into the old value at the positions the index tensors give, repeated ones accumulating
    (index_put with accumulate). Its gradient is a gather of the incoming one; its tangent the
    same scatter of the tangent."""
    name = "scatter"

    def forward(self, gen, op):
        lines = [(self.index_name(op, d), self.index_expr(gen, op, d, spec))
                 for d, spec in enumerate(op.info["dims"])]
        return lines + [(gen.name(op.out), self.put(gen, op, self.base(gen, op, gen.name), gen.name(op.args[0])
                                                    if hasattr(op.args[0], "var") else None))]

    @staticmethod
    def index_name(op, d):
        return f"_s{op.out}_{d}"

    def index_expr(self, gen, op, d, spec):
        labels, shape = op.info["labels"], gen.p.vars[op.out].shape
        if spec[0] == "gather":
            ref = op.args[spec[1]]
            checked = f"_index({gen.name(ref)}, {spec[2]!r}, {op.info['of']!r}, {d}, {shape[d]})"
            return gen.broadcast(checked, ref.labels, labels)
        return gen.broadcast(f"torch.arange({shape[d]}, device=_device)", (spec[1],), labels)

    def base(self, gen, op, name):
        """The tensor the values are added into: zeros, or the old value."""
        if op.info["add"]:
            return name(op.args[-1])
        return f"torch.zeros({dims(gen.p.vars[op.out].shape)}, dtype={gen.dtype(op.out)}, device=_device)"

    def put(self, gen, op, base, values, picks=None):
        """base with `values` (laid out as the right side; None: its constant) added at the
        scattered positions."""
        rhs, labels = op.args[0], op.info["labels"]
        full = dims(op.info["sizes"])
        if values is None:
            values = f"torch.tensor({num(rhs.value)}, dtype={gen.dtype(op.out)}, device=_device)"
        else:
            values = gen.broadcast(values, rhs.labels, labels)
        picks = picks or ", ".join(self.index_name(op, d) for d in range(len(op.info["dims"])))
        return f"{base}.index_put(({picks},), {values}.expand({full}), accumulate=True)"

    def backward(self, gen, op, g):
        rhs = op.args[0]
        if op.info["add"] and gen.wants(op.args[-1]):
            gen.give(op.args[-1], g)
        if gen.wants(rhs):
            picks = ", ".join(gen.use(self.index_name(op, d)) for d in range(len(op.info["dims"])))
            gen.give(rhs, gen.reduce(f"{g}[({picks},)]", op.info["labels"], rhs.labels))

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        old = gen.tangent(op.args[-1]) if op.info["add"] else None
        if not t:
            return old
        base = old or f"torch.zeros({dims(gen.p.vars[op.out].shape)}, dtype={gen.dtype(op.out)}, device=_device)"
        return self.put(gen, op, base, t)
