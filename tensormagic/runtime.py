"""Source → a differentiable torch callable: argument checks, compile cache, autograd glue."""
import linecache
import weakref
from dataclasses import dataclass, field
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
    slots: tuple = ()      # per saved value: ("arg" | "out" | "extra", index)
    n_out: int = 1
    wrt: tuple = ()        # per input: may it carry a tangent (is it in wrt)
    namespace: dict = field(default_factory=dict)
    jvps: dict = field(default_factory=dict)   # active inputs → generated jvp
    extras: tuple = ()     # positions, among the saved values, of the intermediates
    saved_outs: tuple = ()  # the outputs the backward reads
    pick: tuple = ()       # per saved value, its place in (*inputs, *saved_outs, *intermediates)

    def __post_init__(self):
        self.extras = tuple(j for j, (kind, _) in enumerate(self.slots) if kind == "extra")
        self.saved_outs = tuple(sorted({k for kind, k in self.slots if kind == "out"}))
        n, m = len(self.wanted), len(self.saved_outs)
        self.pick = tuple(k if kind == "arg" else n + self.saved_outs.index(k) if kind == "out"
                          else n + m + k for kind, k in self.slots)

    def jvp(self, active):
        """The generated jvp for inputs carrying tangents (`active`, a mask), compiled once."""
        if active not in self.jvps:
            text = codegen.generate_jvp(self.program, active)
            self.jvps[active] = _exec(text, "jvp", self.namespace)["jvp"]
        return self.jvps[active]


def compile_program(program, label, low_memory, dtype, device, comments=None, wrt=None):
    source = codegen.generate(program, comments)
    namespace = {"torch": torch, "_dtype": dtype, "_rdtype": dtype.to_real(), "_device": device,
                 **kernels.NAMESPACE}
    _exec(source.text, label, namespace)
    wanted = tuple(program.vars[v].needs for v in program.inputs)
    wrt = tuple(wrt) if wrt is not None else (True,) * len(program.inputs)
    return Compiled(namespace["forward"], namespace["backward"], source.text, program,
                    source.saved, wanted, low_memory, _slots(program, source, low_memory),
                    len(program.outputs), wrt, namespace)


def _exec(text, label, namespace):
    """Run generated source; its text stays in linecache (for tracebacks) while the functions
    it defines live, and is dropped with them."""
    filename = f"<tensorgrad {label} #{next(_ids)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    before = {k: id(v) for k, v in namespace.items()}
    exec(compile(text, filename, "exec"), namespace)
    defined = [v for k, v in namespace.items() if before.get(k) != id(v) and callable(v)]
    if defined:
        weakref.finalize(defined[0], linecache.cache.pop, filename, None)
    return namespace


def _slots(program, source, low_memory):
    """Where each value the backward reads comes from: an input, an output, or an
    intermediate the forward also returns (so that it goes through save_for_backward)."""
    if low_memory:
        return ()
    slots, extras = [], 0
    for vid in source.saved:
        if vid in program.inputs:
            slots.append(("arg", program.inputs.index(vid)))
        elif vid in source.outputs:
            slots.append(("out", source.outputs.index(vid)))
        else:
            slots.append(("extra", extras))
            extras += 1
    return tuple(slots)


class _Apply(torch.autograd.Function):
    """The autograd wrapper: forward, backward and jvp are the generated functions. This one
    runs when a saved-tensor hook, a torch.func transform or forward-mode AD is active (with
    none, _Held, the same with a cheaper hand-over; torch.compile traces _Traced, the same
    without jvp: dynamo refuses a custom jvp).

    The forward returns the outputs, then the intermediates the backward reads (marked
    non-differentiable, never handed to the user), so that every saved tensor goes through
    save_for_backward: saved-tensor hooks see them all. The forward has no context (torch.func
    needs this), and torch derives its vmap rule by running the forward on batched tensors."""
    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args):
        """torch's Function.apply without binding default arguments through inspect.signature
        on every call (ours has none): a tenth of a small call's time."""
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*args)

    @staticmethod
    def forward(compiled, *args):
        outs, saved = compiled.forward(*args)
        extras = tuple(saved[j] for j in compiled.extras)
        outs = _fresh_all(outs, args, extras)
        # An input (a checked index tensor) returned as it is may not be saved: a view may.
        taken = args + outs
        extras = tuple(e.view_as(e) if any(e is t for t in taken) else e for e in extras)
        return (*outs, *extras)

    @staticmethod
    def setup_context(ctx, inputs, output):
        compiled, *args = inputs
        extras = output[compiled.n_out:]
        if extras:
            ctx.mark_non_differentiable(*extras)
            # no zero gradients the size of each intermediate: the backward fills in only
            # the outputs' (those the loss did not use)
            ctx.set_materialize_grads(False)
            ctx.outs = _output_specs(output, compiled.n_out)
        ctx.compiled = compiled
        # Every input is kept (a reference, no copy): a differentiated backward recomputes
        # the forward from them. Outputs only where the backward reads them.
        # The intermediates too, so that saved-tensor hooks, transforms and compilers see them
        # (with none of these, _Held hands them over in a list instead).
        kept = (*args, *(output[k] for k in compiled.saved_outs), *extras)
        ctx.extras = None
        ctx.save_for_backward(*kept)
        if _transformed():  # the same list: torch.func keeps one set of batch dims
            ctx.save_for_forward(*kept)

    @staticmethod
    def backward(ctx, *grads):
        grads = grads[:ctx.compiled.n_out]
        return _backward(ctx, _filled(grads, ctx.outs) if ctx.compiled.extras else grads)

    @staticmethod
    def jvp(ctx, _, *tangents):
        """Forward mode: the derived tangents (fn.tangents), generated like the backward.
        Inputs outside wrt carry no tangent, as they get no gradient."""
        compiled = ctx.compiled
        args = ctx.saved_tensors[:len(compiled.wanted)]
        active = tuple(t is not None and w for t, w in zip(tangents, compiled.wrt))
        given = [t for t, a in zip(tangents, active) if a]
        outs = compiled.jvp(active)(*args, *given)
        return (*outs, *(None,) * len(compiled.extras))


