"""tensorgrad(): the public entry point, and the callable it returns."""
import collections
import functools
import inspect
import operator
import warnings
import weakref
from itertools import count

import torch

from ..calculus import tangent
from ..calculus.derive import derive
from ..language.cell import analyse
from ..language.errors import NotationValueError
from ..language.ir import Const, children
from ..language.printer import formula_text, statement_text, where_text
from ..views import naming, readable
from ..views.latex import cell_latex
from .arguments import prepare, quick_signature, signature
from .autograd import run
from . import scale
from .compiled import DEFAULT_SIZE, build

MEMORY = ("high", "low")
CACHE_SIZE = 64  # compiled signatures (shapes, dtype, device, gradients) kept per callable
_tokens = count()
_LIVE = weakref.WeakValueDictionary()  # token → callable, for torch.compile's first call


def tensorgrad(text, wrt=None, name=None, memory="high", sizes=None, memory_limit=None,
               distributed=False):
    """Compile index-notation statements into a differentiable torch callable.

    text:   one statement per line, e.g. "A[i,k] := B[i,j] * C[j,k] * D[l,l]"
    wrt:    the inputs to differentiate with respect to ("B C" or ["B", "C"]); None: all
    name:   the callable's name (default: "<last output>_fn")
    memory: "high" saves forward intermediates for the backward; "low" recomputes them
    sizes:  {index: size} for indices no shape fixes, e.g. a pooling window {"a": 2}
    memory_limit: bytes (or "2GB") one slice of a product may hold, forward and backward:
            larger products are sliced and looped over
    distributed: spread each product's slices over the ranks of torch.distributed's default
            group (every rank gets the full value and gradients)
    """
    return TensorGradFunction(text, wrt=wrt, name=name, memory=memory, sizes=sizes,
                              memory_limit=memory_limit, distributed=distributed)


