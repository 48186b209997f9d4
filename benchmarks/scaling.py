"""Scaling up: a memory budget by slicing (one process), and the slices over torch.distributed.

    python benchmarks/scaling.py                  # both parts (a few minutes); writes scaling.md
    python benchmarks/scaling.py --quick          # a 4x4 PEPS, fewer repetitions (smoke run)
    python benchmarks/scaling.py --part budget    # or --part ranks
    python benchmarks/scaling.py --device cuda --world 8   # a GPU node: NCCL, one GPU per rank

Budget: the norm <psi|psi> of a PEPS (benchmarks/cases.py) whose unsliced forward + backward
peaks above the budget, forward plus every gradient, float32. Methods, interleaved round-robin
(benchmarks/timer.py): tensormagic unsliced; tensormagic with memory_limit; cotengra's sliced
tree contracted slice by slice with torch autograd, each slice under
torch.utils.checkpoint (so that autograd keeps one slice's intermediates at a time), and the
same without checkpoint; cotengra's unsliced tree with autograd. Peak memory of one call: the
profiler's memory events on the CPU, max_memory_allocated on CUDA (as benchmarks/bench.py),
above the inputs. Every method's value and gradients are checked against unsliced
tensormagic.

Ranks: the same sliced contraction with distributed=True, spawned over 1 and over 2 ranks
(gloo on the loopback, 1 thread each; NCCL with --device cuda), each call between barriers;
the speed-up is 1 rank's median time over N ranks'. On a shared machine the figures are noisy:
the ratios, taken side by side, are what to read.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import cases  # noqa: E402
import tensormagic as tm  # noqa: E402
from tensormagic.runtime.scale import memory_limit  # noqa: E402
from timer import measure, paired_ratio, peak_bytes  # noqa: E402

MiB = 2 ** 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 4x4 PEPS, 3 repetitions")
    p.add_argument("--part", choices=("budget", "ranks", "both"), default="both")
    p.add_argument("--peps", type=int, nargs=2, metavar=("N", "D"), help="grid side and bond size")
    p.add_argument("--budgets", nargs="*", help="memory limits, e.g. 128MiB 32MiB")
    p.add_argument("--reps", type=int, help="timed repetitions")
    p.add_argument("--world", type=int, default=2, help="ranks of the ranks part (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--output", default=str(HERE / "scaling.md"), help="'' to not write")
    args = p.parse_args(argv)
    args.peps = args.peps or ((4, 4) if args.quick else (6, 3))
    args.budgets = args.budgets or (["1MiB", "256KiB"] if args.quick else ["128MiB", "64MiB", "32MiB"])
    args.reps = args.reps or (3 if args.quick else 5)
    if args.device != "cpu" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch sees no CUDA device")
    return args


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peps(args):
    n, bond = args.peps
    return cases.peps_norm(n, bond, 2)


def inputs(case, device, seed=0):
    """The PEPS tensors, entries N(0, 1/4) (the norm stays well inside float32's range)."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(case.shape(op), generator=g) / 2).to(device).requires_grad_()
            for op in case.operands]


def forward_backward(fn, xs):
    """The call the benchmark times: the value and every gradient."""
    def call():
        out = fn(*xs)
        return out.detach(), torch.autograd.grad(out, xs)
    return call


# -- the budget part -------------------------------------------------------------------------
def cotengra_tree(case, target=None):
    """cotengra's path for the network (and its slices, to `target` elements per intermediate),
    found as a user would: a seeded greedy hyper-search."""
    import cotengra as ctg
    opt = ctg.HyperOptimizer(methods=["greedy"], minimize="combo", max_repeats=128, max_time=10,
                             parallel=False, progbar=False, optlib="random", seed=0,
                             slicing_opts={"target_size": target} if target else None)
    terms, output, sizes = _numbered(case)
    return opt.search(terms, output, sizes)


def _numbered(case):
    """The network with one-character index labels (cotengra's contraction joins labels into
    einsum strings: ours, several characters long, would be misread)."""
    number = case.letters
    terms = [tuple(number[i] for i in op.indices) for op in case.operands]
    return terms, tuple(number[i] for i in case.output.indices), \
        {number[i]: n for i, n in case.sizes.items()}


def cotengra_sliced(tree, checkpoint):
    """Σ over the tree's slices, each contracted by cotengra with torch; checkpoint: autograd
    recomputes each slice in the backward instead of keeping it (the norm is a scalar: no
    sliced index is in the output, the slices just add up)."""
    from torch.utils.checkpoint import checkpoint as ckpt

    def fn(*xs):
        total = 0
        for i in range(tree.nslices):
            def one(*a, i=i):
                return tree.contract_slice(a, i, backend="torch")
            total = total + (ckpt(one, *xs, use_reentrant=False) if checkpoint else one(*xs))
        return total
    return fn


