"""The compiled functions as torch autograd Functions: which one runs (hooks, transforms,
compilers watching or not), how intermediates reach the backward, outputs users may modify."""
import torch


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


class _Held(torch.autograd.Function):
    """_Apply when nothing watches saved tensors (no saved-tensor hook, torch.func transform,
    forward-mode level or compiler): a Function of the old style, whose forward has the
    context, so the intermediates reach the backward in a plain list on it rather than as extra
    outputs (each costs autograd bookkeeping: at tiny sizes a third of a call), and no second
    Python call sets the context up. The list is the only reference the backward holds, so it
    frees each intermediate after its last reader."""

    @classmethod
    def apply(cls, *args):
        """Function.apply without binding arguments through inspect.signature (as _Apply)."""
        return super(torch.autograd.Function, cls).apply(*args)

    @staticmethod
    def forward(ctx, compiled, *args):
        outs, saved = compiled.forward(*args)
        held = [saved[j] for j in compiled.extras] if compiled.extras else None
        outs = _fresh_all(outs, args, held or ())
        ctx.compiled, ctx.extras = compiled, held
        if compiled.n_out > 1:  # an output the loss did not use gets zeros, made here
            ctx.set_materialize_grads(False)
            ctx.outs = _output_specs(outs, compiled.n_out)
        # inputs (a differentiated backward recomputes from them) and the outputs the backward
        # reads, through save_for_backward: torch checks they were not modified in place
        ctx.save_for_backward(*args, *(outs[k] for k in compiled.saved_outs))
        return outs

    @staticmethod
    def backward(ctx, *grads):
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


def run(compiled, tensors):
    """Apply a compiled signature; through autograd only when some wanted input needs a
    gradient, or a forward-mode or torch.func transform may carry tangents."""
    if torch.compiler.is_compiling():
        if compiled.any_wanted and torch.is_grad_enabled():
            return _Traced.apply(compiled, *tensors)[:compiled.n_out]
    elif _transformed():
        return _Apply.apply(compiled, *tensors)[:compiled.n_out]
    elif compiled.any_wanted and torch.is_grad_enabled():
        watched = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
        return (_Apply if watched else _Held).apply(compiled, *tensors)[:compiled.n_out]
    with torch.no_grad():
        outs = compiled.forward(*tensors)[0]
    return _fresh_all(outs, tensors)


def _transformed():
    return torch.autograd.forward_ad._current_level >= 0 or \
        torch._C._functorch.maybe_current_level() is not None
