"""Second order (issue 20): tensormagic's symbolic Hessian and Hessian-vector product against
torch.func and double backward.

    python benchmarks/second_order.py [--reps 9] [--threads N] [--clock wall|cpu] [--out benchmarks/second_order.md]

Cases:
- the Hessian of L = xᵀAx (n = 2048): fn.hessian against torch.func.hessian (the published
  figures of the Python tensorgrad package: 2.1 ms for its Hessian, 17.7 ms for
  torch.func.hessian, on its own machine);
- the Hessian-vector product of a 2-layer MLP loss (every parameter) and of a 6-site MPS
  energy ⟨ψ|W|ψ⟩ with an MPO W (every site tensor): fn.hvp against torch.func.jvp of
  torch.func.grad (forward over reverse) and against double backward (the gradient with
  create_graph, then the gradient of its dot product with v).

Every method's result is checked against the first one's before timing; the methods are
interleaved round-robin (benchmarks/timer.py). float32, CPU.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensormagic as tm  # noqa: E402
from timer import measure, paired_ratio, table_arguments, threaded  # noqa: E402

MLP = ("H[b,h] := tanh(X[b,i] * W1[i,h] + b1[h])\n"
       "L := (H[b,h] * W2[h,o] + b2[o] - T[b,o]) ** 2")
_SITES = "pqrstu"
_BONDS = "abcde"


def _mps_energy():
    """⟨ψ|W|ψ⟩ for a 6-site open MPS A1..A6 and an MPO M1..M6 (one statement, 18 tensors)."""
    def chain(name, phys, bond, extra=None):
        out = []
        for k in range(6):
            left = [bond[k - 1]] if k else []
            right = [bond[k]] if k < 5 else []
            mid = [phys[k]] if extra is None else [phys[k], extra[k]]
            out.append(f"{name}{k + 1}[{','.join(left + mid + right)}]")
        return out
    ket = chain("A", _SITES, _BONDS)
    bra = chain("A", [p + "ʹ" for p in _SITES], [b + "ʹ" for b in _BONDS])
    mpo = chain("M", _SITES, "vwxyz", [p + "ʹ" for p in _SITES])
    return "E := " + " * ".join(ket + mpo + bra)


MPS = _mps_energy()


@dataclass(frozen=True)
class Case:
    key: str
    statement: str
    shapes: dict       # every input
    wrt: tuple         # the names differentiated (their Hessian, or the product with v)
    torch: Callable    # the loss in plain torch on the inputs (in order)
    what: str          # "hessian" or "hvp"


def _mlp(X, W1, b1, W2, b2, T):
    return ((torch.tanh(X @ W1 + b1) @ W2 + b2 - T) ** 2).sum()


def _mps_shapes(D=32, d=2, k=4):
    shapes = {}
    for n in range(1, 7):
        left = (D,) if n > 1 else ()
        right = (D,) if n < 6 else ()
        shapes[f"A{n}"] = left + (d,) + right
    for n in range(1, 7):
        left = (k,) if n > 1 else ()
        right = (k,) if n < 6 else ()
        shapes[f"M{n}"] = left + (d, d) + right
    return shapes


def _mps_torch(*tensors):
    """The same energy as one torch.einsum (opt_einsum plans its order); primed indices
    are upper case."""
    A, M = tensors[:6], tensors[6:]
    eq = ("pa,aqb,brc,csd,dte,eu,"
          "pPv,vqQw,wrRx,xsSy,ytTz,zuU,"
          "PA,AQB,BRC,CSD,DTE,EU->")
    return torch.einsum(eq, *A, *M, *A)


CASES = [
    Case("Hessian of xᵀAx", "L := x[i] * A[i,j] * x[j]", {"x": (2048,), "A": (2048, 2048)}, ("x",),
         lambda x, A: x @ A @ x, "hessian"),
    Case("HVP, 2-layer MLP, small", MLP, {"X": (64, 128), "W1": (128, 128), "b1": (128,), "W2": (128, 16),
                                          "b2": (16,), "T": (64, 16)}, ("W1", "b1", "W2", "b2"), _mlp, "hvp"),
    Case("HVP, 2-layer MLP", MLP, {"X": (256, 512), "W1": (512, 512), "b1": (512,), "W2": (512, 64),
                                   "b2": (64,), "T": (256, 64)}, ("W1", "b1", "W2", "b2"), _mlp, "hvp"),
    Case("HVP, 6-site MPS energy", MPS, _mps_shapes(), tuple(f"A{n}" for n in range(1, 7)), _mps_torch, "hvp"),
]


def _as_args(case, values, wrt_values):
    return [wrt_values[n] if n in wrt_values else values[n] for n in case.shapes]


def methods(case, values):
    """{name: a callable computing the case's Hessian or HVP} and the reference result."""
    fn = tm.tensorgrad(case.statement, wrt=list(case.wrt))
    args = [values[n] for n in fn.inputs]
    primals = tuple(values[n] for n in case.wrt)

    def loss(*w):
        return case.torch(*_as_args(case, values, dict(zip(case.wrt, w))))

    argnums = tuple(range(len(case.wrt)))
    if case.what == "hessian":
        return {"tensormagic": lambda: fn.hessian(*args),
                "torch.func.hessian": lambda: torch.func.hessian(loss, argnums=argnums)(*primals)[0][0]}
    v = {n: torch.randn_like(values[n]) for n in case.wrt}
    tangents = tuple(v[n] for n in case.wrt)

    def double_backward():
        leaves = [p.detach().requires_grad_() for p in primals]
        grads = torch.autograd.grad(loss(*leaves), leaves, create_graph=True)
        dot = sum((g * t).sum() for g, t in zip(grads, tangents))
        return torch.autograd.grad(dot, leaves)

    return {"tensormagic": lambda: tuple(fn.hvp(*args, v=v).values()),
            "torch.func.jvp(grad)": lambda: torch.func.jvp(torch.func.grad(loss, argnums=argnums),
                                                           primals, tangents)[1],
            "double backward": double_backward}


def _check(results, case):
    first = next(iter(results.values()))
    for name, got in results.items():
        a = first if isinstance(first, tuple) else (first,)
        b = got if isinstance(got, tuple) else (got,)
        for x, y in zip(a, b):
            scale = max(1.0, float(x.abs().max()))
            torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-3 * scale, msg=f"{case.key}: {name}")


