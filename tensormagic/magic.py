"""IPython magics: ``%%tensorgrad`` and ``%tensorgrad_verbose``.

Load them with ``%load_ext tensormagic``.  The magics are thin: they parse
their arguments, call :func:`tensormagic.tensorgrad`, and then change the
notebook namespace all at once or not at all.
"""
import keyword

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

import tensormagic as tm


class TensorgradCellError(Exception):
    """A cell that failed; IPython shows its short message, not a traceback."""

    def _render_traceback_(self):
        return str(self).splitlines()


@magics_class
class TensorgradMagics(Magics):
    """``%%tensorgrad`` and ``%tensorgrad_verbose``; holds the verbose default."""

    verbose = False

    @magic_arguments("%tensorgrad")  # the usage line then reads %%tensorgrad
    @argument("names", nargs="*", metavar="NAME",
              help="inputs to differentiate with respect to (default: every input)")
    @argument("--name", metavar="FN", help="name of the callable (default: <last output>_fn)")
    @argument("--verbose", action="store_true",
              help="also show the generated Python source and the contraction plan")
    @argument("--quiet", action="store_true", help="show nothing but errors")
    @argument("--no-eval", action="store_true",
              help="only define the callable, even when every input exists")
    @argument("--memory", choices=("high", "low"), default="high",
              help="keep intermediates for the backward pass (high) or recompute them (low)")
    @argument("--sizes", metavar="a=2,b=3", help="sizes of indices no shape fixes (a pooling window)")
    @argument("--diagram", action="store_true", help="also draw the statements as tensor networks")
    @argument("--check", action="store_true",
              help="check each derived gradient against finite differences (✓/✗ and max error)")
    @cell_magic
    def tensorgrad(self, line, cell):
        """Turn index-notation statements into a differentiable torch function.

        The cell holds one statement per line, e.g. ``A[i,k] := B[i,j] * C[j,k]``.
        It defines the callable (``A_fn``) in the namespace, shows the statements
        and the derived gradient formulas, and, when every input exists in the
        namespace, evaluates the cell and binds each output (``A``).
        On any error nothing in the namespace changes.
        """
        args = parse_argstring(self.tensorgrad, line)
        if args.name is not None and not _is_name(args.name):
            raise UsageError(f"--name {args.name!r} is not a valid Python name")
        fn = _build(cell, args)
        if fn.name in fn.outputs:
            raise UsageError(f"--name {fn.name} would hide the output of the same name")
        missing = [n for n in fn.inputs if n not in self.shell.user_ns]
        evaluate = not args.no_eval and not missing
        outputs = self._evaluate(fn) if evaluate else {}
        self.shell.push({fn.name: fn, **outputs})
        if not args.quiet:
            try:
                _show(fn, outputs, missing, args.no_eval, args.verbose or self.verbose)
            except tm.NotationError as err:  # the example code of --verbose, say
                raise TensorgradCellError(err.short()) from None
        from .views import show_extras
        show_extras(fn, args, args.verbose or self.verbose)

    @line_magic
    def tensorgrad_export(self, line):
        """Write a compiled cell as a standalone module that needs only torch:
        ``%tensorgrad_export NAME path.py`` (NAME: the callable, e.g. A_fn)."""
        from .views import export_from_namespace
        print(export_from_namespace(self.shell.user_ns, line))

    @line_magic
    def tensorgrad_verbose(self, line):
        """Set the default of %%tensorgrad's --verbose: ``on`` or ``off`` (no argument: show it)."""
        word = line.strip().lower()
        if word in ("on", "off"):
            self.verbose = word == "on"
        elif word:
            raise UsageError(f"%tensorgrad_verbose takes 'on' or 'off', not {line.strip()!r}")
        print(f"tensorgrad verbose mode is {'on' if self.verbose else 'off'}")

    def _evaluate(self, fn):
        """Every output of the cell, computed from the namespace's inputs."""
        inputs = {n: self.shell.user_ns[n] for n in fn.inputs}
        try:
            return fn.evaluate(**inputs)
        except tm.NotationError as err:
            raise TensorgradCellError(err.short()) from None
        except (TypeError, ValueError, RuntimeError) as err:
            raise TensorgradCellError(f"{fn.name}: {type(err).__name__}: {err}") from None


def _is_name(text):
    return text.isidentifier() and not keyword.iskeyword(text)


def _build(cell, args):
    """The compiled cell, or a short error."""
    try:
        fn = tm.tensorgrad(cell, wrt=args.names or None, name=args.name, memory=args.memory,
                           sizes=_sizes(args.sizes))
        fn.derivation  # derived when first shown: before the namespace changes
        return fn
    except tm.NotationError as err:
        raise TensorgradCellError(err.short()) from None


def _sizes(text):
    """--sizes a=2,b=3 → {"a": 2, "b": 3}."""
    sizes = {}
    for item in (text or "").replace(" ", ",").split(","):
        if not item:
            continue
        name, _, value = item.partition("=")
        if not name.isidentifier() or not value.isdigit() or int(value) < 1:
            raise UsageError(f"--sizes takes index=size pairs like a=2,b=3, not {item!r}")
        sizes[name] = int(value)
    return sizes


def _show(fn, outputs, missing, no_eval, verbose):
    """The derivation as math, a status line, and in verbose mode the tangents (forward
    mode), code and plan."""
    from .mathml import cell_html
    display({"text/html": cell_html(fn, tangents=verbose), "text/latex": fn.latex(tangents=verbose),
             "text/plain": fn.render_text(tangents=verbose)}, raw=True)
    print(_status(fn, outputs, missing, no_eval))
    if verbose:
        _show_code(fn)


def _status(fn, outputs, missing, no_eval):
    signature = f"{fn.name}({', '.join(fn.inputs)})"
    if outputs:
        bound = ", ".join(f"{n} {_shape(t)}" for n, t in outputs.items())
        return f"defined {signature}; bound {bound}"
    if no_eval:
        return f"defined {signature}; not evaluated (--no-eval)"
    plural = "s" * (len(missing) > 1)
    return f"defined {signature}; not evaluated, missing input{plural}: {', '.join(missing)}"


def _shape(tensor):
    return "[" + "×".join(str(s) for s in tensor.shape) + "]" if tensor.dim() else "(scalar)"


def _show_code(fn):
    """The generated source behind the toggle, and the contraction plan."""
    from .widget import CodeToggle

    display(CodeToggle(fn.code))
    print(fn.plan)


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
