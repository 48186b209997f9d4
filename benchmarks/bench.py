"""Forward+backward benchmark: torch.einsum vs opt_einsum vs one einsum per
gradient vs tensormagic, float32, CPU (or CUDA: --device cuda, or benchmarks/gpu.py).

    python benchmarks/bench.py            # full run (a few minutes)
    python benchmarks/bench.py --quick    # smoke run (about a minute)
    python benchmarks/bench.py --cases matmul ring --methods einsum tm
    python benchmarks/bench.py --device cuda   # the same table on a GPU (its own sizes for ring)

Every method is first checked against torch autograd in float64; a method
that fails or disagrees is reported and not timed.  Timing is interleaved
(round-robin over methods within each repetition), median of the
repetitions after warm-up; on CUDA each sample is bracketed by
torch.cuda.synchronize().  Then one more call of each method measures its peak
memory (CPU: the profiler's memory events; CUDA: max_memory_allocated).
Writes benchmarks/results.md and results.json (results_cuda.* on a GPU).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repo root: import tensormagic uncompiled

import numpy as np  # noqa: E402
import opt_einsum as oe  # noqa: E402
import torch  # noqa: E402

import cases as cases_mod  # noqa: E402
from methods import BASELINE, make_methods, tensormagic_available  # noqa: E402
from report import (CaseResult, cases_table, memory_table, noise,  # noqa: E402
                    once_table, summary, targets, timing_table, verification)
from timer import measure, peak_bytes, time_once  # noqa: E402
from verify import TOL, make_inputs, reference, relative_error  # noqa: E402

FWD_ONLY = ("einsum", "tm")  # methods whose forward alone is also timed


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 7 repetitions, short samples (~1 min)")
    p.add_argument("--cases", nargs="*", metavar="CASE",
                   help=f"subset of {[c.key for c in cases_mod.CASES]}")
    p.add_argument("--methods", nargs="*", metavar="METHOD",
                   help="subset of einsum opt_einsum per_grad plain tm")
    p.add_argument("--reps", type=int, help="timed repetitions (>= 7)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing")
    p.add_argument("--no-large", action="store_true", help="skip the large sizes")
    p.add_argument("--no-tiny", action="store_true", help="skip the tiny sizes")
    p.add_argument("--tm-memory", choices=["high", "low"],
                   help="pass memory=... to tm.tensorgrad")
    p.add_argument("--threads", type=int,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default) or process CPU time (for a busy machine)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:n]")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    p.add_argument("--output", help="Markdown report path ('' to not write; default "
                   "benchmarks/results.md, results_cuda.md on a GPU)")
    args = p.parse_args(argv)
    if args.output is None:
        args.output = str(HERE / ("results.md" if args.device == "cpu" else "results_cuda.md"))
    if args.device != "cpu" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch sees no CUDA device")
    quick = args.quick
    args.reps = args.reps or (7 if quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    if args.reps < 7:
        p.error("--reps must be at least 7")
    # seconds one timing sample lasts at least (tiny calls are looped)
    args.min_sample_large = 0.01 if quick else 0.1
    args.min_sample_tiny = 0.004 if quick else 0.04
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def forward_gflop(case) -> float:
    _, info = oe.contract_path(case.equation, *case.shapes[:2 if case.dense_tanh else None],
                               shapes=True)
    return float(info.opt_cost) / 1e9


def run_case(case, methods, args, tiny: bool) -> CaseResult:
    result = CaseResult(case, tiny, forward_gflop(case))
    xs64, g64 = make_inputs(case, device=args.device)
    ref = reference(case, xs64, g64)
    xs, g = [x.float() for x in xs64], g64.float()
    runners = {}
    for m in methods:
        if not m.applies(case):
            continue
        try:
            runner, build_s = time_once(lambda: m.prepare(case, xs, g))
            got, first_s = time_once(runner.fwd_bwd)
            err = relative_error(got, ref)
            if tiny:  # the same method in float64: catches wrong math, not rounding
                runner64 = m.prepare(case, xs64, g64)
                result.err64[m.key] = relative_error(runner64.fwd_bwd(), ref)
        except Exception as e:  # noqa: BLE001 - a failing method is reported, not fatal
            log(traceback.format_exc())
            result.failures[m.key] = f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        result.err32[m.key] = err
        if not err <= TOL[torch.float32]:
            result.failures[m.key] = f"wrong answer, float32 error {err:.2e}"
            continue
        if result.err64.get(m.key, 0.0) > TOL[torch.float64]:
            result.failures[m.key] = f"wrong answer, float64 error {result.err64[m.key]:.2e}"
            continue
        runners[m.key] = runner
        if m.key == "tm":
            result.once.update({"tm:build": build_s, "tm:first": first_s})
            result.tm_plan = getattr(runner.fn, "plan", None)
    fns = {k: r.fwd_bwd for k, r in runners.items()}
    fns.update({f"{k}:fwd": runners[k].fwd for k in FWD_ONLY if k in runners})
    sync = torch.cuda.synchronize if args.device != "cpu" else (lambda: None)
    result.stats = measure(fns, args.reps, args.warmup,
                           args.min_sample_tiny if tiny else args.min_sample_large,
                           args.clock, sync)
    if not args.no_memory:
        for k, r in runners.items():
            r.reset()
            result.peak[k] = peak_bytes(r.fwd_bwd, args.device)
            r.reset()
    return result


def environment(device: str = "cpu") -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opt_einsum": oe.__version__,
        "numpy": np.__version__,
        "cpu": cpu,
        **({"gpu": torch.cuda.get_device_name(device)} if device != "cpu" else {}),
        "logical cpus": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch.einsum path": (f"opt_einsum {torch.backends.opt_einsum.strategy}"
                              if torch.backends.opt_einsum.enabled else "left to right"),
        "tensormagic commit": _git_head(),
        "load average at start": _load(),
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"
    except OSError:
        return "unknown"


def _git_head() -> str:
    """Short HEAD commit, flagged when tensormagic/ has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", "-C", str(HERE.parent), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD") or "no commit yet"
        dirty = git("status", "--porcelain", "--", "tensormagic")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes in tensormagic/" if dirty else "")


