"""Profile one benchmark case: where does a method spend its fwd+bwd time?

    python benchmarks/profile_case.py ring                  # torch.profiler, tm vs einsum
    python benchmarks/profile_case.py mps --tiny --cprofile # Python overhead at tiny size
    python benchmarks/profile_case.py tucker --methods tm --calls 20 --rows 25

torch.profiler tables are sorted by self CPU time (aten ops and autograd
nodes); --cprofile shows Python-level time (argument checks, dispatch, code
that tensormagic runs per call).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import cases as cases_mod  # noqa: E402
from methods import make_methods  # noqa: E402
from verify import make_inputs  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=[c.key for c in cases_mod.CASES])
    p.add_argument("--methods", nargs="*", default=["einsum", "tm"])
    p.add_argument("--tiny", action="store_true", help="every index of size 4")
    p.add_argument("--calls", type=int, default=10, help="profiled fwd+bwd calls")
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--cprofile", action="store_true", help="Python-level profile")
    p.add_argument("--shapes", action="store_true", help="group ops by input shapes")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    case = cases_mod.select([args.case])[0]
    case = case.tiny() if args.tiny else case
    xs64, g64 = make_inputs(case)
    xs, g = [x.float() for x in xs64], g64.float()
    print(f"{case.key}: {case.statement}   ({case.size_label()}), "
          f"{torch.get_num_threads()} threads")
    for m in make_methods():
        if m.key not in args.methods or not m.applies(case):
            continue
        runner = m.prepare(case, xs, g)
        for _ in range(3):
            runner.fwd_bwd()
        print(f"\n===== {m.label}: {args.calls} x fwd+bwd =====")
        if args.cprofile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.calls):
                runner.fwd_bwd()
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.rows)
            print(out.getvalue())
            continue
        with profile(activities=[ProfilerActivity.CPU],
                     record_shapes=args.shapes) as prof:
            for _ in range(args.calls):
                runner.fwd_bwd()
        print(_table(prof.key_averages(group_by_input_shape=args.shapes),
                     args.calls, args.rows))
        if m.key == "tm" and getattr(runner.fn, "plan", None):
            print(runner.fn.plan)


def _table(events, calls: int, rows: int) -> str:
    """Compact: self CPU ms per fwd+bwd, share, calls per fwd+bwd, shapes."""
    events = sorted(events, key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1
    lines = [f"total self CPU {total / 1e3 / calls:.2f} ms per fwd+bwd",
             f"{'self ms':>8} {'share':>6} {'calls':>6}  op  [input shapes]"]
    for e in events[:rows]:
        shapes = f"  {e.input_shapes}" if e.input_shapes else ""
        lines.append(f"{e.self_cpu_time_total / 1e3 / calls:8.3f} "
                     f"{e.self_cpu_time_total / total:6.1%} {e.count / calls:6.1f}  "
                     f"{e.key}{shapes}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
