"""fn.hvp and fn.hessian: second order compiled like the first, once per signature.

The Hessian-vector product runs the generated jvp (forward mode, kinds' tangents) of the
compiled gradient cell (calculus/second.py: the cell, then its derived gradients as
statements): forward over reverse, both symbolic, with no autograd graph. The Hessian of a
real cell runs the compiled Hessian cell: every block ∂²L/∂a∂b as statements with two sets
of indices, the δs summed away. For complex inputs torch has no Hessian; here it is the
Hessian-vector product along each real unit direction (a batch of them under torch.func.vmap).
"""
import torch

from ..calculus import second
from ..compiler import codegen, plan
from ..language.errors import NotationValueError
from . import execute
from .arguments import prepare
from .autograd import _fresh_all


def hvp(fn, args, kwargs, v):
    """{name: H·v for that name} for the names v gives a direction for (all in fn.wrt)."""
    _check_scalar(fn, "hvp")
    names = _directions(fn, v)
    tensors, dtype, device = _arguments(fn, args, kwargs)
    given = [_projected(fn, n, _direction(fn, n, v[n], tensors)) for n in names]
    jvp = _jvp(fn, names, names, tensors, dtype, device)
    outs = jvp(*tensors, *given)
    return {n: _projected(fn, n, _as_input(o, tensors[fn.inputs.index(n)])) for n, o in zip(names, outs)}


def hessian(fn, args, kwargs):
    """The Hessian of the last output: one tensor x.shape + x.shape for a one-name wrt, else
    {(a, b): block of shape a.shape + b.shape} for every pair of names in wrt."""
    _check_scalar(fn, "hessian")
    if not fn.wrt:
        raise NotationValueError(f"{fn.name}.hessian(): wrt is empty: there is nothing to "
                                 f"differentiate with respect to")
    tensors, dtype, device = _arguments(fn, args, kwargs)
    blocks = _by_hvp(fn, tensors, dtype, device) if dtype.is_complex else \
        _by_statements(fn, tensors, dtype, device)
    blocks = {(a, b): _block_projected(fn, a, b, h) for (a, b), h in blocks.items()}
    return blocks[(fn.wrt[0], fn.wrt[0])] if len(fn.wrt) == 1 else blocks


def _by_statements(fn, tensors, dtype, device):
    key = ("hessian", dtype, device) + _shapes_key(tensors)
    cache = fn._second
    if key not in cache:
        shapes = [tuple(t.shape) for t in tensors]
        h = second.hessian(fn.cell, fn.wrt, shapes, fn.sizes)
        program = _program(fn, h.cell, tensors, dtype)
        text = codegen.generate(program).text
        forward = execute.run(text, f"{fn.name} hessian", execute.namespace(dtype, device))["forward"]
        cache[key] = (h.keys, forward)
    keys, forward = cache[key]
    outs = _fresh_all(forward(*tensors)[0], tensors)
    return {k: _as_input(o, tensors[fn.inputs.index(k[0])]) for k, o in zip(keys, outs)}


def _by_hvp(fn, tensors, dtype, device):
    """Each block as the Hessian-vector product along every real unit direction (vmap)."""
    blocks = {}
    for b in fn.wrt:
        x = tensors[fn.inputs.index(b)]
        jvp = _jvp(fn, fn.wrt, (b,), tensors, dtype, device)
        n = x.numel()
        basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape)
        outs = torch.func.vmap(lambda d: jvp(*tensors, d))(basis)
        for a, o in zip(fn.wrt, outs):
            shape = tuple(tensors[fn.inputs.index(a)].shape)
            o = _as_input(o, tensors[fn.inputs.index(a)])
            blocks[(a, b)] = o.reshape(n, *shape).movedim(0, -1).reshape(shape + tuple(x.shape))
    return blocks


def _jvp(fn, grads, directions, tensors, dtype, device):
    """The generated jvp of the gradient cell of `grads`, carrying tangents of `directions`."""
    key = ("jvp", tuple(grads), tuple(directions), dtype, device) + _shapes_key(tensors)
    cache = fn._second
    if key not in cache:
        shapes = [tuple(t.shape) for t in tensors]
        g = second.gradient_cell(fn.cell, grads, dtype.is_complex, shapes, fn.sizes)
        program = _program(fn, g.cell, tensors, dtype)
        text = codegen.generate_jvp(program, tuple(n in directions for n in fn.inputs))
        cache[key] = execute.run(text, f"{fn.name} hvp", execute.namespace(dtype, device))["jvp"]
    return cache[key]


def _program(fn, cell, tensors, dtype):
    """The plan of a second-order cell: its outputs only, no gradient of its own."""
    return plan.build(cell, [tuple(t.shape) for t in tensors], set(), fn.sizes,
                      complex=dtype.is_complex, complex_inputs=tuple(t.is_complex() for t in tensors))


def _projected(fn, name, t, dims=(0, 1), conj=True):
    """A symmetric input's part of t on symmetric (Hermitian) matrices, over dims."""
    if name not in fn.cell.symmetric:
        return t
    mirror = t.transpose(*dims)
    return 0.5 * (t + (mirror.conj() if conj and t.is_complex() else mirror))


def _block_projected(fn, a, b, h):
    """The Hessian on symmetric matrices, P H P: a symmetric input's pair of dims on either
    side (the directions' are real unit matrices: their Hermitian part is their symmetric one)."""
    h = _projected(fn, a, h, (0, 1))
    return _projected(fn, b, h, (h.dim() - 2, h.dim() - 1), conj=False)


def _shapes_key(tensors):
    return tuple((tuple(t.shape), t.is_complex()) for t in tensors)


def _arguments(fn, args, kwargs):
    values = fn._bind(args, kwargs)
    return prepare(values, fn.inputs, fn._complex_const, fn.cell.index_inputs)


def _check_scalar(fn, what):
    last = fn.outputs[-1]
    n = fn.cell.ndim[last]
    if n:
        raise NotationValueError(
            f"{fn.name}.{what}() needs a cell whose last output is a scalar: '{last}' has "
            f"{n} ind{'ex' if n == 1 else 'ices'}; sum it in a last statement (s := {last}[...])")


def _directions(fn, v):
    """The names v gives directions for, in the cell's input order; they must be in wrt."""
    if not isinstance(v, dict) or not v:
        raise TypeError(f"{fn.name}.hvp() takes the directions as v={{name: tensor}}, e.g. "
                        f"v={{{fn.wrt[0] if fn.wrt else 'W'!r}: V}}")
    for n in v:
        if n not in fn.wrt:
            raise NotationValueError(f"{fn.name}.hvp(): v names '{n}', which is not in wrt "
                                     f"({', '.join(fn.wrt) or 'none'})")
    return tuple(n for n in fn.inputs if n in v)


def _direction(fn, name, value, tensors):
    """v[name] as a tensor like the input it is a direction of (shape checked)."""
    x = tensors[fn.inputs.index(name)]
    t = torch.as_tensor(value)
    if tuple(t.shape) != tuple(x.shape):
        raise NotationValueError(f"{fn.name}.hvp(): v['{name}'] has shape {tuple(t.shape)}, but "
                                 f"'{name}' has shape {tuple(x.shape)}")
    return t.to(dtype=x.dtype, device=x.device)


def _as_input(out, x):
    """A result for input x in x's kind: real for a real input of a complex cell."""
    return out.real if out.is_complex() and not x.is_complex() else out

