"""IPython magics: ``%%tensorgrad`` and ``%tensorgrad_verbose``.

Load them with ``%load_ext tensormagic``.  The magics are thin: they parse
their arguments, compile the cell with :func:`tensormagic.function.tensorgrad`,
check every name they would bind, and then change the notebook namespace all at
once or not at all.
"""
import difflib
import keyword
import types

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..language.errors import NotationError, NotationValueError
from ..runtime.function import TensorGradFunction, tensorgrad
from ..runtime.scale import memory_limit
from .outputs import live_inspector, planning_line, show


class TensorgradCellError(Exception):
    """A cell that failed; IPython shows its short message, not a traceback."""

    def _render_traceback_(self):
        return str(self).splitlines()


@magics_class
class TensorgradMagics(Magics):
    """``%%tensorgrad`` and ``%tensorgrad_verbose``; holds the verbose default."""

    verbose = False

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell, **kwargs)
        self._inspectors = {}  # callable name → its live inspector (in a kernel)

    @magic_arguments("%tensorgrad")  # the usage line then reads %%tensorgrad
    @argument("names", nargs="*", metavar="NAME",
              help="inputs to differentiate with respect to, separated by spaces or commas "
                   "(default: every input)")
    @argument("--name", metavar="FN", help="name of the callable (default: <last output>_fn)")
    @argument("--verbose", action="store_true",
              help="also show the generated Python source and the contraction plan")
    @argument("--quiet", action="store_true", help="show nothing but errors")
    @argument("--no-eval", action="store_true",
              help="only define the callable, even when every input exists")
    @argument("--memory", choices=("high", "low"), default="high",
              help="keep intermediates for the backward pass (high) or recompute them (low)")
    @argument("--sizes", metavar="a=2,b=3", help="sizes of indices no shape fixes (a pooling window)")
    @argument("--backend", default="eager", metavar="NAME",
              help="eager (default), or a torch.compile backend (inductor) for the generated code")
    @argument("--pad", metavar="x=1", help="tensors read as zero up to p places outside their bounds "
                                           "at shifted subscripts (x[i+a-1]: a 'same' convolution)")
    @argument("--memory-limit", metavar="BYTES",
              help="slice each product so that one slice holds at most this much, forward and "
                   "backward (bytes, or 2GB, 512MiB: 1KB = 1024 B)")
    @argument("--distributed", action="store_true",
              help="spread the slices over the ranks of torch.distributed's default group")
    @argument("--diagram", action="store_true", help="also draw the statements as tensor networks")
    @argument("--check", action="store_true",
              help="check each derived gradient against finite differences (✓/✗ and max error)")
    @argument("--symmetric", metavar="W,V", help="inputs that are symmetric matrices (Hermitian if "
                                                  "complex): their gradient is the symmetric part")
    @argument("--hessian", metavar="W,V", help="also show the Hessian of the last output (a scalar) "
                                                "with respect to these inputs (all: every input in wrt)")
    @argument("--bind", choices=("all", "last"), default="all",
              help="bind every output of the cell (all) or only the last statement's (last)")
    @cell_magic
    def tensorgrad(self, line, cell):
        """Turn index-notation statements into a differentiable torch function.

        The cell holds one statement per line, e.g. ``A[i,k] := B[i,j] * C[j,k]``.
        It defines the callable (``A_fn``) in the namespace, shows the statements
        and the derived gradient formulas, and, when every input exists in the
        namespace, evaluates the cell and binds each output (``A``; with
        ``--bind last`` only the last statement's).  On any error nothing in the
        namespace changes.
        """
        args = parse_argstring(self.tensorgrad, line)
        if args.name is not None and not _is_name(args.name):
            raise UsageError(f"--name {args.name!r} is not a valid Python name")
        fn = _build(cell, _names(args.names), args)
        ns = self.shell.user_ns
        _check_callable_name(fn, ns)
        missing = [n for n in fn.inputs if n not in ns]
        if not args.no_eval:
            _check_updates_exist(fn, missing)
        bound_names = fn.outputs if args.bind == "all" else fn.outputs[-1:]
        _check_outputs(bound_names, ns)
        live = None if args.quiet else live_inspector(self.shell)
        evaluated = not args.no_eval and not missing
        slot = planning_line(fn) if live and evaluated else None
        outputs = {}
        if evaluated:
            values = self._evaluate(fn, slot)
            outputs = {n: values[n] for n in bound_names}
        self.shell.push({fn.name: fn, **outputs})
        shown = None
        if not args.quiet:
            stale = [n for n in bound_names if n in ns and n not in outputs]
            status = _status(fn, outputs, missing, args.no_eval, _suggestions(missing, ns), stale)
            try:
                shown = show(fn, status, args.verbose or self.verbose, live, slot,
                             inputs=lambda: _current_inputs(fn, self.shell.user_ns))
            except NotationError as err:  # the example code of --verbose, say
                raise TensorgradCellError(err.short()) from None
        self._replace_inspector(fn.name, shown)
        from .extras import show_extras
        show_extras(fn, args, args.verbose or self.verbose)

    @line_magic
    def tensorgrad_export(self, line):
        """Write a compiled cell as a standalone module that needs only torch:
        ``%tensorgrad_export NAME path.py`` (NAME: the callable, e.g. A_fn)."""
        from .extras import export_arguments, export_message
        name, path = export_arguments(line)
        fn = self.shell.user_ns.get(name)
        if not isinstance(fn, TensorGradFunction):
            raise UsageError(f"{name!r} is not a callable defined by %%tensorgrad")
        print(export_message(fn, path))

    @line_magic
    def tensorgrad_verbose(self, line):
        """Set the default of %%tensorgrad's --verbose: ``on`` or ``off`` (no argument: show it)."""
        word = line.strip().lower()
        if word in ("on", "off"):
            self.verbose = word == "on"
        elif word:
            raise UsageError(f"%tensorgrad_verbose takes 'on' or 'off', not {line.strip()!r}")
        print(f"tensorgrad verbose mode is {'on' if self.verbose else 'off'}")

    def _replace_inspector(self, name, inspector):
        """Close the live inspector of the callable this name held before: the kernel then
        lets it go, and its cell falls back to its static view (the callable is replaced)."""
        old = self._inspectors.pop(name, None)
        if old is not None:
            old.close()
        if inspector is not None:
            self._inspectors[name] = inspector

    def _evaluate(self, fn, slot=None):
        """Every output of the cell, computed from the namespace's inputs (slot: the planning
        line, emptied if the call fails: the error is all the cell shows)."""
        inputs = {n: self.shell.user_ns[n] for n in fn.inputs}
        try:
            return fn.evaluate(**inputs)
        except (NotationError, TypeError, ValueError, RuntimeError) as err:
            if slot is not None:  # (empty text: Lab calls a bundle with no type unrenderable)
                slot.update({"text/plain": ""}, raw=True)
            if isinstance(err, NotationError):
                raise TensorgradCellError(err.short()) from None
            raise TensorgradCellError(f"{fn.name}: {type(err).__name__}: {err}") from None


