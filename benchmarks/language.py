"""The cells an ML user writes first, and convolutions and pooling: tensormagic against
torch.nn.functional + autograd.

    python benchmarks/language.py [--reps 15] [--threads N] [--clock wall|cpu] [--out benchmarks/language.md]

Each case times forward plus the gradient of every float input (`out.backward(g)`),
float32 on CPU, the two methods interleaved round-robin (benchmarks/timer.py); the
table gives the median time and the median of the per-round ratios tensormagic / torch.
"""
from __future__ import annotations

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
from bench import _git_head  # noqa: E402
from timer import measure, paired_ratio, peak_bytes, table_arguments, threaded  # noqa: E402


@dataclass(frozen=True)
class Case:
    key: str
    statement: str
    shapes: dict      # float inputs (each gets a gradient)
    torch: Callable   # the same on (*float inputs, *index tensors)
    sizes: dict = None
    ints: dict = None  # index tensors: name -> (number of classes, shape)
    values: dict = None  # float inputs drawn otherwise: name -> callable(shape)


LAYER_NORM = ("mu[b] := mean[i](x[b,i])\n"
              "v[b] := mean[i]((x[b,i] - mu[b]) ** 2)\n"
              "y[b,i] := (x[b,i] - mu[b]) / sqrt(v[b] + 0.00001) * g[i] + h[i]")
RMS_NORM = "r[b] := sqrt(mean[i](x[b,i] ** 2) + 0.00001)\ny[b,i] := x[b,i] / r[b] * g[i]"
ATTENTION = ("S[b,h,q,k] := Q[b,h,q,d] * K[b,h,k,d] / 8\n"
             "P[b,h,q,k] := exp(S[b,h,q,k] - logsumexp[m](S[b,h,q,m]))\n"
             "O[b,h,q,e] := P[b,h,q,k] * V[b,h,k,e]")
GELU_MLP = ("H[b,o] := X[b,i] * W1[i,o] + b1[o]\n"
            "A[b,o] := 0.5 * H[b,o] * (1 + erf(H[b,o] / sqrt(2)))\n"
            "Y[b,p] := A[b,o] * W2[o,p]")
SILU_MLP = ("H[b,o] := X[b,i] * W1[i,o] + b1[o]\n"
            "A[b,o] := H[b,o] * sigmoid(H[b,o])\n"
            "Y[b,p] := A[b,o] * W2[o,p]")


def _mask(shape):
    """A causal-like mask: 0 where kept, -inf elsewhere (the first column always kept)."""
    m = torch.where(torch.rand(shape) > 0.5, 0.0, float("-inf"))
    m[..., 0] = 0.0
    return m


