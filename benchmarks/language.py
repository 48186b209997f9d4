"""Convolutions and pooling: tensormagic against torch.nn.functional + autograd.

    python benchmarks/language.py [--reps 15] [--threads N] [--clock wall|cpu] [--out benchmarks/language.md]

Each case times forward plus the gradient of every float input (`out.backward(g)`),
float32 on CPU, the two methods interleaved round-robin (benchmarks/timer.py); the
table gives the median time and the median of the per-round ratios tensormagic / torch.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensormagic as tm  # noqa: E402
from timer import measure, paired_ratio  # noqa: E402


@dataclass(frozen=True)
class Case:
    key: str
    statement: str
    shapes: dict
    torch: Callable
    sizes: dict = None


CASES = [
    Case("conv1d", "y[b,o,i] := x[b,c,i+a] * w[o,c,a]",
         {"x": (32, 16, 256), "w": (32, 16, 5)}, lambda x, w: F.conv1d(x, w)),
    Case("conv1d-stride2", "y[b,o,i] := x[b,c,2*i+a] * w[o,c,a]",
         {"x": (32, 16, 256), "w": (32, 16, 5)}, lambda x, w: F.conv1d(x, w, stride=2)),
    Case("conv2d+bias", "y[b,o,i,j] := x[b,c,i+a,j+d] * w[o,c,a,d] + bias[o]",
         {"x": (16, 8, 32, 32), "w": (16, 8, 3, 3), "bias": (16,)},
         lambda x, w, bias: F.conv2d(x, w, bias)),
    Case("maxpool2d", "m[b,c,i,j] := max[a,d](x[b,c,2*i+a,2*j+d])",
         {"x": (16, 16, 32, 32)}, lambda x: F.max_pool2d(x, 2), sizes={"a": 2, "d": 2}),
    Case("maxpool1d-overlap", "m[b,c,i] := max[a](x[b,c,2*i+a])",
         {"x": (32, 16, 256)}, lambda x: F.max_pool1d(x, 3, 2), sizes={"a": 3}),
]


def runner(f, xs, g):
    leaves = [x.detach().clone().requires_grad_() for x in xs]

    def fwd_bwd():
        for x in leaves:
            x.grad = None
        f(*leaves).backward(g)

    return fwd_bwd


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time, steadier on a shared machine (use with --threads 1)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "language.md"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for case in CASES:
        xs = [torch.randn(s) for s in case.shapes.values()]
        fn = tm.tensorgrad(case.statement, sizes=case.sizes)
        want = case.torch(*xs)
        got = fn(*xs)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        g = torch.randn_like(want)
        stats = measure({"torch": runner(case.torch, xs, g), "tensormagic": runner(fn, xs, g)},
                        reps=args.reps, warmup=3, min_sample_s=0.1, clock=args.clock)
        ratio = paired_ratio(stats["tensormagic"], stats["torch"])
        rows.append((case, stats, ratio))
        print(f"{case.key:<18} torch {stats['torch'].median * 1e3:8.2f} ms  tensormagic "
              f"{stats['tensormagic'].median * 1e3:8.2f} ms  ratio {ratio:.2f}", flush=True)
    lines = ["# Convolutions and pooling: forward + backward, float32, CPU", "",
             f"Command: `python benchmarks/language.py {' '.join(sys.argv[1:])}`; torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), {args.clock} clock, {platform.processor() or platform.machine()}, "
             f"load average at end {os.getloadavg()[0]:.2f} (a shared machine: other jobs were running).", "",
             "Forward plus the gradients of every input, methods interleaved round-robin, median of "
             f"{args.reps} rounds; ratio: the median of per-round tensormagic / torch times (lower is better).", "",
             "| case | statement | shapes | torch.nn.functional | tensormagic | ratio |",
             "|---|---|---|---|---|---|"]
    for case, stats, ratio in rows:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in case.shapes.items())
        lines.append(f"| {case.key} | `{case.statement}` | {shapes} | {stats['torch'].median * 1e3:.2f} ms | "
                     f"{stats['tensormagic'].median * 1e3:.2f} ms | {ratio:.2f}× |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