def budget_methods(case, budget):
    """{label: callable} for one budget (bytes); cotengra's slices target a largest
    intermediate of an eighth of the budget, a user's rule of thumb for room to work."""
    sliced = tm.tensorgrad(case.statement, memory_limit=budget)
    tree = cotengra_tree(case, target=budget // 4 // 8)
    return {
        "tensormagic, memory_limit": sliced,
        "cotengra slices + checkpoint": cotengra_sliced(tree, checkpoint=True),
        "cotengra slices, plain autograd": cotengra_sliced(tree, checkpoint=False),
    }, sliced, tree


def relative_error(got, want):
    value, grads = got
    errors = [float((value - want[0]).abs() / want[0].abs().clamp_min(1e-30))]
    for g, h in zip(grads, want[1]):
        errors.append(float((g - h).abs().max() / h.abs().max().clamp_min(1e-30)))
    return max(errors)


def run_budget(args):
    """One row per method and budget: peak, time, ratios, slices, error."""
    case = peps(args)
    xs = inputs(case, args.device)
    sync = torch.cuda.synchronize if args.device != "cpu" else (lambda: None)
    base = tm.tensorgrad(case.statement)
    log(f"budget: {case.label} {case.title}, planning the unsliced contraction")
    want = forward_backward(base, xs)()
    plain = cotengra_sliced(cotengra_tree(case), checkpoint=False)
    unsliced = {"tensormagic, unsliced": forward_backward(base, xs),
                "cotengra + autograd, unsliced": forward_backward(plain, xs)}
    rows, base_peak = [], None
    for budget_text in args.budgets:
        budget = memory_limit(budget_text)
        log(f"budget {budget_text}: planning the sliced contractions")
        methods, sliced, tree = budget_methods(case, budget)
        fns = dict(unsliced, **{k: forward_backward(f, xs) for k, f in methods.items()})
        checks = {k: relative_error(f(), want) for k, f in fns.items()}  # also compiles
        log(f"budget {budget_text}: timing {len(fns)} methods, {args.reps} repetitions")
        stats = measure(fns, args.reps, warmup=1, min_sample_s=0.0, sync=sync)
        peaks = {k: peak_bytes(f, args.device) for k, f in fns.items()}
        base_peak = peaks["tensormagic, unsliced"]
        (s,) = [op.info["slices"] for op in sliced._last.program.ops if op.kind == "sliced"]
        slices = {"tensormagic, memory_limit": (s.count, s.extra),
                  "cotengra slices + checkpoint": (tree.nslices, _extra(tree, case)),
                  "cotengra slices, plain autograd": (tree.nslices, _extra(tree, case))}
        for k in fns:
            rows.append(dict(budget=budget_text, bytes=budget, method=k, peak=peaks[k],
                             median=stats[k].median, spread=stats[k].spread,
                             ratio=paired_ratio(stats[k], stats["tensormagic, unsliced"]),
                             slices=slices.get(k), error=checks[k]))
    return case, rows, base_peak


def _extra(tree, case):
    """cotengra's multiply-adds over its unsliced tree's, minus 1."""
    import cotengra as ctg
    whole = ctg.ContractionTree.from_path(*_numbered(case), path=tree.get_path())
    return float(tree.total_flops() / whole.total_flops() - 1)


# -- the ranks part --------------------------------------------------------------------------
def rank_main(rank, world, folder, spec):
    """One rank: plan, one untimed call, then calls between barriers, each timed by the wall
    clock and by this process's CPU time (the work this rank did, which other jobs on a shared
    machine do not inflate); every rank saves its times."""
    cuda = spec["device"] != "cpu"
    if not cuda:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(spec["threads"])
    device = f"cuda:{rank}" if cuda else "cpu"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{folder}/rendezvous",
                            rank=rank, world_size=world)
    try:
        case = cases.peps_norm(*spec["peps"], 2)
        xs = inputs(case, device)
        fn = tm.tensorgrad(case.statement, memory_limit=spec["budget"], distributed=True)
        call = forward_backward(fn, xs)
        value, grads = call()
        times, cpu = [], []
        for _ in range(spec["reps"]):
            dist.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            if cuda:
                torch.cuda.synchronize()
            cpu.append(time.process_time() - c0)
            dist.barrier()
            times.append(time.perf_counter() - t0)
        (s,) = [op.info["slices"] for op in fn._last.program.ops if op.kind == "sliced"]
        torch.save(dict(times=times, cpu=cpu, count=s.count, spread=s.spread, value=value.cpu(),
                        grads=[g.cpu() for g in grads]), os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn_ranks(world, spec, timeout=1800):
    with tempfile.TemporaryDirectory() as folder:
        context = mp.spawn(rank_main, args=(world, folder, spec), nprocs=world, join=False)
        deadline = time.monotonic() + timeout
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                for p in context.processes:
                    p.kill()
                raise SystemExit(f"the ranks did not finish within {timeout} s")
        ranks = [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False)
                 for r in range(world)]
        out = ranks[0]
        out["cpu"] = [max(r["cpu"][k] for r in ranks) for k in range(len(out["cpu"]))]
        out["load"] = _load()
        return out