def render(args, env, methods, large, tiny, skipped, selected) -> str:
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    parts = [
        f"# tensormagic benchmark: forward + backward, float32, "
        f"{'CPU' if args.device == 'cpu' else 'CUDA (' + env.get('gpu', '?') + ')'}",
        "",
        f"Command: `{cmd}`  ",
        "\n".join(f"{k}: {v}  " for k, v in env.items()),
        "",
        f"Method: forward plus gradients of every input (`out = f(*xs); "
        f"out.backward(g)`), float32, {args.clock} clock time; {args.reps} repetitions after "
        f"{args.warmup} warm-up call(s), methods interleaved round-robin within each "
        f"repetition; the median is shown. Short calls are looped so one sample "
        f"lasts at least {args.min_sample_large * 1e3:g} ms (large) / "
        f"{args.min_sample_tiny * 1e3:g} ms (tiny). In parentheses: time / "
        f"torch.einsum time (lower is better), the median of the per-repetition "
        f"ratios. 'fwd+bwd/fwd' divides the fwd+bwd "
        f"time by the forward alone (inputs requiring grad)."
        + (" On CUDA every sample is bracketed by torch.cuda.synchronize()."
           if args.device != "cpu" else ""),
        "",
        "Methods: **torch.einsum** + autograd (baseline); **opt_einsum expr**: "
        "`contract_expression(eq, *shapes)` built once, torch backend, + autograd; "
        "**einsum per grad**: the TensorGrad.jl strategy, forward einsum plus, for "
        "each input, one torch.einsum of the upstream gradient with all other "
        "operands (no reuse of intermediates; torch.einsum still orders each "
        "contraction with opt_einsum); **plain torch**: `torch.tanh(X @ W + c)` + "
        "autograd; **tensormagic**: `fn = tm.tensorgrad(statement)` built once, "
        "then `fn(*xs).backward(g)`. torch.einsum takes at most 52 indices, so for the "
        "PEPS (105) its column is opt_einsum's path run as pairwise torch.einsum calls "
        "(the same as opt_einsum expr).",
        "",
    ]
    if skipped:
        parts += [f"Not run: {skipped}", ""]
    parts += ["## Cases", "", cases_table(selected), ""]
    if large:
        parts += ["## Large sizes (ms per fwd+bwd)", "",
                  timing_table(large, methods, BASELINE, "ms"), ""]
    if tiny:
        parts += ["## Tiny sizes, every index 4, 2 for the PEPS (µs per fwd+bwd: per-call overhead)", "",
                  timing_table(tiny, methods, BASELINE, "µs", flops=False), ""]
    if any(r.peak for r in large + tiny):
        parts += ["## Peak memory of one fwd+bwd (MiB above the inputs)", "",
                  memory_table(large + tiny, methods, BASELINE), ""]
    if any(r.once for r in large + tiny):
        parts += ["## tensormagic one-time cost", "", once_table(large, tiny), ""]
    parts += ["## Summary", "", summary(large, tiny, methods, BASELINE), "",
              "## Targets (issue 8)", "", targets(large, tiny, BASELINE), "",
              noise(large + tiny), "",
              "## Correctness", "", verification(large + tiny), ""]
    if args.device == "cpu":
        parts += companion_tables()
    return "\n".join(parts)