def _output_specs(output, n_out):
    """What zeros for an output the loss did not use are made of (kept instead of the outputs:
    the context holding an output would be a reference cycle)."""
    return [(o.shape, o.dtype, o.device) for o in output[:n_out]]


def _filled(grads, specs):
    """The outputs' gradients, zeros where the loss did not use an output."""
    return tuple(g if g is not None else torch.zeros(shape, dtype=dtype, device=device)
                 for g, (shape, dtype, device) in zip(grads, specs))


def _backward(ctx, grads):
    """The generated backward, given the intermediates the context holds (ctx.extras), or the
    saved ones, or recomputing them."""
    compiled = ctx.compiled
    kept = ctx.saved_tensors
    n = len(compiled.wanted)
    args = kept[:n]
    released = compiled.extras and ctx.extras is None and len(kept) == n + len(compiled.saved_outs)
    if compiled.low_memory or torch.is_grad_enabled() or released:
        # Recompute the intermediates: to save memory, to let torch see how they depend
        # on the inputs when this backward is itself differentiated, or because a first
        # backward (retain_graph=True) released them.
        args = tuple(a if w else a.detach() for a, w in zip(args, compiled.wanted))
        saved = list(compiled.forward(*args)[1])
    else:
        saved = _picked(compiled, args, kept[n:], ctx.extras)
        ctx.extras = None  # the list handed over is the only reference left: the backward
        # releases each intermediate after its last reader
    return (None, *compiled.backward(saved, grads))


def _picked(compiled, args, rest, held):
    """The values the generated backward reads, in its order: inputs, saved outputs, and the
    intermediates (saved, or held by the context). A function of its own, so that no local
    outlives it (and torch.compile traces no `del`)."""
    pool = (*args, *rest, *held) if held else (*args, *rest)
    return [pool[k] for k in compiled.pick]


class _Held(_Apply):
    """_Apply when nothing watches saved tensors (no saved-tensor hook, torch.func transform,
    forward-mode level or compiler): the intermediates reach the backward in a plain list, one
    non-tensor output, instead of as extra tensor outputs. Each extra output costs autograd
    bookkeeping; at tiny sizes that was a third of a call. The list is the only reference the
    backward holds, so it frees each intermediate after its last reader."""

    @staticmethod
    def forward(compiled, *args):
        outs, saved = compiled.forward(*args)
        held = [saved[j] for j in compiled.extras]
        return (*_fresh_all(outs, args, held), held)

    @staticmethod
    def setup_context(ctx, inputs, output):
        compiled, *args = inputs
        ctx.compiled = compiled
        ctx.extras = output[-1] if compiled.extras else None
        if compiled.n_out > 1:  # an output the loss did not use gets zeros, made here
            ctx.set_materialize_grads(False)
            ctx.outs = _output_specs(output, compiled.n_out)
        # inputs (a differentiated backward recomputes from them) and the outputs the backward
        # reads, through save_for_backward: torch checks they were not modified in place
        ctx.save_for_backward(*args, *(output[k] for k in compiled.saved_outs))

    @staticmethod
    def backward(ctx, *grads):
        grads = grads[:ctx.compiled.n_out]
        return _backward(ctx, _filled(grads, ctx.outs) if ctx.compiled.n_out > 1 else grads)


class _Traced(_Apply):
    """_Apply for torch.compile: dynamo traces neither a custom jvp nor an overridden apply."""
    jvp = torch.autograd.Function.jvp
    apply = classmethod(torch.autograd.Function.apply.__func__)


