"""The recognised forms (lowering.py), each one fused torch primitive forward and its own
backward and tangent: softmax, log-softmax, cross-entropy, layer norm, GELU, SiLU.

Every backward here is built of differentiable torch ops (torch's own backward kernels, which
have derivatives themselves), so a backward differentiated again (gradgradcheck, Hessian-vector
products) stays exact. The tangent (jvp) is written out from the derivative of each form.
"""
from ..pysrc import num
from .base import Kind


def _dim(op):
    return op.info["dim"]


class _Normalised(Kind):
    """A torch primitive along one index (op.info["dim"]) whose backward is torch's own kernel
    reading the output: softmax, log-softmax."""
    call = backward_call = None

    def expr(self, gen, op):
        return f"{self.call}({gen.name(op.args[0])}, {_dim(op)})"

    def backward(self, gen, op, g):
        y = gen.use(op.out)
        gen.give(op.args[0], f"{self.backward_call}({g}, {y}, {_dim(op)}, {y}.dtype)")


class Softmax(_Normalised):
    """torch.softmax along one index; Δx = y (Δy - Σ y Δy), by torch's own kernel."""
    name, call, backward_call = "softmax", "torch.softmax", "torch._softmax_backward_data"

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        y = gen.name(op.out)
        return t and f"{y} * ({t} - ({y} * {t}).sum({_dim(op)}, keepdim=True))"


class LogSoftmax(_Normalised):
    """torch.log_softmax along one index; Δx = Δy - softmax Σ Δy, by torch's own kernel."""
    name, call, backward_call = "log_softmax", "torch.log_softmax", "torch._log_softmax_backward_data"

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        y = gen.name(op.out)
        return t and f"{t} - (torch.exp({y}) * {t}).sum({_dim(op)}, keepdim=True)"


class CrossEntropy(Kind):
    """logsumexp[c](z) - z[.., y, ..] per sample: log_softmax once (kept for the backward),
    then the targets' entries; Δz = (softmax(z) - onehot(y)) Δout, in one pass and a scatter.
    The targets are checked like any gather's index tensor."""
    name = "cross_entropy"

    def forward(self, gen, op):
        z, y = op.args
        d = _dim(op)
        size = gen.p.vars[z.var].shape[d]
        ls, target = self.names(op)
        return [(ls, f"torch.log_softmax({gen.name(z)}, {d})"),
                (target, f"_index({gen.name(y)}, {op.info['targets']!r}, {op.info['logits']!r}, "
                         f"{d}, {size}).unsqueeze({d})"),
                (gen.name(op.out), f"-{ls}.gather({d}, {target}).squeeze({d})")]

    @staticmethod
    def names(op):
        return f"_ls{op.out}", f"_t{op.out}"

    def backward(self, gen, op, g):
        ls, target = self.names(op)
        gen.give(op.args[0], f"_cross_entropy_backward({g}, {gen.use(ls)}, {gen.use(target)}, "
                             f"{_dim(op)})")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        ls, target = self.names(op)
        d = _dim(op)
        return t and f"(torch.exp({ls}) * {t}).sum({d}) - {t}.gather({d}, {target}).squeeze({d})"


class LayerNorm(Kind):
    """torch.native_layer_norm over the last index (with its gain and bias, if any); the
    backward is torch's native_layer_norm_backward, from the mean and 1/std kept."""
    name = "layer_norm"

    def forward(self, gen, op):
        x, gain, bias = self.operands(op)
        shape = [gen.p.vars[x.var].shape[-1]]
        mean, rstd = self.names(op)
        args = f"{gen.name(x)}, {shape}, {self.opt(gen, gain)}, {self.opt(gen, bias)}, " \
               f"{num(op.info['eps'])}"
        return [(f"{gen.name(op.out)}, {mean}, {rstd}", f"torch.native_layer_norm({args})")]

    @staticmethod
    def names(op):
        return f"_mean{op.out}", f"_rstd{op.out}"

    @staticmethod
    def operands(op):
        x, *rest = op.args
        gain = rest.pop(0) if op.info["gain"] else None
        bias = rest.pop(0) if op.info["bias"] else None
        return x, gain, bias

    @staticmethod
    def opt(gen, ref, use=False):
        if ref is None:
            return "None"
        return gen.use(ref) if use else gen.name(ref)

    def backward(self, gen, op, g):
        x, gain, bias = self.operands(op)
        refs = (x, gain, bias)
        mask = [ref is not None and gen.wants(ref) for ref in refs]
        if not any(mask):
            return
        mean, rstd = self.names(op)
        shape = [gen.p.vars[x.var].shape[-1]]
        out = f"_dln{op.out}"
        gen.line(f"{out} = torch.ops.aten.native_layer_norm_backward({g}, {gen.use(x)}, {shape}, "
                 f"{gen.use(mean)}, {gen.use(rstd)}, {self.opt(gen, gain, True)}, "
                 f"{self.opt(gen, bias, True)}, {mask})")
        for k, ref in enumerate(refs):
            if mask[k]:
                gen.give(ref, f"{out}[{k}]")

    def tangent(self, gen, op):
        """x̂ = (x - mean)·rstd; dx̂ = rstd·(ẋ - mean(ẋ)) - x̂·mean(x̂·ẋ)·rstd;
        ẏ = dx̂·g + x̂·ġ + ḣ."""
        x, gain, bias = self.operands(op)
        mean, rstd = self.names(op)
        hat = f"(({gen.name(x)} - {mean}) * {rstd})"
        terms = []
        t = gen.tangent(x)
        if t:
            dhat = (f"({rstd} * ({t} - {t}.mean(-1, keepdim=True) - {hat} * ({hat} * {t})"
                    f".mean(-1, keepdim=True)))")
            terms.append(f"{dhat} * {gen.name(gain)}" if gain is not None else dhat)
        for ref, text in ((gain, hat), (bias, None)):
            tr = gen.tangent(ref) if ref is not None else None
            if tr:
                terms.append(f"{text} * {tr}" if text else tr)
        if not terms:
            return None
        shape = ", ".join(map(str, gen.p.vars[op.out].shape))
        return f"({' + '.join(terms)}).expand({shape})"


class Gelu(Kind):
    """torch's GELU (erf, or its tanh approximation); Δx by torch's gelu_backward."""
    name = "gelu"

    def expr(self, gen, op):
        return f"torch.nn.functional.gelu({gen.name(op.args[0])}, approximate={op.info['approximate']!r})"

    def backward(self, gen, op, g):
        x = op.args[0]
        gen.give(x, f"torch.ops.aten.gelu_backward({g}, {gen.use(x)}, "
                    f"approximate={op.info['approximate']!r})")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        return t and f"torch.ops.aten.gelu_backward({t}, {gen.name(op.args[0])}, " \
                     f"approximate={op.info['approximate']!r})"


class Silu(Kind):
    """x·sigmoid(x) as torch's SiLU; Δx by torch's silu_backward (kernels.silu_backward)."""
    name = "silu"

    def expr(self, gen, op):
        return f"torch.nn.functional.silu({gen.name(op.args[0])})"

    def backward(self, gen, op, g):
        x = op.args[0]
        gen.give(x, f"_silu_backward({g}, {gen.use(x)})")

    def tangent(self, gen, op):
        t = gen.tangent(op.args[0])
        return t and f"_silu_backward({t}, {gen.name(op.args[0])})"
