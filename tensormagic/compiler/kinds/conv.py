"""A product that is a convolution (convs.py) runs as torch's convolution, forward and
backward (aten.convolution_backward through kernels.conv_backward, itself differentiable):
no window is copied."""
import math

from ..pysrc import dims
from .base import Kind


def _size(shape):
    return math.prod(shape) if shape else 1


def _permute(text, perm):
    return text if list(perm) == list(range(len(perm))) else f"{text}.permute({dims(perm)})"


def _reshape(text, have, want):
    return text if list(have) == list(want) else f"{text}.reshape({dims(want)})"


class Convolution(Kind):
    name = "conv"

    def layout(self, gen, op, names=None):
        """Source of x and w (or of the tensors named `names`: their tangents) laid out as
        (N, C, *L) and (O, C, *K)."""
        c = op.info["conv"]
        x, w = op.args
        xname, wname = names or (gen.name(x), gen.name(w))
        xs, ws = gen.p.vars[x.var].shape, gen.p.vars[w.var].shape
        n = len(c.positions)
        xp = [xs[d] for d in c.x_perm]
        lead = xp[:len(xp) - n]
        nb = len(c.batch)
        lengths = [size - off for size, off in zip(xp[len(xp) - n:], c.offsets)]
        xt = _permute(xname, c.x_perm)
        if any(c.offsets):
            xt += "[" + ", ".join([":"] * len(lead) + [f"{off}:" for off in c.offsets]) + "]"
        x_shape = (_size(lead[:nb]), _size(lead[nb:]), *lengths)
        wp = [ws[d] for d in c.w_perm]
        no = len(c.outs)
        w_shape = (_size(wp[:no]), _size(wp[no:len(wp) - n]), *wp[len(wp) - n:])
        wt = _reshape(_permute(wname, c.w_perm), wp, w_shape)
        return _reshape(xt, lead + lengths, x_shape), wt, lead, lengths, wp

    def forward(self, gen, op):
        xt, wt, _, _, _ = self.layout(gen, op)
        name = f"_c{op.out}"
        return [(f"{name}x", xt), (f"{name}w", wt), (gen.name(op.out), self.call(gen, op, name + "x", name + "w"))]

    def call(self, gen, op, xm, wm):
        """The convolution of two laid-out operands, as op.out's labels."""
        c = op.info["conv"]
        natural = c.batch + c.outs + c.positions
        shape = [gen.p.vars[op.out].shape[gen.labels(op.out).index(i)] for i in natural]
        text = f"torch.nn.functional.conv{len(c.positions)}d({xm}, {wm}, None, {c.stride}, 0, {c.dilation})"
        text = _reshape(text, self.conv_shape(c, shape), shape)
        labels = gen.labels(op.out)
        if tuple(labels) != natural:
            text += f".permute({dims(natural.index(i) for i in labels)})"
        return text

    def tangent(self, gen, op):
        """Bilinear: conv(ẋ, w) + conv(x, ẇ)."""
        x, w = op.args
        tx, tw = gen.tangent(x), gen.tangent(w)
        name = f"_c{op.out}"
        terms = []
        if tx:
            terms.append(self.call(gen, op, self.layout(gen, op, (tx, tw or gen.name(w)))[0], name + "w"))
        if tw:
            terms.append(self.call(gen, op, name + "x", self.layout(gen, op, (tx or gen.name(x), tw))[1]))
        return " + ".join(terms) or None

    @staticmethod
    def conv_shape(c, shape):
        """The (N, O, *S) shape torch's convolution gives for a result of this natural shape."""
        nb, no = len(c.batch), len(c.outs)
        return (_size(shape[:nb]), _size(shape[nb:nb + no]), *shape[nb + no:])

    def backward(self, gen, op, g):
        c = op.info["conv"]
        x, w = op.args
        _, _, lead, lengths, wp = self.layout(gen, op)
        name = f"_c{op.out}"
        labels = gen.labels(op.out)
        natural = c.batch + c.outs + c.positions
        gt = g if tuple(labels) == natural else f"{g}.permute({dims(labels.index(i) for i in natural)})"
        out_shape = [gen.p.vars[op.out].shape[labels.index(i)] for i in natural]
        gshape = self.conv_shape(c, out_shape)
        mask = (gen.wants(x), gen.wants(w))
        gen.line(f"_g{op.out}x, _g{op.out}w = _conv_backward({_reshape(gt, out_shape, gshape)}, "
                 f"{gen.use(name + 'x')}, {gen.use(name + 'w')}, {c.stride}, {c.dilation}, {mask})")
        if gen.wants(x):
            text = _reshape(f"_g{op.out}x", self.conv_shape_x(lead, lengths, len(c.batch)), lead + lengths)
            if any(c.offsets):
                pads = [p for off in reversed(c.offsets) for p in (off, 0)]
                text = f"torch.nn.functional.pad({text}, {pads})"
            inverse = [c.x_perm.index(d) for d in range(len(c.x_perm))]
            gen.give(x, _permute(text, inverse))
        if gen.wants(w):
            inverse = [c.w_perm.index(d) for d in range(len(c.w_perm))]
            no, n = len(c.outs), len(c.positions)
            w_shape = (_size(wp[:no]), _size(wp[no:len(wp) - n]), *wp[len(wp) - n:])
            gen.give(w, _permute(_reshape(f"_g{op.out}w", w_shape, wp), inverse))

    @staticmethod
    def conv_shape_x(lead, lengths, nb):
        return (_size(lead[:nb]), _size(lead[nb:]), *lengths)