def _is_name(text):
    return text.isidentifier() and not keyword.iskeyword(text)


def _names(words):
    """`B C`, `B, C` and `B,C` all name B and C."""
    return " ".join(words).replace(",", " ").split()


def _build(cell, names, args):
    """The compiled cell, or a short error."""
    try:
        fn = tensorgrad(cell, wrt=names or None, name=args.name, memory=args.memory,
                        sizes=_sizes(args.sizes), pad=_sizes(args.pad, "--pad", "tensor=places like x=1"),
                        symmetric=args.symmetric, memory_limit=_memory_limit(args.memory_limit),
                        distributed=args.distributed, backend=args.backend)
        fn.derivation  # derived when first shown: before the namespace changes
        if args.hessian:
            fn.hessian_view(None if args.hessian == "all" else args.hessian)
        return fn
    except NotationError as err:
        raise TensorgradCellError(err.short()) from None
    except ValueError as err:  # an option's value (--backend)
        raise UsageError(str(err)) from None


def _memory_limit(text):
    """--memory-limit 2GB → '2GB' (tensorgrad reads it); a bad one is a one-line usage error."""
    if text is None:
        return None
    try:
        memory_limit(text)
    except ValueError as err:
        raise UsageError(f"--memory-limit: {err}") from None
    return text


