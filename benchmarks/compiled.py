"""Under torch.compile: torch.compile of a tensormagic callable against torch.compile of the
plain torch it replaces (torch.einsum for the contraction cases, torch.nn.functional for the
language cases), forward + backward, float32, CPU; and the eager ratio beside it.

    python benchmarks/compiled.py [--reps 9] [--threads N] [--clock wall|cpu] [--only KEY ...]
                                  [--out benchmarks/compiled.md]

Each callable is compiled with the default backend (inductor), fullgraph=True for tensormagic.
The first call of each (dynamo, AOT autograd and inductor's C++ compile: seconds) is timed on
its own; then both compiled functions are timed interleaved (benchmarks/timer.py) and the ratio
is the median of per-round ratios tensormagic / torch (lower is better).
"""
from __future__ import annotations

import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensormagic as tm  # noqa: E402
from cases import CASES as CONTRACTIONS  # noqa: E402
from language import CASES as LANGUAGE, inputs, runner  # noqa: E402
from bench import _git_head  # noqa: E402
from timer import measure, paired_ratio, table_arguments, threaded  # noqa: E402

SKIPPED = ("peps",)  # 50 tensors: minutes of inductor compilation for one row

# What the torch side runs when torch.compile of its own form fails (the failure goes in a note).
FALLBACKS = {"attention": ("F.scaled_dot_product_attention",
                           lambda Q, K, V: torch.nn.functional.scaled_dot_product_attention(Q, K, V, scale=1 / 8))}


def contraction_rows():
    """(key, statement, float inputs, index tensors, plain torch, sizes) per contraction case."""
    for case in CONTRACTIONS:
        if case.key in SKIPPED:
            continue
        xs = [torch.randn(case.shape(op)) * case.element_scale(op) for op in case.operands]
        if case.dense_tanh:
            def ref(x, w, c, eq=case.equation):
                return torch.tanh(torch.einsum(eq, x, w) + c)
        else:
            def ref(*ts, eq=case.equation):
                return torch.einsum(eq, *ts)
        order = [op.name for op in case.operands]
        yield case.key, case.statement, xs, [], ref, None, order


def language_rows():
    for case in LANGUAGE:
        xs, ints = inputs(case)
        yield case.key, case.statement, xs, ints, case.torch, case.sizes, "language"


def _reordered(fn, order):
    """fn taking its inputs in the case's operand order (the statement reads them in its own)."""
    perm = [order.index(n) for n in fn.inputs]

    def call(*ts):
        return fn(*(ts[k] for k in perm))
    return call


def first_call(f, xs, g, ints):
    leaves = [x.detach().clone().requires_grad_() for x in xs]
    start = time.perf_counter()
    f(*leaves, *ints).backward(g)
    return time.perf_counter() - start


def main():
    p = table_arguments(reps=9, out="compiled.md")
    args = threaded(p.parse_args())
    torch._inductor.config.force_disable_caches = True  # first calls compile: no cache from earlier runs
    torch.manual_seed(0)
    rows, notes = [], []
    for key, statement, xs, ints, ref, sizes, order in list(contraction_rows()) + list(language_rows()):
        if args.only and not any(word in key for word in args.only):
            continue
        fn = tm.tensorgrad(statement, sizes=sizes)
        call = fn if order in (None, "language") else _reordered(fn, order)
        want = ref(*xs, *ints)
        # float32, summed in different orders: an error relative to the result's scale
        tol = dict(rtol=1e-3, atol=1e-3 * float(want.abs().max()))
        torch.testing.assert_close(call(*xs, *ints), want, **tol)
        g = torch.randn_like(want)
        torch._dynamo.reset()
        compiled_ref = torch.compile(ref)
        compiled_tm = torch.compile(call, fullgraph=True)
        try:
            first_ref = first_call(compiled_ref, xs, g, ints)
        except Exception as e:  # noqa: BLE001 - torch's own failure is reported, not fatal
            if order != "language" or key not in FALLBACKS:
                raise
            name, ref = FALLBACKS[key]
            notes.append(f"{key}: torch.compile of the plain torch form fails in torch {torch.__version__} "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:80]}); the torch side is {name}, "
                         "compiled.")
            torch._dynamo.reset()
            compiled_ref = torch.compile(ref)
            first_ref = first_call(compiled_ref, xs, g, ints)
        firsts = (first_ref, first_call(compiled_tm, xs, g, ints))
        torch.testing.assert_close(compiled_tm(*xs, *ints), want, **tol)
        stats = measure({"torch": runner(compiled_ref, xs, g, ints), "tm": runner(compiled_tm, xs, g, ints),
                         "eager torch": runner(ref, xs, g, ints), "eager tm": runner(call, xs, g, ints)},
                        reps=args.reps, warmup=2, min_sample_s=0.1, clock=args.clock)
        ratio = paired_ratio(stats["tm"], stats["torch"])
        eager = paired_ratio(stats["eager tm"], stats["eager torch"])
        rows.append((key, "torch.nn.functional" if order == "language" else "torch.einsum",
                     stats, ratio, eager, firsts))
        print(f"{key:<18} compiled torch {stats['torch'].median * 1e3:8.2f} ms  compiled tm "
              f"{stats['tm'].median * 1e3:8.2f} ms  ratio {ratio:.2f}  (eager {eager:.2f}; first calls "
              f"{firsts[0]:.1f} s / {firsts[1]:.1f} s)", flush=True)
    lines = ["# Under torch.compile: forward + backward, float32, CPU", "",
             f"Command: `python benchmarks/compiled.py {' '.join(sys.argv[1:])}`; torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), {args.clock} clock, {platform.processor() or platform.machine()}, "
             f"tensormagic commit {_git_head()}, load average at end {os.getloadavg()[0]:.2f}.", "",
             "torch.compile (inductor) of each side; ratio: the median of per-round tensormagic / torch "
             "times of the compiled functions (lower is better); eager: the same ratio uncompiled; first "
             "call: the compiling call's time, torch / tensormagic.", "",
             "| case | against | compiled torch | compiled tensormagic | ratio | eager ratio | first call (s) |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for key, against, stats, ratio, eager, firsts in rows:
        lines.append(f"| {key} | {against} | {stats['torch'].median * 1e3:.2f} ms | {stats['tm'].median * 1e3:.2f} ms | "
                     f"{ratio:.2f}× | {eager:.2f}× | {firsts[0]:.1f} / {firsts[1]:.1f} |")
    lines += ["", *notes] if notes else []
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
