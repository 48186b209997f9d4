"""tensorgrad(): the public entry point, and the callable it returns."""
import collections
import functools
import inspect
import operator
import warnings
import weakref
from itertools import count

import torch

from ..calculus import second as second_formulas
from ..calculus import tangent
from ..calculus.derive import derive, symmetrised
from ..compiler.sizes import guarded
from ..language.cell import analyse
from ..language.errors import NotationValueError
from ..language.ir import Const, children
from ..language.printer import formula_text, statement_text, where_text
from ..views import naming, readable
from ..views.latex import cell_latex
from .arguments import prepare, quick_signature, signature
from . import second as second_order
from .autograd import run
from . import scale
from .compiled import DEFAULT_SIZE, build
from .generic import Family, named_shapes

MEMORY = ("high", "low")
CACHE_SIZE = 64  # compiled signatures (shapes, dtype, device, gradients) kept per callable
_tokens = count()
_LIVE = weakref.WeakValueDictionary()  # token → callable, for torch.compile's first call


def tensorgrad(text, wrt=None, name=None, memory="high", sizes=None, pad=None, symmetric=None,
               memory_limit=None, distributed=False, backend="eager"):
    """Compile index-notation statements into a differentiable torch callable.

    text:    one statement per line, e.g. "A[i,k] := B[i,j] * C[j,k] * D[l,l]"
    wrt:     the inputs to differentiate with respect to ("B C" or ["B", "C"]); None: all
    name:    the callable's name (default: "<last output>_fn")
    memory:  "high" saves forward intermediates for the backward; "low" recomputes them
    sizes:   {index: size} for indices no shape fixes, e.g. a pooling window {"a": 2}
    pad:     {tensor: p}: read as zero up to p places outside its bounds at its shifted
             subscripts, which may then subtract: x[b,c,i+a-1] with pad={"x": 1} is a "same"
             convolution
    symmetric: inputs that are symmetric matrices ("W" or ["W", "V"]; Hermitian if complex):
             their gradient is the symmetric part, ½(G + Gᵀ) (½(G + Gᴴ))
    memory_limit: bytes (or "2GB") one slice of a product may hold, forward and backward:
             larger products are sliced and looped over
    distributed: spread each product's slices over the ranks of torch.distributed's default
             group (every rank gets the full value and gradients)
    backend: "eager" runs the generated torch code as it is; a torch.compile backend
             ("inductor") compiles each call's forward and backward through torch.compile,
             fusing elementwise chains (the first call of each shape takes seconds)
    """
    return TensorGradFunction(text, wrt=wrt, name=name, memory=memory, sizes=sizes, pad=pad,
                              symmetric=symmetric, memory_limit=memory_limit,
                              distributed=distributed, backend=backend)


