"""Source → a differentiable torch callable: argument checks, compile cache, autograd glue."""
import linecache
from dataclasses import dataclass
from itertools import count

import numpy as np
import torch

from . import codegen, kernels, plan, render
from .errors import NotationValueError

_ids = count()
DEFAULT_SIZE = 4


@dataclass
class Compiled:
    """One (shapes, dtype, device, gradients wanted) signature, planned and compiled."""
    forward: object
    backward: object
    source: str
    program: object
    saved: tuple
    wanted: tuple          # per input: is its gradient computed
    low_memory: bool = False


def compile_program(program, label, low_memory, dtype, device, comments=None):
    source = codegen.generate(program, comments)
    filename = f"<tensorgrad {label} #{next(_ids)}>"
    linecache.cache[filename] = (len(source.text), None, source.text.splitlines(True), filename)
    namespace = {"torch": torch, "_dtype": dtype, "_rdtype": dtype.to_real(), "_device": device,
                 **kernels.NAMESPACE}
    exec(compile(source.text, filename, "exec"), namespace)
    wanted = tuple(program.vars[v].needs for v in program.inputs)
    return Compiled(namespace["forward"], namespace["backward"], source.text, program,
                    source.saved, wanted, low_memory)


class _Apply(torch.autograd.Function):
    """The one autograd wrapper: forward and backward are the generated functions."""

    @staticmethod
    def forward(ctx, compiled, *args):
        outs, saved = compiled.forward(*args)
        outs = _fresh_all(outs, args, [t for t in saved if all(t is not o for o in outs)])
        ctx.compiled = compiled
        ctx.n_args = len(args)
        if compiled.low_memory:
            ctx.save_for_backward(*args)
            return outs
        kept = list(args) + list(outs)
        ctx.slots = [next((k for k, t in enumerate(kept) if t is s), None) for s in saved]
        ctx.others = [None if k is not None else s for k, s in zip(ctx.slots, saved)]
        ctx.save_for_backward(*kept)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        compiled = ctx.compiled
        kept = ctx.saved_tensors
        args = kept[:ctx.n_args]
        if compiled.low_memory or torch.is_grad_enabled():
            # Recompute the intermediates: to save memory, or to let torch see how they depend
            # on the inputs when this backward is itself differentiated.
            args = tuple(a if w else a.detach() for a, w in zip(args, compiled.wanted))
            saved = compiled.forward(*args)[1]
        else:
            saved = [kept[k] if k is not None else o for k, o in zip(ctx.slots, ctx.others)]
        return (None, *compiled.backward(saved, grads))


def _fresh_all(outs, args, saved=()):
    """Outputs are contiguous and alias no input, no other output and nothing the backward
    reads: users may write into them. A view of a fresh result (a reshape) is kept as it is."""
    fresh = []
    taken = [_root(t) for t in args] + [_root(t) for t in saved]
    for out in outs:
        root = _root(out)
        if not out.is_contiguous() or any(root is t for t in taken) or \
                any(root is _root(f) for f in fresh):
            out = out.clone(memory_format=torch.contiguous_format)
        fresh.append(out)
    return tuple(fresh)


def _root(t):
    return t._base if t._base is not None else t


def prepare(values, names, has_complex_const=False, index_names=()):
    """Arguments → tensors on one device (NumPy arrays and numbers converted), of the dtype all
    inputs promote to; in a complex program a real input stays real (its real counterpart),
    as it does in torch; index tensors (index_names) keep their integer dtype."""
    if index_names:
        return _prepare_with_indices(values, names, has_complex_const, index_names)
    if values and all(isinstance(v, torch.Tensor) for v in values):
        # The common case, checked cheaply: floating tensors of one dtype on one device.
        dtype, device = values[0].dtype, values[0].device
        if (dtype.is_floating_point or dtype.is_complex) and (dtype.is_complex or not has_complex_const) \
                and all(v.dtype == dtype and v.device == device for v in values):
            return values, dtype, device
    tensors, device = [], None
    for name, v in zip(names, values):
        if isinstance(v, np.ndarray) or (isinstance(v, np.generic) and not isinstance(v, np.number)):
            v = torch.from_numpy(np.asarray(v))
        elif isinstance(v, np.number):
            v = v.item()
        if isinstance(v, torch.Tensor):
            if device is None or (v.dim() and device != v.device):
                if device is not None and any(t.dim() and t.device != v.device for t in tensors
                                              if isinstance(t, torch.Tensor)):
                    raise NotationValueError(f"'{name}' is on {v.device} but other inputs are on {device}")
                device = v.device if v.dim() or device is None else device
        elif not isinstance(v, (int, float, complex)) or isinstance(v, bool):
            raise TypeError(f"input '{name}' must be a tensor, an array or a number, "
                            f"not {type(v).__name__}")
        tensors.append(v)
    dtype = _common_dtype(tensors, has_complex_const)
    device = device or torch.device("cpu")
    out = []
    for v in tensors:
        is_complex = isinstance(v, complex) or (isinstance(v, torch.Tensor) and v.is_complex())
        own = dtype if is_complex else dtype.to_real()
        if isinstance(v, torch.Tensor):
            if v.dtype != own or v.device != device:
                v = v.to(device=device, dtype=own)
        else:
            v = torch.tensor(v, dtype=own, device=device)
        out.append(v)
    return out, dtype, device


def _prepare_with_indices(values, names, has_complex_const, index_names):
    picked = [k for k, n in enumerate(names) if n in index_names]
    rest = [k for k in range(len(names)) if k not in picked]
    tensors, dtype, device = prepare([values[k] for k in rest], [names[k] for k in rest], has_complex_const)
    out = list(values)
    for k, t in zip(rest, tensors):
        out[k] = t
    for k in picked:
        v = values[k]
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"index tensor '{names[k]}' must be an integer tensor or array, "
                            f"not {type(v).__name__}")
        if v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool:
            raise NotationValueError(f"index tensor '{names[k]}' must hold integers, not {v.dtype}")
        out[k] = v.to(device=device)
    return out, dtype, device


def _common_dtype(values, has_complex_const):
    dtype = None
    for v in values:
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()):
            dtype = v.dtype if dtype is None else torch.promote_types(dtype, v.dtype)
    dtype = dtype or torch.get_default_dtype()
    wants_complex = has_complex_const or any(isinstance(v, complex) for v in values)
    if wants_complex and not dtype.is_complex:
        dtype = torch.promote_types(dtype, torch.complex64)
    return dtype


def run(compiled, tensors):
    """Apply a compiled signature; gradients flow only when some wanted input needs one."""
    if any(compiled.wanted) and torch.is_grad_enabled():
        return _Apply.apply(compiled, *tensors)
    with torch.no_grad():
        outs = compiled.forward(*tensors)[0]
    return _fresh_all(outs, tensors)


def signature(tensors, dtype, device, wrt_mask):
    grad = torch.is_grad_enabled()
    return (dtype, device) + tuple((t.shape, grad and w and t.requires_grad, t.is_complex())
                                   for t, w in zip(tensors, wrt_mask))


def build(cell, shapes, wants, dtype, device, label, low_memory, sizes=None, complex_inputs=None):
    """complex_inputs: per input, is it complex (default: all are when dtype is)."""
    program = plan.build(cell, shapes, wants, sizes, complex=dtype.is_complex,
                         complex_inputs=complex_inputs)
    comments = {start: render.statement_text(st) for start, st in zip(program.starts, cell.statements)}
    return compile_program(program, label, low_memory, dtype, device, comments)