def _fresh_all(outs, args, saved=()):
    """Outputs are contiguous and alias no input, no other output and nothing the backward
    reads: users may write into them. A view of a fresh result (a reshape) becomes a tensor of
    its own (no copy), so that autograd lets it be modified in place."""
    if len(outs) == 1:  # the common case, checked cheaply: one fresh contiguous result
        out = outs[0]
        if out._base is None and out.is_contiguous() and not any(out is t for t in args) \
                and not any(out is t or t._base is out for t in saved):
            return tuple(outs)
    fresh = []
    taken = [_root(t) for t in args] + [_root(t) for t in saved]
    for out in outs:
        root = _root(out)
        if not out.is_contiguous() or any(root is t for t in taken) or \
                any(root is _root(f) for f in fresh):
            out = out.clone(memory_format=torch.contiguous_format)
        elif out._base is not None:
            out = torch.ops.aten._unsafe_view(out, out.shape)
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
    """torch's type promotion over every input (torch.result_type, n-ary): tensors with
    dimensions outrank 0-dim tensors, which outrank Python numbers, unless the lower rank
    brings a higher category (integer < floating < complex). A complex constant in the cell
    counts as a Python complex. An integer result computes in the default float dtype."""
    ranks = [None, None, None]  # tensors with dimensions, 0-dim tensors, Python numbers
    numbers = [v for v in values if not isinstance(v, torch.Tensor)]
    numbers += [1j] if has_complex_const else []
    for v in values:
        if isinstance(v, torch.Tensor):
            rank = 0 if v.dim() else 1
            ranks[rank] = _promote(ranks[rank], v.dtype)
    for v in numbers:
        ranks[2] = _promote(ranks[2], _number_dtype(v))
    dtype = _combine(ranks[0], _combine(ranks[1], ranks[2]))
    if dtype is None or not (dtype.is_floating_point or dtype.is_complex):
        return torch.get_default_dtype()
    return dtype


def _promote(a, b):
    return b if a is None else torch.promote_types(a, b)


def _number_dtype(v):
    default = torch.get_default_dtype()
    if isinstance(v, complex):
        return torch.promote_types(default, torch.complex64)
    return default if isinstance(v, float) else torch.int64


_COMPLEX = {torch.float16: torch.complex32, torch.float32: torch.complex64,
            torch.float64: torch.complex128}


def _combine(higher, lower):
    """One rank over the next lower one (c10's combine_categories)."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    if higher.is_complex:
        return higher
    if lower.is_complex:
        return _COMPLEX.get(higher, lower) if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher == torch.bool or lower.is_floating_point:
        return torch.promote_types(higher, lower)
    return higher


def run(compiled, tensors):
    """Apply a compiled signature; through autograd only when some wanted input needs a
    gradient, or a forward-mode or torch.func transform may carry tangents."""
    if torch.compiler.is_compiling():
        if any(compiled.wanted) and torch.is_grad_enabled():
            return _Traced.apply(compiled, *tensors)[:compiled.n_out]
    elif _transformed():
        return _Apply.apply(compiled, *tensors)[:compiled.n_out]
    elif any(compiled.wanted) and torch.is_grad_enabled():
        watched = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
        return (_Apply if watched else _Held).apply(compiled, *tensors)[:compiled.n_out]
    with torch.no_grad():
        outs = compiled.forward(*tensors)[0]
    return _fresh_all(outs, tensors)


def _transformed():
    return torch.autograd.forward_ad._current_level >= 0 or \
        torch._C._functorch.maybe_current_level() is not None


def quick_signature(values, wrt_mask, has_complex_const):
    """The cache key of the common call in one pass (prepare and signature in one): tensors,
    one per input, of one floating or complex dtype on one device; None otherwise."""
    if len(values) != len(wrt_mask) or not values:
        return None
    first = values[0]
    if not isinstance(first, torch.Tensor):
        return None
    dtype, device = first.dtype, first.device
    cx = dtype.is_complex
    if not (cx or dtype.is_floating_point) or (has_complex_const and not cx):
        return None
    grad = torch.is_grad_enabled()
    key = [dtype, device]
    for t, w in zip(values, wrt_mask):
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.device != device:
            return None
        key.append((t.shape, grad and w and t.requires_grad, cx))
    return tuple(key)


def signature(tensors, dtype, device, wrt_mask, size=None):
    """The cache key. size: applied to each dimension (under torch.compile, operator.index
    makes a symbolic size a plain int: our code is specialised to the shapes)."""
    grad = torch.is_grad_enabled()
    return (dtype, device) + tuple((t.shape if size is None else tuple(size(d) for d in t.shape),
                                    grad and w and t.requires_grad, t.is_complex())
                                   for t, w in zip(tensors, wrt_mask))


def build(cell, shapes, wants, dtype, device, label, low_memory, sizes=None, complex_inputs=None,
          wrt=None):
    """complex_inputs: per input, is it complex (default: all are when dtype is); wrt: per
    input, may it carry a tangent (None: all)."""
    program = plan.build(cell, shapes, wants, sizes, complex=dtype.is_complex,
                         complex_inputs=complex_inputs)
    comments = {start: render.statement_text(st) for start, st in zip(program.starts, cell.statements)}
    return compile_program(program, label, low_memory, dtype, device, comments, wrt)