class TensorGradFunction:
    """A compiled cell: call it with the inputs (positionally in `inputs` order, or by name)."""

    def __init__(self, text, wrt=None, name=None, memory="high", sizes=None, pad=None, symmetric=None,
                 memory_limit=None, distributed=False, backend="eager"):
        _check_types(text, wrt, name)
        _check_types(text, symmetric, name, "symmetric")
        if memory not in MEMORY:
            raise ValueError(f"memory must be one of {MEMORY}, not {memory!r}")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, not {type(distributed).__name__}")
        self.backend = _check_backend(backend)
        self.sizes = _check_sizes(sizes)
        self.pad = _check_sizes(pad, "pad", "tensor names to numbers of places, like {'x': 1}")
        self.memory_limit = scale.memory_limit(memory_limit)
        self.distributed = distributed
        self.text = text
        self.symmetric = _names_of(symmetric)
        self.cell = analyse(text, self.pad, self.symmetric)
        self.inputs = self.cell.inputs
        self.outputs = self.cell.outputs
        self.wrt = _resolve_wrt(wrt, self.cell)
        self.name = name or f"{self.outputs[-1]}_fn"
        if not self.name.isidentifier():
            raise ValueError(f"the callable's name must be an identifier, not {self.name!r}")
        self.memory = memory
        self._wrt_mask = tuple(n in self.wrt for n in self.inputs)
        self._all_wrt = all(self._wrt_mask)  # no input can drop a gradient: no warning to look for
        self._complex_const = any(_has_complex(st.rhs) for st in self.cell.statements)
        self._fresh_state()
        self.statement = "\n".join(statement_text(st) for st in self.cell.statements)

    def _fresh_state(self):
        """What is rebuilt rather than copied or pickled: compiled code and caches."""
        self._cache = collections.OrderedDict()  # signature -> Compiled, least recent first
        self._last = None
        self._warned = set()
        self._second = {}  # second order: compiled per signature (runtime/second.py)
        self._token = next(_tokens)
        _LIVE[self._token] = self
        self._through_compiler = None  # torch.compile of _run, for a backend other than eager

    def __reduce__(self):
        """Pickled (and deep-copied) as the text and options it was made from, analysed again
        when loaded: a pickle names only the public tensormagic.tensorgrad, never a module
        inside the package, so it survives changes to the package's insides."""
        return tensorgrad, (self.text, self.wrt, self.name, self.memory, self.sizes or None,
                            self.pad or None, self.symmetric or None, self.memory_limit,
                            self.distributed, self.backend)

    # -- the derivation, made when first shown (calling never needs it) --------------------
    @functools.cached_property
    def derivation(self):
        """The derived formulas, in the order reverse mode computes them (a symmetric input's:
        the symmetric part of the one it would have)."""
        return tuple(symmetrised(f) if f.of_input and f.name in self.symmetric else f
                     for f in derive(self.cell, self.wrt))

    @functools.cached_property
    def _shown(self):
        """The derivation as the views show it: in a long cell, each sub-expression repeated
        across the formulas is named once (naming.shorten) and defined below them."""
        return naming.shorten(self.derivation, readable.cell_names(self.cell.statements))

    @functools.cached_property
    def formulas(self):
        """{input: its gradient's formula as plain text} for every input in wrt (in a long
        cell, with the definitions it uses below it: where A[j] = ...)."""
        return {f.name: "\n".join([formula_text(f)] + where_text(self._shown.used_by(f)))
                for f in self._shown.formulas if f.of_input}

    @functools.cached_property
    def intermediate_formulas(self):
        """{ΔH: its formula} for the intermediate outputs whose gradients the formulas use."""
        return {f.target.name: formula_text(f) for f in self.derivation if not f.of_input}

    @functools.cached_property
    def tangent_derivation(self):
        """The derived forward-mode tangents."""
        return tuple(tangent.tangents(self.cell, self.wrt))

    @functools.cached_property
    def tangents(self):
        return {f.name: tangent.tangent_text(f) for f in self.tangent_derivation}

    @functools.cached_property
    def hvp_formulas(self):
        """{input: HvW[...] = ...} the Hessian-vector product of the last output (a scalar) in
        the direction v (vW for W), with the tangents and gradients it reads above it."""
        chain, results = second_formulas.hvp_formulas(self.cell, self.wrt)
        head = [second_formulas.shown_text(f) for f in chain]
        return {n: "\n".join(head + [second_formulas.shown_text(f)]) for n, f in results.items()}

    @functools.cached_property
    def hessian_formulas(self):
        """{(a, b): ∂²L/∂a[...]∂b[...] = ...} every block of the Hessian of the last output,
        as statements with two sets of indices (the ones they read above them)."""
        return {k: block.text() for k, block in self.hessian_blocks.items()}

    @functools.cached_property
    def hessian_blocks(self):
        """The Hessian's blocks as calculus.second.Block objects (for the views)."""
        second_order._check_scalar(self, "hessian")
        return second_formulas.hessian(self.cell, self.wrt).blocks

    def hessian_view(self, names=None):
        """The Hessian's blocks among `names` (default: wrt) as math: text, LaTeX and MathML
        (what `--hessian W` shows in the magic)."""
        from ..views.second import HessianView
        names = _names_in(names, self.wrt, "hessian")
        blocks = self.hessian_blocks
        return HessianView(blocks[(a, b)] for a in names for b in names)

    def hvp(self, *inputs, v, **named):
        """The Hessian-vector product of the last output (a scalar): {name: H·v} for the
        names v gives directions for (all in wrt), at the inputs given as for a call.
        Derived symbolically (the gradient formulas' tangents), compiled per signature."""
        return second_order.hvp(self, inputs, named, v)

    def hessian(self, *inputs, **named):
        """The Hessian of the last output (a scalar) at the inputs given as for a call: a
        tensor of shape x.shape + x.shape for a one-name wrt, else {(a, b): block} over the
        names of wrt. Derived symbolically, δs summed away; compiled per signature."""
        return second_order.hessian(self, inputs, named)

    @property
    def __signature__(self):
        """The inputs, for inspect.signature, help() and IDEs."""
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([inspect.Parameter(n, kind) for n in self.inputs])

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """The last statement's output (compiled with it as the only output: the other
        statements' results are intermediates, neither returned nor differentiated into)."""
        return self._run(args, kwargs)[-1]

    def evaluate(self, *args, **kwargs):
        """Every output, by name (the final value of each)."""
        return dict(zip(self.outputs, self._run(args, kwargs, len(self.outputs) > 1)))

    def _run(self, args, kwargs, every=False):
        """The outputs: the last one, or (every) all of them; every ends the cache key."""
        if self.distributed:
            scale.check_group()
        if self.backend != "eager" and not torch.compiler.is_compiling() and \
                not torch._C._are_functorch_transforms_active() and \
                torch.autograd.forward_ad._current_level < 0:
            if self._through_compiler is None:
                self._through_compiler = torch.compile(self._run, backend=self.backend,
                                                       fullgraph=True, dynamic=False)
            return self._through_compiler(args, kwargs, every)
        if not kwargs and not self.cell.index_inputs and not torch.compiler.is_compiling():
            # the common call, checked in one pass: a signature already compiled
            key = quick_signature(args, self._wrt_mask, self._complex_const)
            compiled = self._cache.get(key + (every,)) if key else None
            if compiled is not None:
                return self._call(key + (every,), compiled, args)
        values = self._bind(args, kwargs)
        tensors, dtype, device = prepare(values, self.inputs, self._complex_const,
                                                 self.cell.index_inputs)
        if torch.compiler.is_compiling():
            # torch.compile traces this call: plan and compile at trace time, outside the graph.
            key = signature(tensors, dtype, device, self._wrt_mask, operator.index) + (every,)
            _ensure(self._token, key)
            return run(self._cache[key], tensors)
        key = signature(tensors, dtype, device, self._wrt_mask) + (every,)
        return self._call(key, self._cache.get(key) or self._compile(key), tensors)

    def _call(self, key, compiled, tensors):
        self._cache.move_to_end(key)  # least recently used is dropped first
        self._last = compiled
        if not self._all_wrt and torch.is_grad_enabled():
            self._warn_dropped(tensors)
        return run(compiled, tensors)

    def _warn_dropped(self, tensors):
        """An input outside wrt that requires grad gets none: say so, once per input."""
        for name, t, w in zip(self.inputs, tensors, self._wrt_mask):
            if not w and t.requires_grad and name not in self._warned \
                    and name not in self.cell.shape_only:
                self._warned.add(name)
                warnings.warn(f"{self.name}: input '{name}' requires grad but is not in wrt "
                              f"({', '.join(self.wrt) or 'none'}), so it gets no gradient; "
                              f"add it to wrt to differentiate with respect to it",
                              UserWarning, stacklevel=5)

    def _bind(self, args, kwargs):
        if not kwargs and len(args) == len(self.inputs):
            return list(args)
        values = bind_by_name(f"{self.name}()", self.inputs, args, kwargs, "inputs")
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise TypeError(f"{self.name}() is missing input{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)}")
        return [values[n] for n in self.inputs]

    def _compile(self, key):
        dtype, device, *per_input, every = key
        wants = {n for n, (_, needs, _) in zip(self.inputs, per_input) if needs}
        shapes = [shape for shape, _, _ in per_input]
        complex_inputs = tuple(cx for _, _, cx in per_input)
        compiled = self._build(shapes, wants, dtype, device, complex_inputs,
                               scale.ranks(self.distributed), every)
        self._cache[key] = compiled
        while len(self._cache) > CACHE_SIZE:  # least recently used first
            self._cache.popitem(last=False)
        return compiled

    def _build(self, shapes, wants, dtype, device, complex_inputs, ranks, every=True):
        return build(self.cell, shapes, wants, dtype, device, self.name, self.memory == "low",
                     self.sizes, complex_inputs, self._wrt_mask, every, self.memory_limit, ranks)

    # -- inspecting ----------------------------------------------------------------------
    @property
    def code(self):
        """The generated forward and backward source for the gradients in `wrt`, at the last
        call's shapes (or a small example's), however that call was made."""
        return self._example().source

    def _example(self):
        """The last call's signature with every gradient in wrt wanted (a call under no_grad,
        or with inputs that need no gradient, compiled no backward; this shows the one that
        would run); before any call, a small example: every index DEFAULT_SIZE, float, CPU."""
        if self._last is None:
            dtype = torch.get_default_dtype()
            if self._complex_const:
                dtype = torch.promote_types(dtype, torch.complex64)
            for size in (DEFAULT_SIZE, 4 * DEFAULT_SIZE):
                shapes = [(size,) * self.cell.ndim[n] for n in self.inputs]
                try:  # shifted subscripts may need room: a larger example
                    # (spread as a call would be, where a process group exists)
                    ranks = scale.ranks(self.distributed and torch.distributed.is_initialized())
                    self._last = self._build(shapes, set(self.wrt), dtype, torch.device("cpu"),
                                             (False,) * len(shapes), ranks)
                    break
                except NotationValueError:
                    if size != DEFAULT_SIZE:
                        raise
        last = next((k for k, c in self._cache.items() if c is self._last), None)
        if last is None or tuple(entry[1] for entry in last[2:-1]) == self._wrt_mask:
            return self._last
        # the same signature with every gradient in wrt wanted: (shape, needs, ...) per input
        key = last[:2] + tuple(entry[:1] + (w,) + entry[2:] for entry, w in
                               zip(last[2:-1], self._wrt_mask)) + last[-1:]
        return self._cache.get(key) or self._compile(key)

    @property
    def plan(self):
        """The contraction plan (forward and backward FLOPs) for the last call's shapes."""
        from ..compiler.describe import describe
        return describe(self._example().program)

    def diagram(self, gradients=False):
        """The statements as tensor networks (an SVG picture; `.svg` holds its text);
        gradients=True adds a panel per derived formula."""
        from ..views.diagram import cell_diagram
        return cell_diagram(self.cell, self.derivation if gradients else ())

    def plan_diagram(self):
        """The contraction plan as a picture: each pairwise tree with costs and sizes."""
        from ..views.plandiagram import plan_diagram
        from .export import planned
        compiled = self._example()
        if self.wrt and not any(compiled.wanted):  # the last call wanted no gradient: plan one
            compiled = planned(self)
        return plan_diagram(compiled)

    def check(self, *inputs, formulas=None, seed=0, max_entries=512, seconds=2.0, **named):
        """Each derived gradient compared with central differences: a report with ✓ or ✗ and
        the max error beside each formula. At the inputs given (all of them, positionally in
        `inputs` order or by name, as for a call; copied to the CPU in float64, complex128 for
        complex ones), or, given none, at small random float64 (complex128) inputs.
        formulas: {input: "ΔB[i,j] = ..."} checks that text instead of the derived gradient.
        max_entries, seconds: a large cell is sampled, the finite differences stopping at that
        many entries in all or after that long (None: no cap); the report says so."""
        from .checking import check
        at = self._check_point(inputs, named) if inputs or named else None
        return check(self, formulas, seed, values=at, max_entries=max_entries, seconds=seconds)

    def _check_point(self, args, kwargs):
        """The inputs check() was given, in `inputs` order; a TypeError says what it takes."""
        caller = f"{self.name}.check()"
        if any(isinstance(a, dict) for a in args):
            raise TypeError(f"{caller}: formulas are given by keyword, "
                            f"{caller[:-1]}formulas={{'B': 'ΔB[i,j] = ...'}})")
        values = bind_by_name(caller, self.inputs, args, kwargs, "inputs")
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise TypeError(f"{caller} takes the cell's inputs ({', '.join(self.inputs)}), all of "
                            f"them, positionally or by name, or none (small random ones); missing: "
                            f"{', '.join(missing)}")
        return [values[n] for n in self.inputs]

    def inspector(self, code=False, inputs=None):
        """The live notebook view of this cell, an ipywidgets widget: toggles for the generated
        code (shown at once with code=True), the plan, the tangents and the diagram; a gradient
        picker narrowing them to one input's gradient; a "Check gradients" button, which checks
        at `inputs` (one value per input, or a function giving them when pressed) or at small
        random inputs. Display it, or place it (or its parts: .toggles, .panes, .gradient,
        .check_button, .report) in a layout of your own. Needs ipywidgets:
        pip install "tensormagic[notebook]"."""
        from .inspector import inspector
        return inspector(self, code=code, inputs=inputs)

    def export(self, path, *examples, shapes=None, dtype=None, device=None):
        """Write a standalone module (needs only torch) with this cell's planned forward and
        backward. Planned from example inputs (fn.export(path, B, C, D)), or shapes={input:
        shape} (a list of them for several), or the shapes of the calls made; in the examples'
        (or the last call's) dtype and device. The module serves every shape that agrees with
        an example wherever the plan depends on a size: other batch sizes, lengths, images."""
        from .export import export
        if len(examples) == 1 and isinstance(examples[0], (dict, list)):  # shapes, positionally
            shapes, examples = examples[0], ()
        return export(self, path, examples, shapes, dtype, device)

    def _family(self, shapes, dtype, device):
        """This cell planned from example shapes ({input: shape}) for every shape that agrees
        with them wherever the plan depends on a size (the shape-generic export): every
        gradient in wrt wanted, every output returned, the sizes named (generic.Family)."""
        names, symbolic = named_shapes(self.inputs, shapes)
        complex_inputs = tuple(dtype.is_complex and n not in self.cell.index_inputs
                               for n in self.inputs)
        with guarded() as guards:
            compiled = self._build(symbolic, set(self.wrt), dtype, torch.device(device),
                                   complex_inputs, ranks=1, every=True)
        example = tuple(tuple(int(s) for s in shapes[n]) for n in self.inputs)
        return Family(compiled, names, tuple(guards), example)

    def latex(self, tangents=False):
        """The statements, then each derived gradient (and with tangents=True each tangent,
        forward mode), as one LaTeX display: long lines in compact form, at most
        views.latex.LATEX_CAP characters."""
        return self._math(tangents)[0]

    def _math(self, tangents=False):
        """(LaTeX display, whether some line was shortened)."""
        return cell_latex(self.cell.statements, self._shown.formulas,
                                 self.tangent_derivation if tangents else (), self._shown.definitions)

    def _repr_latex_(self):
        return self.latex()

    def _repr_html_(self):
        """The same math as MathML, which browsers typeset offline (no MathJax needed)."""
        from ..views.mathml import cell_html
        return cell_html(self)

    def __str__(self):
        return self.render_text()

    def render_text(self, tangents=False):
        """The statements, the gradients and (tangents=True) the tangents, as plain text."""
        lines = [self.statement] + self._padding_note() + [""] + \
            [formula_text(f) for f in self._shown.formulas] + where_text(self._shown.definitions)
        if tangents and self.tangents:
            lines += [""] + list(self.tangents.values())
        return "\n".join(lines)

    def _padding_note(self):
        """What pad= and symmetric= mean for the statements and formulas, a line each (or none)."""
        lines = []
        if self.pad:
            each = ", ".join(f"{n} padded by {p}" for n, p in self.pad.items())
            lines.append(f"({each}: zero outside its bounds at shifted subscripts, as δ is in the formulas)")
        if self.symmetric:
            names = ", ".join(self.symmetric)
            lines.append(f"({names} symmetric: its gradient is the symmetric part ½(G + Gᵀ) of the one "
                         f"it would have, G; Hermitian, ½(G + Gᴴ), when complex)")
        return lines

    def __repr__(self):
        return f"<tensorgrad {self.name}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}>"


