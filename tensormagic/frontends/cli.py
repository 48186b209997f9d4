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
    args = _parser().parse_args(argv)
    text = "\n".join(args.statements)
    try:
        fn = tensorgrad(text, wrt=args.wrt, name=args.name, memory=args.memory)
        print(_report(fn, args.code, args.plan))
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
    parser.add_argument("--code", action="store_true", help="also print the generated source")
    parser.add_argument("--plan", action="store_true", help="also print the contraction plan")
    return parser


def _identifier(text):
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a Python name")
    return text


def _report(fn, code, plan):
    parts = [
        f"{fn.name}({', '.join(fn.inputs)}) -> {', '.join(fn.outputs)}",
        fn.statement,
        # intermediates first (ΔH), as reverse mode computes them: every Δ used is defined
        "gradients:\n" + "\n".join([*fn.intermediate_formulas.values(),
                                     *(fn.formulas[name] for name in fn.wrt)]),
    ]
    if code:
        parts.append(f"generated code:\n{fn.code}")
    if plan:
        parts.append(f"contraction plan:\n{fn.plan}")
    return "\n\n".join(parts)

