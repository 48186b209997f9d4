"""Line-by-line cost of tensormagic's generated forward and backward.

    python benchmarks/tm_steps.py ring tucker        # one table per case
    python benchmarks/tm_steps.py --all --threads 1  # every case, steadier numbers

For each assignment line of `fn.code` it reports the time of that line alone
(median of a few runs; process CPU time when --threads 1, else wall time),
its share of the total, and the memory copies (aten::copy_) it triggers, with
the number of elements copied.  Copies usually come from `.reshape` of a
permuted view: that is where layout choices cost time.

It also prints, for comparison, the profiled totals of torch.einsum +
autograd and opt_einsum + autograd on the same inputs.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import cases as cases_mod  # noqa: E402
from methods import make_methods  # noqa: E402
from verify import make_inputs  # noqa: E402

ASSIGN = re.compile(r"^\s*(\w+) = (.+?)(\s+#.*)?$")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = [c.key for c in cases_mod.CASES] if args.all else args.cases
    for case in cases_mod.select(keys):
        report(case.tiny() if args.tiny else case, args.runs)


def report(case, runs: int) -> None:
    import tensormagic as tm

    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    xs64, g64 = make_inputs(case)
    xs, g = [x.float() for x in xs64], g64.float()
    fn = tm.tensorgrad(case.statement)
    by_name = {op.name: x for op, x in zip(case.operands, xs)}
    args = [by_name[n].detach().requires_grad_() for n in fn.inputs]
    fn(*args).backward(g)  # compiles for these shapes; fn.code is now theirs
    env = {"torch": torch, "_dtype": torch.float32, "_device": torch.device("cpu"),
           "_grads": (g,), **{n: a.detach() for n, a in zip(fn.inputs, args)}}
    from tensormagic.compiler.kernels import NAMESPACE  # helpers the generated code calls
    env.update(NAMESPACE)
    rows = []
    for line in fn.code.splitlines():
        m = ASSIGN.match(line)
        if not m or m.group(1) == "_saved":
            continue
        name, expr = m.group(1), m.group(2)
        if expr.startswith("_saved"):
            continue
        code = compile(expr, "<line>", "eval")
        env[name] = eval(code, env)  # noqa: S307 - the engine's own generated code
        t = _median_time(lambda: eval(code, env), runs, clock)  # noqa: S307
        n, elems = _copies(lambda: eval(code, env))  # noqa: S307
        rows.append((t, n, elems, line.strip()))
    total = sum(r[0] for r in rows) or 1e-12
    print(f"\n=== {case.key}: {case.statement}  ({case.size_label()}), "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'ms':>8} {'share':>6} {'copies':>6} {'Melem':>7}  line")
    for t, n, elems, line in rows:
        print(f"{t * 1e3:8.3f} {t / total:6.1%} {n:6d} {elems / 1e6:7.2f}  {line[:150]}")
    print(f"{total * 1e3:8.3f} ms in generated code; copies: "
          f"{sum(r[1] for r in rows)}, {sum(r[2] for r in rows) / 1e6:.2f} M elements")
    for m in make_methods():
        if m.key in ("einsum", "opt_einsum") and m.applies(case):
            r = m.prepare(case, xs, g)
            r.fwd_bwd()
            t = _median_time(r.fwd_bwd, runs, clock)
            n, elems = _copies(r.fwd_bwd)
            print(f"{t * 1e3:8.3f} ms {m.label} + autograd; copies: {n}, "
                  f"{elems / 1e6:.2f} M elements")


def _median_time(f, runs: int, clock) -> float:
    f()
    ts = []
    for _ in range(runs):
        t0 = clock()
        f()
        ts.append(clock() - t0)
    return statistics.median(ts)


def _copies(f) -> tuple[int, int]:
    """(number of aten::copy_ calls, elements copied) during f()."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        f()
    n = elems = 0
    for e in prof.events():
        if e.name == "aten::copy_":
            n += 1
            elems += math.prod(e.input_shapes[0]) if e.input_shapes else 0
    return n, elems


if __name__ == "__main__":
    main()
