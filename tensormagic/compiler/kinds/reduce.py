"""Explicit reductions max min prod logsumexp over some indices (sum and mean are
contractions), and the elementwise max(a, b), min(a, b).

Gradients: max and min share the gradient equally among the entries that tie for the
extreme (as torch.amax does); prod's gradient is the product of the other entries,
computed by exclusive cumulative products, so it is exact where entries are zero;
logsumexp's is exp(x - y) ≤ 1, stable for any magnitude. max(a, b) gives the gradient
to the larger operand, half to each at a tie (as torch.maximum does).
"""
from ..pysrc import dims as shape_src
from ..pysrc import num
from .base import Kind

_TORCH = {"logsumexp": "torch.logsumexp", "prod": "_prod"}


def _dims(labels, over):
    dims = [str(labels.index(i)) for i in over]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class ReduceOver(Kind):
    name = "reduce"

    def expr(self, gen, op):
        x, kind = op.args[0], op.info["op"]
        dims = _dims(x.labels, op.info["over"])
        if kind in ("max", "min"):
            return f"_extreme({gen.name(x)}, {dims}, {kind == 'max'})"
        return f"{_TORCH[kind]}({gen.name(x)}, {dims})"

    def backward(self, gen, op, g):
        x = op.args[0]
        if not gen.wants(x):
            return
        out, dims = gen.labels(op.out), _dims(x.labels, op.info["over"])
        wide = gen.broadcast(g, out, x.labels)
        xs = gen.use(x)
        kind = op.info["op"]
        if kind == "prod":
            gen.give(x, f"{wide} * {gen.cj(f'_prod_others({xs}, {dims})')}")
            return
        y = gen.broadcast(gen.use(op.out), out, x.labels)
        if kind == "logsumexp":
            gen.give(x, f"{wide} * torch.exp({xs} - {y})")
        else:
            gen.give(x, f"_share({wide}, {xs}, {y}, {dims})")

    def tangent(self, gen, op):
        """Σ over the reduced indices of ẋ times the same weights the gradient uses."""
        x = op.args[0]
        t = gen.tangent(x)
        if not t:
            return None
        out, dims = gen.labels(op.out), _dims(x.labels, op.info["over"])
        xs, kind = gen.name(x), op.info["op"]
        if kind in ("max", "min"):  # the shared weights times ẋ, summed
            y = gen.broadcast(gen.name(op.out), out, x.labels)
            return f"_share({t}, {xs}, {y}, {dims}).sum({dims})"
        if kind == "prod":
            weight = f"_prod_others({xs}, {dims})"
        else:
            y = gen.broadcast(gen.name(op.out), out, x.labels)
            weight = f"torch.exp({xs} - {y})"
        return f"({t} * {weight}).sum({dims})"


class Extreme(Kind):
    """max(a, b) and min(a, b), elementwise (either may be a number)."""
    name = "binary"

    def expr(self, gen, op):
        a, b = op.args
        labels = gen.labels(op.out)
        larger = op.info["func"] == "max"
        for x, c in ((a, b), (b, a)):
            if not hasattr(c, "var"):  # a number: a clamp
                bound = "min" if larger else "max"
                return f"torch.clamp({gen.align(x, labels)}, {bound}={num(c.value)})"
        return f"torch.{'maximum' if larger else 'minimum'}({gen.align(a, labels)}, {gen.align(b, labels)})"

    def backward(self, gen, op, g):
        a, b = op.args
        labels = gen.labels(op.out)
        larger = op.info["func"] == "max"
        sa, sb = gen.align_used(a, labels), gen.align_used(b, labels)
        if gen.wants(a):
            gen.give(a, gen.reduce(f"({g} * _pick({sa}, {sb}, {larger}))", labels, a.labels))
        if gen.wants(b):
            gen.give(b, gen.reduce(f"({g} * _pick({sb}, {sa}, {larger}))", labels, b.labels))

    def tangent(self, gen, op):
        a, b = op.args
        labels = gen.labels(op.out)
        larger = op.info["func"] == "max"
        sa, sb = gen.align(a, labels), gen.align(b, labels)
        terms = []
        for x, mine, other in ((a, sa, sb), (b, sb, sa)):
            t = gen.tangent(x)
            if t:
                terms.append(f"{gen.align(x, labels, t)} * _pick({mine}, {other}, {larger})")
        shape = gen.p.vars[op.out].shape
        if not terms:
            return None
        text = " + ".join(terms)  # a term may lack indices the other operand has
        return f"({text}).expand({shape_src(shape)})" if shape else text


class Pool(Kind):
    """max or min over windows of one tensor read at shifted subscripts (pooling): the windows
    a strided view of it; the gradient shared among each window's extremes goes straight into
    the tensor (kernels.pool_backward), with no gradient of the windows' size between."""
    name = "pool"

    @staticmethod
    def geometry(op):
        info = op.info
        dims = _dims(info["window"], info["over"])
        return f"{tuple(info['shape'])!r}, {info['coefs']!r}, {info['offsets']!r}, {dims}, " \
               f"{info['op'] == 'max'}"

    def expr(self, gen, op):
        return f"_pool({gen.name(op.args[0])}, {self.geometry(op)})"

    def backward(self, gen, op, g):
        x = op.args[0]
        if gen.wants(x):
            gen.give(x, f"_pool_backward({g}, {gen.use(x)}, {gen.use(op.out)}, {self.geometry(op)})")

    def tangent(self, gen, op):
        """Σ over each window of ẋ's window times the shared weights."""
        t = gen.tangent(op.args[0])
        if not t:
            return None
        info = op.info
        dims = _dims(info["window"], info["over"])
        view = f"{tuple(info['shape'])!r}, {info['coefs']!r}, {info['offsets']!r}"
        y = gen.broadcast(gen.name(op.out), gen.labels(op.out), info["window"])
        return (f"_share(_view({t}, {view}), _view({gen.name(op.args[0])}, {view}), {y}, {dims})"
                f".sum({dims})")