class TensorGradFunction:
    """A compiled cell: call it with the inputs (positionally in `inputs` order, or by name)."""

    def __init__(self, text, wrt=None, name=None, memory="high", sizes=None, memory_limit=None,
                 distributed=False):
        _check_types(text, wrt, name)
        if memory not in MEMORY:
            raise ValueError(f"memory must be one of {MEMORY}, not {memory!r}")
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, not {type(distributed).__name__}")
        self.sizes = _check_sizes(sizes)
        self.memory_limit = scale.memory_limit(memory_limit)
        self.distributed = distributed
        self.text = text
        self.cell = analyse(text)
        self.inputs = self.cell.inputs
        self.outputs = self.cell.outputs
        self.wrt = _resolve_wrt(wrt, self.cell)
        self.name = name or f"{self.outputs[-1]}_fn"
        if not self.name.isidentifier():
            raise ValueError(f"the callable's name must be an identifier, not {self.name!r}")
        self.memory = memory
        self._wrt_mask = tuple(n in self.wrt for n in self.inputs)
        self._complex_const = any(_has_complex(st.rhs) for st in self.cell.statements)
        self._fresh_state()
        self.statement = "\n".join(statement_text(st) for st in self.cell.statements)

    def _fresh_state(self):
        """What is rebuilt rather than copied or pickled: compiled code and caches."""
        self._cache = collections.OrderedDict()  # signature -> Compiled, least recent first
        self._last = None
        self._warned = set()
        self._token = next(_tokens)
        _LIVE[self._token] = self

    def __reduce__(self):
        """Pickled (and deep-copied) as the text and options it was made from, analysed again
        when loaded: a pickle names only the public tensormagic.tensorgrad, never a module
        inside the package, so it survives changes to the package's insides."""
        return tensorgrad, (self.text, self.wrt, self.name, self.memory, self.sizes or None,
                            self.memory_limit, self.distributed)

    # -- the derivation, made when first shown (calling never needs it) --------------------
    @functools.cached_property
    def derivation(self):
        """The derived formulas, in the order reverse mode computes them."""
        return tuple(derive(self.cell, self.wrt))

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

    @property
    def __signature__(self):
        """The inputs, for inspect.signature, help() and IDEs."""
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([inspect.Parameter(n, kind) for n in self.inputs])

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """The last statement's output."""
        return self._run(args, kwargs)[-1]

    def evaluate(self, *args, **kwargs):
        """Every output, by name (the final value of each)."""
        return dict(zip(self.outputs, self._run(args, kwargs)))

    def _run(self, args, kwargs):
        if self.distributed:
            scale.check_group()
        if not kwargs and not self.cell.index_inputs and not torch.compiler.is_compiling():
            # the common call, checked in one pass: a signature already compiled
            key = quick_signature(args, self._wrt_mask, self._complex_const)
            compiled = self._cache.get(key)
            if compiled is not None:
                return self._call(key, compiled, args)
        values = self._bind(args, kwargs)
        tensors, dtype, device = prepare(values, self.inputs, self._complex_const,
                                                 self.cell.index_inputs)
        if torch.compiler.is_compiling():
            # torch.compile traces this call: plan and compile at trace time, outside the graph.
            key = signature(tensors, dtype, device, self._wrt_mask, operator.index)
            _ensure(self._token, key)
            return run(self._cache[key], tensors)
        key = signature(tensors, dtype, device, self._wrt_mask)
        return self._call(key, self._cache.get(key) or self._compile(key), tensors)

    def _call(self, key, compiled, tensors):
        self._cache.move_to_end(key)  # least recently used is dropped first
        self._last = compiled
        if torch.is_grad_enabled():
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
        dtype, device, *per_input = key
        wants = {n for n, (_, needs, _) in zip(self.inputs, per_input) if needs}
        shapes = [shape for shape, _, _ in per_input]
        complex_inputs = tuple(cx for _, _, cx in per_input)
        compiled = self._build(shapes, wants, dtype, device, complex_inputs, scale.ranks(self.distributed))
        self._cache[key] = compiled
        while len(self._cache) > CACHE_SIZE:  # least recently used first
            self._cache.popitem(last=False)
        return compiled

    def _build(self, shapes, wants, dtype, device, complex_inputs, ranks):
        return build(self.cell, shapes, wants, dtype, device, self.name, self.memory == "low",
                     self.sizes, complex_inputs, self._wrt_mask, self.memory_limit, ranks)

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
        if last is None or tuple(entry[1] for entry in last[2:]) == self._wrt_mask:
            return self._last
        # the same signature with every gradient in wrt wanted: (shape, needs, ...) per input
        key = last[:2] + tuple(entry[:1] + (w,) + entry[2:] for entry, w in
                               zip(last[2:], self._wrt_mask))
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

    def check(self, formulas=None, seed=0, max_entries=512, seconds=2.0):
        """Each derived gradient compared with central differences on small random float64
        (complex128) inputs: a report with ✓ or ✗ and the max error beside each formula.
        formulas: {input: "ΔB[i,j] = ..."} checks that text instead of the derived gradient.
        max_entries, seconds: a large cell is sampled, the finite differences stopping at that
        many entries in all or after that long (None: no cap); the report says so."""
        from .checking import check
        return check(self, formulas, seed, max_entries=max_entries, seconds=seconds)

    def export(self, path, shapes=None, dtype=None, device=None):
        """Write a standalone module (needs only torch) with this cell's planned forward and
        backward, for the last call's shapes, dtype and device (or shapes={input: shape})."""
        from .export import export
        return export(self, path, shapes, dtype, device)

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
        lines = [self.statement, ""] + [formula_text(f) for f in self._shown.formulas] \
            + where_text(self._shown.definitions)
        if tangents and self.tangents:
            lines += [""] + list(self.tangents.values())
        return "\n".join(lines)

    def __repr__(self):
        return f"<tensorgrad {self.name}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}>"


def _check_sizes(sizes):
    if sizes is None:
        return {}
    if not isinstance(sizes, dict):
        raise TypeError(f"sizes must be a dict like {{'a': 2}}, not {type(sizes).__name__}")
    for index, size in sizes.items():
        if not isinstance(index, str) or type(size) is not int or size < 1:
            raise ValueError(f"sizes maps index names to positive integers; got {index!r}: {size!r}")
    return dict(sizes)


@torch._dynamo.assume_constant_result
def _ensure(token, key):
    """Compile a signature if it is new. torch.compile runs this at trace time (its result
    is a constant), so a first call of a new shape plans without a graph break."""
    fn = _LIVE[token]
    if key not in fn._cache:
        fn._compile(key)
    return True


def _check_types(text, wrt, name):
    """TypeError for arguments of the wrong type, saying what is expected."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str of index-notation statements, not {type(text).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str (the callable's name) or None, not {type(name).__name__}")
    if wrt is None or isinstance(wrt, str):
        return
    if not isinstance(wrt, (list, tuple, set, frozenset)):
        raise TypeError(f"wrt must be a str of names, a sequence of names or None, not {type(wrt).__name__}")
    for n in wrt:
        if not isinstance(n, str):
            raise TypeError(f"wrt must hold names (str), not {type(n).__name__} ({n!r})")



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