def _rms(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g


MODEL = [
    Case("softmax", "p[b,i] := exp(x[b,i] - logsumexp[j](x[b,j]))", {"x": (512, 1024)},
         lambda x: torch.softmax(x, 1)),
    Case("log-softmax", "p[b,i] := x[b,i] - logsumexp[j](x[b,j])", {"x": (512, 1024)},
         lambda x: torch.log_softmax(x, 1)),
    Case("masked softmax", "p[b,i] := exp(x[b,i] + m[b,i] - logsumexp[j](x[b,j] + m[b,j]))",
         {"x": (512, 1024), "m": (512, 1024)}, lambda x, m: torch.softmax(x + m, 1), values={"m": _mask}),
    Case("cross-entropy", "L := sum[n](logsumexp[c](z[n,c]) - z[n, y[n]])", {"z": (2048, 1000)},
         lambda z, y: F.cross_entropy(z, y, reduction="sum"), ints={"y": (1000, (2048,))}),
    Case("layer norm", LAYER_NORM, {"x": (1024, 768), "g": (768,), "h": (768,)},
         lambda x, g, h: F.layer_norm(x, (768,), g, h, eps=1e-5)),
    Case("RMS norm", RMS_NORM, {"x": (1024, 768), "g": (768,)},
         lambda x, g: F.rms_norm(x, (768,), g, eps=1e-5) if hasattr(F, "rms_norm") else _rms(x, g)),
    Case("attention", ATTENTION, {"Q": (8, 4, 128, 64), "K": (8, 4, 128, 64), "V": (8, 4, 128, 64)},
         lambda Q, K, V: torch.softmax(Q @ K.transpose(-1, -2) / 8, -1) @ V),
    Case("GELU MLP", GELU_MLP, {"X": (256, 512), "W1": (512, 1024), "b1": (1024,), "W2": (1024, 512)},
         lambda X, W1, b1, W2: F.gelu(X @ W1 + b1) @ W2),
    Case("SiLU MLP", SILU_MLP, {"X": (256, 512), "W1": (512, 1024), "b1": (1024,), "W2": (1024, 512)},
         lambda X, W1, b1, W2: F.silu(X @ W1 + b1) @ W2),
]

CONV_POOL = [
    Case("conv1d", "y[b,o,i] := x[b,c,i+a] * w[o,c,a]",
         {"x": (32, 16, 256), "w": (32, 16, 5)}, lambda x, w: F.conv1d(x, w)),
    Case("conv1d-stride2", "y[b,o,i] := x[b,c,2*i+a] * w[o,c,a]",
         {"x": (32, 16, 256), "w": (32, 16, 5)}, lambda x, w: F.conv1d(x, w, stride=2)),
    Case("conv2d+bias", "y[b,o,i,j] := x[b,c,i+a,j+d] * w[o,c,a,d] + bias[o]",
         {"x": (16, 8, 32, 32), "w": (16, 8, 3, 3), "bias": (16,)},
         lambda x, w, bias: F.conv2d(x, w, bias)),
    Case("maxpool2d", "m[b,c,i,j] := max[a,d](x[b,c,2*i+a,2*j+d])",
         {"x": (16, 16, 32, 32)}, lambda x: F.max_pool2d(x, 2), sizes={"a": 2, "d": 2}),
    Case("maxpool 2x2/2 (issue size)", "m[b,c,i,j] := max[a,d](x[b,c,2*i+a,2*j+d])",
         {"x": (16, 32, 64, 64)}, lambda x: F.max_pool2d(x, 2), sizes={"a": 2, "d": 2}),
    Case("maxpool 3x3/2 (issue size)", "m[b,c,i,j] := max[a,d](x[b,c,2*i+a,2*j+d])",
         {"x": (16, 32, 64, 64)}, lambda x: F.max_pool2d(x, 3, 2), sizes={"a": 3, "d": 3}),
    Case("maxpool1d-overlap", "m[b,c,i] := max[a](x[b,c,2*i+a])",
         {"x": (32, 16, 256)}, lambda x: F.max_pool1d(x, 3, 2), sizes={"a": 3}),
]
CASES = MODEL + CONV_POOL


def runner(f, xs, g, ints=()):
    leaves = [x.detach().clone().requires_grad_() for x in xs]

    def fwd_bwd():
        for x in leaves:
            x.grad = None
        f(*leaves, *ints).backward(g)

    return fwd_bwd


def inputs(case, device="cpu", dtype=torch.float32):
    values = case.values or {}
    xs = [(values[n](s) if n in values else torch.randn(s)).to(device=device, dtype=dtype)
          for n, s in case.shapes.items()]
    ints = [torch.randint(0, high, shape).to(device) for high, shape in (case.ints or {}).values()]
    return xs, ints


def main():
    p = table_arguments(reps=15, out="language.md")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:n]")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float64"))
    args = threaded(p.parse_args())
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if args.device != "cpu" else (lambda: None)
    rows = []
    for case in CASES:
        if args.only and not any(word in case.key for word in args.only):
            continue
        xs, ints = inputs(case, args.device, dtype)
        fn = tm.tensorgrad(case.statement, sizes=case.sizes)
        want = case.torch(*xs, *ints)
        got = fn(*xs, *ints)
        tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        g = torch.randn_like(want)
        runners = {"torch": runner(case.torch, xs, g, ints), "tensormagic": runner(fn, xs, g, ints)}
        stats = measure(runners, reps=args.reps, warmup=3, min_sample_s=0.1, clock=args.clock, sync=sync)
        ratio = paired_ratio(stats["tensormagic"], stats["torch"])
        peaks = {k: peak_bytes(r, args.device) for k, r in runners.items()}
        rows.append((case, stats, ratio, peaks["tensormagic"] / max(peaks["torch"], 1)))
        print(f"{case.key:<18} torch {stats['torch'].median * 1e3:8.2f} ms  tensormagic "
              f"{stats['tensormagic'].median * 1e3:8.2f} ms  ratio {ratio:.2f}  peak memory "
              f"{rows[-1][3]:.2f}", flush=True)
    where = "CPU" if args.device == "cpu" else f"CUDA ({torch.cuda.get_device_name(args.device)})"
    lines = [f"# The model cells, convolutions and pooling: forward + backward, {args.dtype}, {where}", "",
             f"Command: `python benchmarks/language.py {' '.join(sys.argv[1:])}`; torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), {args.clock} clock, {platform.processor() or platform.machine()}, "
             f"tensormagic commit {_git_head()}, load average at end {os.getloadavg()[0]:.2f}.", "",
             "Forward plus the gradients of every input, methods interleaved round-robin, median of "
             f"{args.reps} rounds; ratio: the median of per-round tensormagic / torch times (lower is better).", "",
             "Peak memory: one more call of each, its peak above what was allocated before it (CPU: the "
             "profiler's memory events; CUDA: max_memory_allocated), tensormagic / torch.", "",
             "| case | statement | shapes | torch.nn.functional | tensormagic | ratio | peak memory |",
             "|---|---|---|---|---|---|---|"]
    for case, stats, ratio, memory in rows:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in case.shapes.items())
        if case.sizes:
            shapes += "; " + ", ".join(f"{i} = {n}" for i, n in case.sizes.items())
        statement = case.statement.replace("\n", "`; `")
        lines.append(f"| {case.key} | `{statement}` | {shapes} | {stats['torch'].median * 1e3:.2f} ms | "
                     f"{stats['tensormagic'].median * 1e3:.2f} ms | {ratio:.2f}× | {memory:.2f}× |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