def _check_sizes(sizes, what="sizes", maps="index names to positive integers"):
    if sizes is None:
        return {}
    if not isinstance(sizes, dict):
        raise TypeError(f"{what} must be a dict like {{'a': 2}}, not {type(sizes).__name__}")
    for index, size in sizes.items():
        if not isinstance(index, str) or type(size) is not int or size < 1:
            raise ValueError(f"{what} maps {maps}; got {index!r}: {size!r}")
    return dict(sizes)


@torch._dynamo.assume_constant_result
def _ensure(token, key):
    """Compile a signature if it is new. torch.compile runs this at trace time (its result
    is a constant), so a first call of a new shape plans without a graph break."""
    fn = _LIVE[token]
    if key not in fn._cache:
        fn._compile(key)
    return True


def _check_backend(backend):
    """"eager", or the name of a torch.compile backend."""
    if backend == "eager":
        return backend
    known = torch._dynamo.list_backends()
    if backend not in known:
        raise ValueError(f"backend must be 'eager' or a torch.compile backend "
                         f"({', '.join(sorted(known))}), not {backend!r}")
    return backend


def _check_types(text, wrt, name, what="wrt"):
    """TypeError for arguments of the wrong type, saying what is expected."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str of index-notation statements, not {type(text).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str (the callable's name) or None, not {type(name).__name__}")
    if wrt is None or isinstance(wrt, str):
        return
    if not isinstance(wrt, (list, tuple, set, frozenset)):
        raise TypeError(f"{what} must be a str of names, a sequence of names or None, not {type(wrt).__name__}")
    for n in wrt:
        if not isinstance(n, str):
            raise TypeError(f"{what} must hold names (str), not {type(n).__name__} ({n!r})")


def _names_of(names):
    """"W V", "W,V" or a sequence → a tuple of names (None: none)."""
    if names is None:
        return ()
    return tuple(names.replace(",", " ").split() if isinstance(names, str) else names)



def bind_by_name(caller, names, args, kwargs, what):
    """{name: value} from positional args (in `names` order) and keywords, as Python binds a call;
    what: how the accepted names are described in the errors ("inputs")."""
    if len(args) > len(names):
        raise TypeError(f"{caller} takes {len(names)} {what} ({', '.join(names)}) "
                        f"but {len(args)} were given")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"{caller} got an unexpected input '{key}'; "
                            f"{what} are {', '.join(names)}")
        if key in values:
            raise TypeError(f"{caller} got input '{key}' twice")
        values[key] = value
    return values

def _names_in(names, wrt, what):
    """Names (a str of names or a sequence; None: all of wrt), each in wrt."""
    if names is None:
        return tuple(wrt)
    names = names.replace(",", " ").split() if isinstance(names, str) else list(names)
    for n in names:
        if n not in wrt:
            raise NotationValueError(f"{what} names '{n}', which is not in wrt "
                                     f"({', '.join(wrt) or 'none'})")
    return tuple(names)


def _resolve_wrt(wrt, cell):
    if wrt is None:
        return tuple(n for n in cell.inputs if n not in cell.shape_only and n not in cell.index_inputs)
    names = wrt.replace(",", " ").split() if isinstance(wrt, str) else list(wrt)
    for n in names:
        if n not in cell.inputs:
            known = ", ".join(cell.inputs) or "none"
            raise NotationValueError(f"wrt names '{n}', which is not an input of this cell "
                                     f"(inputs: {known})")
        if n in cell.index_inputs:
            raise NotationValueError(f"'{n}' is an index tensor (it holds integers): it has no gradient")
        if n in cell.shape_only:
            raise NotationValueError(f"'{n}' is overwritten by '=': its old values do not affect "
                                     f"the result, so it has no gradient")
    return tuple(n for n in cell.inputs if n in names)


def _has_complex(e):
    if isinstance(e, Const):
        return isinstance(e.value, complex)
    return any(_has_complex(c) for c in children(e))
