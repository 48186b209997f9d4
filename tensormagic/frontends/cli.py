"""Derive gradients from the command line.

    python -m tensormagic "A[i,k] := B[i,j] * C[j,k] * D[l,l]" --wrt "B C" [--code]

prints the statement (with every Σ where it sits) and the derived formulas (in a
multi-statement cell, the gradients of the intermediates too).
Several statements may be given as several arguments.  ``--code`` and
``--plan`` also print the generated source and the contraction plan, made for
a small example size along every index.  Errors print one short message and
exit with status 2.
"""
import argparse
import sys

from ..language.errors import NotationError
from ..runtime.function import tensorgrad


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    text = "\n".join(args.statements)
    try:
        fn = tensorgrad(text, wrt=args.wrt, name=args.name, memory=args.memory,
                        sizes=_pairs(parser, args.sizes, "--sizes"), pad=_pairs(parser, args.pad, "--pad"),
                        symmetric=args.symmetric)
        print(_report(fn, args.code, args.plan, args.hessian))
    except NotationError as err:
        print(err.short(), file=sys.stderr)
        return 2
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m tensormagic",
        description="Show index-notation statements and their symbolically derived gradients.",
    )
    parser.add_argument("statements", nargs="+", metavar="STATEMENT",
                        help='e.g. "A[i,k] := B[i,j] * C[j,k]" (several: one argument each)')
    parser.add_argument("--wrt", help='inputs to differentiate, e.g. "B C" (default: all)')
    parser.add_argument("--name", type=_identifier,
                        help="name of the function (default: <last output>_fn)")
    parser.add_argument("--memory", choices=("high", "low"), default="high")
    parser.add_argument("--sizes", metavar="a=2,b=3", help="sizes of indices no shape fixes")
    parser.add_argument("--pad", metavar="x=1", help="tensors read as zero outside their bounds at "
                                                     "shifted subscripts, by so many places")
    parser.add_argument("--symmetric", metavar="W,V", help="inputs that are symmetric matrices: "
                                                           "their gradient is the symmetric part")
    parser.add_argument("--hessian", metavar="W,V", help="also print the Hessian of the last output "
                                                         "(a scalar) with respect to these inputs (all: wrt)")
    parser.add_argument("--code", action="store_true", help="also print the generated source")
    parser.add_argument("--plan", action="store_true", help="also print the contraction plan")
    return parser


def _identifier(text):
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a Python name")
    return text


def _pairs(parser, text, flag):
    """a=2,b=3 → {"a": 2, "b": 3}; a malformed pair is a usage error (status 2)."""
    out = {}
    for item in (text or "").replace(" ", ",").split(","):
        name, _, value = item.partition("=")
        if item and (not name.isidentifier() or not value.isdigit() or int(value) < 1):
            parser.error(f"{flag} takes name=number pairs like a=2,b=3, not {item!r}")
        if item:
            out[name] = int(value)
    return out


def _report(fn, code, plan, hessian=None):
    parts = [
        f"{fn.name}({', '.join(fn.inputs)}) -> {', '.join(fn.outputs)}",
        "\n".join([fn.statement] + fn._padding_note()),
        # intermediates first (ΔH), as reverse mode computes them: every Δ used is defined
        "gradients:\n" + "\n".join([*fn.intermediate_formulas.values(),
                                     *(fn.formulas[name] for name in fn.wrt)]),
    ]
    if hessian:
        parts.append(f"hessian:\n{fn.hessian_view(None if hessian == 'all' else hessian)}")
    if code:
        parts.append(f"generated code:\n{fn.code}")
    if plan:
        parts.append(f"contraction plan:\n{fn.plan}")
    return "\n\n".join(parts)