def _load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_ranks(args):
    """1 rank and `world` ranks (1 thread each on the CPU), and 1 rank with `world` threads."""
    budget = args.budgets[len(args.budgets) // 2] if len(args.budgets) > 2 else args.budgets[-1]
    spec = dict(peps=list(args.peps), budget=budget, reps=args.reps, device=args.device, threads=1)
    runs = {}
    for label, world, threads in (("1 rank, 1 thread", 1, 1),
                                  (f"{args.world} ranks, 1 thread each", args.world, 1),
                                  (f"1 rank, {args.world} threads", 1, args.world)):
        if args.device != "cpu" and threads > 1:
            continue
        log(f"ranks: {label}")
        runs[label] = spawn_ranks(world, dict(spec, threads=threads))
    want = (runs["1 rank, 1 thread"]["value"], runs["1 rank, 1 thread"]["grads"])
    for r in runs.values():
        r["error"] = relative_error((r["value"], r["grads"]), want)
    return budget, runs


# -- the report ------------------------------------------------------------------------------
def render(args, env, budget_part, ranks_part):
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    lines = ["# tensormagic scaling: a memory budget by slicing, slices over torch.distributed", "",
             f"Command: `{cmd}`  ", "\n".join(f"{k}: {v}  " for k, v in env.items()), "",
             __doc__.split("\n\n", 2)[2].strip(), ""]
    if budget_part:
        case, rows, base_peak = budget_part
        lines += [f"## Memory budget: {case.title}, {case.label}, float32, forward + every gradient",
                  "", f"Unsliced peak (tensormagic): {base_peak / MiB:,.1f} MiB.", "",
                  "| budget | method | peak MiB | peak / budget | time | spread | time / unsliced "
                  "tensormagic | slices | extra multiply-adds | max rel. error |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            count, extra = r["slices"] or ("", None)
            lines.append(f"| {r['budget']} | {r['method']} | {r['peak'] / MiB:,.1f} | "
                         f"{r['peak'] / r['bytes']:.2f} | {r['median']:.2f} s | {r['spread']:.0%} | "
                         f"{r['ratio']:.2f}× | "
                         f"{count} | {'' if extra is None else f'{extra:+.0%}'} | {r['error']:.1e} |")
        lines += ["", "Peak: bytes allocated during one call above what was allocated before it "
                  "(the inputs); it includes the gradients returned. Extra multiply-adds: the "
                  "sliced forward's over the same method's unsliced one. time: the median over the "
                  "rounds; spread: their interquartile range over the median; time / unsliced: the "
                  "median of the per-round ratios.", ""]
    if ranks_part:
        budget, runs = ranks_part
        one = statistics.median(runs["1 rank, 1 thread"]["times"])
        one_cpu = statistics.median(runs["1 rank, 1 thread"]["cpu"])
        lines += [f"## Slices over ranks: the same PEPS, memory_limit={budget}, distributed=True", "",
                  "| configuration | slices | spread | wall time | speed-up | CPU time of the busiest "
                  "rank | its share of 1 rank's | max rel. error vs 1 rank | load average after |",
                  "|---|--:|---|--:|--:|--:|--:|--:|---|"]
        for label, r in runs.items():
            t, c = statistics.median(r["times"]), statistics.median(r["cpu"])
            lines.append(f"| {label} | {r['count']} | {r['spread']} | {t:.2f} s | {one / t:.2f}× | "
                         f"{c:.2f} s | {c / one_cpu:.2f} | {r['error']:.1e} | {r['load']} |")
        lines += ["", "Each call (forward + every gradient) between two barriers: the median over "
                  f"{args.reps} calls of the wall time, and of the CPU time of the rank that used "
                  "most (threads included). Speed-up: 1 rank, 1 thread's wall time over this "
                  "one's. On a shared 2-core machine two ranks need both cores at once, so other "
                  "jobs slow them down more than one rank: the CPU time shows the work each rank "
                  "did.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    from bench import environment
    env = environment(args.device)
    budget_part = run_budget(args) if args.part in ("budget", "both") else None
    ranks_part = run_ranks(args) if args.part in ("ranks", "both") else None
    text = render(args, env, budget_part, ranks_part)
    if args.output:
        Path(args.output).write_text(text)
        log(f"wrote {args.output}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