def main():
    p = table_arguments(reps=9, out="second_order.md")
    args = threaded(p.parse_args())
    torch.manual_seed(0)
    load_start = os.getloadavg()[0]
    rows = []
    for case in CASES:
        if args.only and not any(word in case.key for word in args.only):
            continue
        values = {n: torch.randn(s) * (0.3 if n.startswith(("A", "M")) else 1.0) for n, s in case.shapes.items()}
        fns = methods(case, values)
        _check({name: f() for name, f in fns.items()}, case)
        stats = measure(fns, reps=args.reps, warmup=2, min_sample_s=0.05, clock=args.clock)
        ratios = {name: paired_ratio(stats["tensormagic"], stats[name]) for name in fns if name != "tensormagic"}
        rows.append((case, stats, ratios))
        print(case.key, "  ".join(f"{n} {s.median * 1e3:.2f} ms" for n, s in stats.items()),
              "  ".join(f"tm/{n} {r:.2f}" for n, r in ratios.items()), flush=True)
    _write(args, rows, load_start)


def _write(args, rows, load_start):
    lines = ["# Second order: the Hessian and Hessian-vector products, float32, CPU", "",
             f"Command: `python benchmarks/second_order.py {' '.join(sys.argv[1:])}`; torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), {args.clock} clock, {platform.processor() or platform.machine()}, "
             f"load average {load_start:.2f} at start and {os.getloadavg()[0]:.2f} at end (a shared machine: "
             f"other jobs were running).", "",
             "Each method's result checked against tensormagic's before timing; methods interleaved round-robin, "
             f"median of {args.reps} rounds; ratio: the median of per-round tensormagic / other times "
             "(lower is better; the issue's target is ≤ 0.5× torch.func).", "",
             "| case | shapes | tensormagic | torch.func | ratio | double backward | ratio |",
             "|---|---|---|---|---|---|---|"]
    for case, stats, ratios in rows:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in list(case.shapes.items())[:4])
        if len(case.shapes) > 4:
            shapes += ", …"
        names = [n for n in stats if n != "tensormagic"]
        func = names[0]
        cells = [f"{stats[func].median * 1e3:.2f} ms ({func})", f"{ratios[func]:.2f}×"]
        if len(names) > 1:
            cells += [f"{stats[names[1]].median * 1e3:.2f} ms", f"{ratios[names[1]]:.2f}×"]
        else:
            cells += ["—", "—"]
        lines.append(f"| {case.key} | {shapes} | {stats['tensormagic'].median * 1e3:.2f} ms | " + " | ".join(cells) + " |")
    lines += ["", "The MPS energy: `" + MPS + "`, bond dimension 32, physical 2, MPO bond 4."]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
