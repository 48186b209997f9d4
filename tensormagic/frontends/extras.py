"""What the magic adds for issue 9's flags: diagrams, check badges, export; kept here so the
magic stays thin."""
import shlex

from IPython.core.error import UsageError
from IPython.display import display


def show_extras(fn, args, verbose):
    """--diagram (also in verbose mode), --hessian and --check; --quiet shows only a failed
    check."""
    if (args.diagram or verbose) and not args.quiet:
        display(fn.diagram())
        if verbose:
            display(fn.plan_diagram())
    if args.hessian and not args.quiet:
        display(fn.hessian_view(None if args.hessian == "all" else args.hessian))
    if args.check:
        report = fn.check()
        if not args.quiet or not report.ok:
            display(report)


def export_arguments(line):
    """%tensorgrad_export NAME path.py → (NAME, path)."""
    words = shlex.split(line)
    if len(words) != 2:
        raise UsageError("usage: %tensorgrad_export NAME path.py  (NAME: a callable defined "
                         "by %%tensorgrad, e.g. A_fn)")
    return words


def export_message(fn, path):
    """Export fn to path → the message to print."""
    try:
        fn.export(path)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    return f"wrote {path}: {fn.name}({', '.join(fn.inputs)}), needs only torch"