def _sizes(text, flag="--sizes", what="index=size pairs like a=2,b=3"):
    """--sizes a=2,b=3 → {"a": 2, "b": 3} (and --pad x=1 alike)."""
    sizes = {}
    for item in (text or "").replace(" ", ",").split(","):
        if not item:
            continue
        name, _, value = item.partition("=")
        if not name.isidentifier() or not value.isdigit() or int(value) < 1:
            raise UsageError(f"{flag} takes {what}, not {item!r}")
        sizes[name] = int(value)
    return sizes


def _check_callable_name(fn, ns):
    """The callable may replace an earlier callable, never an input, an output or anything else."""
    if fn.name in fn.outputs:
        raise UsageError(f"--name {fn.name} would hide the output of the same name")
    if fn.name in fn.inputs:
        raise UsageError(f"--name {fn.name} would overwrite the cell's input {fn.name}: "
                         f"choose another name")
    if fn.name in ns and not isinstance(ns[fn.name], TensorGradFunction):
        raise UsageError(f"the callable's name {fn.name} is already {_kind(ns[fn.name])} in the "
                         f"namespace: choose another with --name")


def _check_updates_exist(fn, missing):
    """`A[i] = ...` and `A[i] += ...` update an A that exists; a missing one is a mistake."""
    for st in fn.cell.statements:
        if st.op != ":=" and st.target in missing:
            span = st.target_span or (None, None)
            raise TensorgradCellError(NotationValueError(
                f"'{st.target}' does not exist: use := to create it ({st.op} updates an "
                f"existing tensor)", st.text, st.lineno, *span).short())


def _check_outputs(names, ns):
    """Outputs replace values, never a module, a function or a class (get_ipython, torch)."""
    for name in names:
        if name in ns and _is_code(ns[name]):
            raise TensorgradCellError(
                f"the output {name} would overwrite {_kind(ns[name])} in the namespace: "
                f"rename the output, or bind only the last one with --bind last")


def _is_code(value):
    return isinstance(value, types.ModuleType) or callable(value)


def _kind(value):
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _suggestions(missing, ns):
    """For each missing input, a defined name it may be a typo of."""
    known = [n for n in ns if not n.startswith("_") and not _is_code(ns[n])]
    close = {n: difflib.get_close_matches(n, known, n=1, cutoff=0.5) for n in missing}
    return {n: c[0] for n, c in close.items() if c}


def _status(fn, outputs, missing, no_eval, suggestions, stale):
    """One line: what was defined, and what was bound or why nothing was."""
    signature = f"{fn.name}({', '.join(fn.inputs)})"
    if outputs:
        bound = ", ".join(f"{n} {_shape(t)}" for n, t in outputs.items())
        skipped = [n for n in fn.outputs if n not in outputs]
        rest = f"; not bound: {', '.join(skipped)} (--bind last)" if skipped else ""
        return f"defined {signature}; bound {bound}{rest}"
    if no_eval:
        why = "not evaluated (--no-eval)"
    else:
        named = [n + (f" (did you mean {suggestions[n]}?)" if n in suggestions else "")
                 for n in missing]
        why = f"not evaluated, missing input{'s' * (len(missing) > 1)}: {', '.join(named)}"
    if stale:
        why += f"; {', '.join(stale)} still hold{'s' * (len(stale) == 1)} an earlier value"
    return f"defined {signature}; {why}"


def _shape(tensor):
    return "[" + "×".join(str(s) for s in tensor.shape) + "]" if tensor.dim() else "(scalar)"


def _current_inputs(fn, ns):
    """The cell's inputs as the notebook holds them now (what "Check gradients" checks at), or
    None where one is missing or is not a tensor, an array or a number: then small random ones."""
    values = [ns.get(n) for n in fn.inputs]
    if all(hasattr(v, "shape") or isinstance(v, (int, float, complex)) for v in values):
        return values
    return None


def load_ipython_extension(ip):
    """Register the magics (``%load_ext tensormagic``)."""
    ip.register_magics(TensorgradMagics)


def unload_ipython_extension(ip):
    """Remove the magics (``%unload_ext tensormagic``), undoing what registering did."""
    manager = ip.magics_manager
    for kind, names in TensorgradMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    instance = manager.registry.pop(TensorgradMagics.__name__, None)
    if instance in ip.configurables:
        ip.configurables.remove(instance)
