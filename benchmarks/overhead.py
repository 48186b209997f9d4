"""Where a tiny call's time goes: tensormagic beside the least any autograd.Function costs.

    python benchmarks/overhead.py            # writes benchmarks/overhead.md

At tiny sizes (every index 4; 2 for the PEPS) a forward + backward is per-call overhead, not
arithmetic. For each case with three or more tensors this times, interleaved, with inputs that
require grad and `x.grad = None` before each call (as bench.py does):

  torch.einsum    torch.einsum + autograd (the baseline)
  tensormagic     fn(*xs).backward(g)
  generated code  the generated forward and backward called directly, without autograd
  floor           an autograd.Function with the same inputs that computes nothing: its forward
                  returns an empty output, its backward empty gradients; what any custom
                  Function pays for apply, saving its inputs, the engine and AccumulateGrad

floor + generated code is the least a tensormagic call could cost; the columns show how far
the ≥3× target (tensormagic / torch.einsum ≤ 0.33) is from it.

A second table does the same for the model cells of benchmarks/language.py at their own sizes,
against torch.nn.functional + autograd: where a cell is slower than F, whether the generated
code or the custom Function around it is the difference.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import torch  # noqa: E402

import cases as cases_mod  # noqa: E402
import language as language_mod  # noqa: E402
from bench import environment  # noqa: E402
from timer import measure, paired_ratio  # noqa: E402
from verify import make_inputs  # noqa: E402

import tensormagic as tm  # noqa: E402


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(shape, *xs):
        return xs[0].new_empty(shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[1:])

    @staticmethod
    def backward(ctx, g):
        return (None, *(torch.empty_like(x) for x in ctx.saved_tensors))


def _runners(xs, compiled, plain, g):
    """(around: a call with the inputs' gradients cleared first; generated: the generated
    forward and backward alone, as autograd runs them: without grad mode, by which the kernels
    pick their in-place forms)."""
    def around(f):
        def call():
            for x in xs:
                x.grad = None
            f()
        return call

    def generated():
        with torch.no_grad():
            _, saved = compiled.forward(*plain)
            compiled.backward(list(saved), (g,))
    return around, generated


def timings(case, reps):
    xs64, g64 = make_inputs(case)
    xs = [x.float().requires_grad_() for x in xs64]
    g = g64.float()
    fn = tm.tensorgrad(case.statement)
    order = [[op.name for op in case.operands].index(n) for n in fn.inputs]
    mine = [xs[i] for i in order]
    fn(*mine)
    plain = [x.detach() for x in mine]

    around, generated = _runners(xs, fn._last, plain, g)
    fns = {"einsum": around(lambda: torch.einsum(case.equation, *xs).backward(g)),
           "tm": around(lambda: fn(*mine).backward(g)),
           "generated": generated,
           "floor": around(lambda: _Floor.apply(tuple(g.shape), *xs).backward(g))}
    if not case.einsum_ok:
        del fns["einsum"]
    return measure(fns, reps, warmup=20, min_sample_s=0.04)


def language_timings(case, reps):
    """F, tensormagic, its generated code alone and the floor, for one model cell."""
    xs, ints = language_mod.inputs(case)
    xs = [x.requires_grad_() for x in xs]
    fn = tm.tensorgrad(case.statement, sizes=case.sizes)
    out = fn(*xs, *ints)
    g = torch.randn_like(out)
    plain = [x.detach() for x in xs] + list(ints)

    around, generated = _runners(xs, fn._last, plain, g)
    fns = {"F": around(lambda: case.torch(*xs, *ints).backward(g)),
           "tm": around(lambda: fn(*xs, *ints).backward(g)),
           "generated": generated,
           "floor": around(lambda: _Floor.apply(tuple(g.shape), *xs).backward(g))}
    return measure(fns, reps, warmup=3, min_sample_s=0.05)


def language_rows(reps, only=None):
    rows = []
    for case in language_mod.CASES:
        if only and not any(word in case.key for word in only):
            continue
        st = language_timings(case, reps)
        us = {k: s.median * 1e6 for k, s in st.items()}
        least = us["floor"] + us["generated"]
        rows.append(f"| {case.key} | {us['F']:.0f} | {us['tm']:.0f} "
                    f"({paired_ratio(st['tm'], st['F']):.2f}×) | {us['generated']:.0f} "
                    f"({us['generated'] / us['F']:.2f}×) | {us['floor']:.0f} | "
                    f"{least:.0f} ({least / us['F']:.2f}×) |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--output", default=str(HERE / "overhead.md"))
    p.add_argument("--only", nargs="*", help="model cells: only those whose key contains one of these")
    p.add_argument("--no-tiny", action="store_true", help="only the model cells' table")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    env = environment()
    rows = []
    for case in [] if args.no_tiny else cases_mod.CASES:
        if len(case.operands) < 3 or case.dense_tanh or not case.einsum_ok:
            continue
        tiny = case.tiny()
        st = timings(tiny, args.reps)
        us = {k: s.median * 1e6 for k, s in st.items()}
        least = us["floor"] + us["generated"]
        rows.append(f"| {case.key} | {us['einsum']:.0f} | {us['tm']:.0f} "
                    f"({paired_ratio(st['tm'], st['einsum']):.2f}×) | {us['generated']:.0f} | "
                    f"{us['floor']:.0f} | {least:.0f} ({least / us['einsum']:.2f}×) |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Per-call overhead at tiny sizes (every index 4), CPU",
        "",
        f"Command: `python benchmarks/overhead.py`; {env['date']}; torch {env['torch']}; "
        f"{env['cpu']}, {env['logical cpus']} logical cpus; tensormagic commit "
        f"{env['tensormagic commit']}; load average {env['load average at start']}.",
        "",
        "µs per forward + backward, median of interleaved repetitions; in parentheses, "
        "time / torch.einsum time. *floor*: an autograd.Function that computes nothing; "
        "*generated*: tensormagic's generated forward and backward without autograd; "
        "*floor + generated*: the least a tensormagic call could cost.",
        "",
        "| case | torch.einsum | tensormagic | generated | floor | floor + generated |",
        "|---|--:|--:|--:|--:|--:|",
        *rows, "",
        "## The model cells at their sizes, against torch.nn.functional",
        "",
        "µs per forward + backward, as above; in parentheses, time / F time. *generated*: "
        "the generated code without autograd, the part of a call that is ours to make faster; "
        "*floor*: the empty autograd.Function with the cell's inputs.",
        "",
        "| case | F | tensormagic | generated | floor | floor + generated |",
        "|---|--:|--:|--:|--:|--:|",
        *language_rows(args.reps, args.only), ""])
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