COMPANIONS = (("language.md", "The model cells, convolutions and pooling against torch.nn.functional"),
              ("compiled.md", "Under torch.compile"))


def companion_tables() -> list[str]:
    """The language and compiled tables (their own scripts write them), so one file holds all."""
    parts = []
    for name, title in COMPANIONS:
        path = HERE / name
        if path.exists():
            body = path.read_text().split("\n", 1)[1].strip()
            parts += [f"## {title} (copied from benchmarks/{name})", "", body, ""]
    return parts


def to_json(env, large, tiny) -> dict:
    def one(r: CaseResult):
        return dict(case=r.case.key, tiny=r.tiny, sizes=r.case.sizes,
                    statement=r.case.statement, equation=r.case.equation,
                    gflop_fwd=r.gflop,
                    stats={k: s.as_dict() for k, s in r.stats.items()},
                    err32=r.err32, err64=r.err64, failures=r.failures, once=r.once,
                    peak_bytes=r.peak)
    return dict(environment=env, results=[one(r) for r in large + tiny])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    selected = cases_mod.select(args.cases)
    methods = make_methods({"memory": args.tm_memory} if args.tm_memory else None)
    if args.methods:
        methods = tuple(m for m in methods if m.key in args.methods or m.key == BASELINE)
    skipped = ""
    if any(m.key == "tm" for m in methods) and (why := tensormagic_available()):
        skipped = f"tensormagic ({why})"
        methods = tuple(m for m in methods if m.key != "tm")
        log(f"skipping {skipped}")
    env = environment(args.device)
    log(f"torch {env['torch']}, {env['torch threads']} threads, {env['cpu']}")
    large, tiny = [], []
    for case in selected:
        if args.device != "cpu":
            case = case.on_cuda()
        if not args.no_large:
            log(f"{case.key} ({case.size_label()}) ...")
            large.append(run_case(case, methods, args, tiny=False))
        if not args.no_tiny:
            log(f"{case.key} (tiny) ...")
            tiny.append(run_case(case.tiny(), methods, args, tiny=True))
    env["load average at end"] = _load()
    text = render(args, env, methods, large, tiny, skipped, selected)
    print(text)
    if args.output:
        out = Path(args.output)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(to_json(env, large, tiny), indent=1))
        log(f"wrote {out} and {out.with_suffix('.json')}")
    return 1 if any(r.failures for r in large + tiny) else 0


if __name__ == "__main__":
    sys.exit(main())
