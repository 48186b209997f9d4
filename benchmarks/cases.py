"""Benchmark cases: one index-notation statement and its einsum twin each.

A case is data only (no torch): the operands with their index names (letters,
or longer names for the PEPS), the index sizes, and whether a tanh-plus-bias
layer wraps the contraction.  The
statement given to tensormagic and the equation given to torch.einsum /
opt_einsum are both rendered from the same data, so they cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import opt_einsum as oe

TINY_SIZE = 4


@dataclass(frozen=True)
class Operand:
    name: str
    indices: str | tuple[str, ...]  # one name per axis (a letter each in a str); a repeat takes a diagonal


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    output: Operand
    operands: tuple[Operand, ...]
    sizes: dict[str, int] = field(hash=False)
    dense_tanh: bool = False  # Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])
    cuda_sizes: dict[str, int] | None = field(default=None, hash=False)  # larger, for a GPU
    tiny_size: int = TINY_SIZE
    label: str | None = None  # the sizes, shortly (default: grouped from `sizes`)

    @property
    def letters(self) -> dict[str, str]:
        """Each index name's einsum symbol (a letter is itself)."""
        names = list(dict.fromkeys(i for op in (*self.operands, self.output) for i in op.indices))
        if all(len(n) == 1 and n.isascii() and n.isalpha() for n in names):
            return {n: n for n in names}
        return {n: oe.get_symbol(k) for k, n in enumerate(names)}

    @property
    def einsum_ok(self) -> bool:
        """torch.einsum takes at most 52 distinct indices (letters)."""
        return len(self.letters) <= 52

    def subscripts(self, op: Operand) -> str:
        return "".join(self.letters[i] for i in op.indices)

    @property
    def equation(self) -> str:
        """The einsum equation of the contraction (without the tanh/bias)."""
        factors = self.operands[:2] if self.dense_tanh else self.operands
        lhs = ",".join(self.subscripts(op) for op in factors)
        return f"{lhs}->{self.subscripts(self.output)}"

    @property
    def statement(self) -> str:
        """The tensormagic statement."""
        factors = [_indexed(op) for op in self.operands]
        if self.dense_tanh:
            rhs = f"tanh({factors[0]}*{factors[1]} + {factors[2]})"
        else:
            rhs = "*".join(factors)
        return f"{_indexed(self.output)} := {rhs}"

    @property
    def n_tensors(self) -> int:
        return len(self.operands)

    def shape(self, op: Operand) -> tuple[int, ...]:
        return tuple(self.sizes[c] for c in op.indices)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [self.shape(op) for op in self.operands]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape(self.output)

    def size_label(self) -> str:
        """Compact 'i=768 j=768 k=768' style label, grouping equal sizes."""
        if self.label:
            return self.label
        groups: dict[int, list[str]] = {}
        for c, n in self.sizes.items():
            groups.setdefault(n, []).append(c)
        return " ".join(f"{''.join(cs)}={n}" for n, cs in groups.items())

    def tiny(self) -> "Case":
        """The same statement with every index of size tiny_size."""
        return replace(self, sizes={c: self.tiny_size for c in self.sizes}, label=None)

    def on_cuda(self) -> "Case":
        """The case at its GPU sizes (the same when it has none)."""
        return replace(self, sizes=self.cuda_sizes, label=None) if self.cuda_sizes else self

    def element_scale(self, op: Operand) -> float:
        """Std of the random entries (keeps the tanh of the dense case unsaturated)."""
        if self.dense_tanh and op.name == "W":
            return 1.0 / math.sqrt(self.sizes["i"])
        return 1.0


def _indexed(op: Operand) -> str:
    if not op.indices:
        return op.name
    return f"{op.name}[{','.join(op.indices)}]"


def peps_norm(n: int = 5, bond: int = 3, phys: int = 2) -> Case:
    """<psi|psi> of an n x n PEPS with open boundaries: 2 n^2 tensors, the ket A.. and the
    bra B.. (real, so no conjugate); p.. physical, h../v.. horizontal/vertical ket bonds,
    H../V.. the bra's."""
    def site(r, c, bra):
        h, v = ("H", "V") if bra else ("h", "v")
        idx = [f"p{r}{c}"]
        idx += [f"{v}{r - 1}{c}"] if r > 0 else []
        idx += [f"{v}{r}{c}"] if r < n - 1 else []
        idx += [f"{h}{r}{c - 1}"] if c > 0 else []
        idx += [f"{h}{r}{c}"] if c < n - 1 else []
        return Operand(f"{'B' if bra else 'A'}{r}{c}", tuple(idx))
    ops = tuple(site(r, c, bra) for bra in (False, True) for r in range(n) for c in range(n))
    sizes = {i: (phys if i[0] == "p" else bond) for op in ops for i in op.indices}
    return Case("peps", f"{n}x{n} PEPS norm ({2 * n * n} tensors)", Operand("Z", ""), ops, sizes,
                tiny_size=2, label=f"D={bond} d={phys}")


def _ops(spec: str) -> tuple[Operand, ...]:
    """'B:ij C:jk' -> operands."""
    out = []
    for item in spec.split():
        name, idx = item.split(":")
        out.append(Operand(name, idx))
    return tuple(out)


CASES: tuple[Case, ...] = (
    Case("matmul", "matmul", Operand("A", "ik"), _ops("B:ij C:jk"),
         dict(i=768, j=768, k=768)),
    Case("chain4", "4-matrix chain", Operand("A", "im"),
         _ops("B:ij C:jk D:kl E:lm"),
         dict(i=1000, j=800, k=64, l=800, m=1000)),
    Case("attention", "attention scores", Operand("S", "bhij"),
         _ops("Q:bhid K:bhjd"), dict(b=8, h=8, i=256, j=256, d=64)),
    Case("trace", "matmul x trace", Operand("A", "ik"),
         _ops("B:ij C:jk D:ll"), dict(i=512, j=512, k=512, l=512)),
    Case("ring", "4-tensor ring", Operand("s", ""),
         _ops("P:abi Q:bcj R:cak T:ijk"),
         dict(a=48, b=48, c=48, i=32, j=32, k=32),
         cuda_sizes=dict(a=128, b=128, c=128, i=64, j=64, k=64)),
    Case("tucker", "Tucker", Operand("X", "ijk"),
         _ops("G:abc U:ia V:jb W:kc"),
         dict(a=64, b=64, c=64, i=128, j=128, k=128)),
    # 3-site block of two MPS chains (open boundary bonds l,m / c,e): the
    # transfer operator T[l,c,m,e]; physical p,q,r=8, inner bonds 64.
    Case("mps", "MPS 3-site transfer (6 tensors)", Operand("T", "lcme"),
         _ops("A1:lpa A2:aqb A3:brm B1:cpf B2:fqg B3:gre"),
         dict(l=24, c=24, m=24, e=24, a=64, b=64, f=64, g=64, p=8, q=8, r=8)),
    Case("abjk", "abjk,bcki,ac->ij", Operand("Y", "ij"),
         _ops("F:abjk G:bcki H:ac"), dict(a=48, b=48, c=48, i=32, j=32, k=32)),
    Case("dense", "dense + tanh", Operand("Y", "bo"), _ops("X:bi W:io c:o"),
         dict(b=512, i=1024, o=1024), dense_tanh=True),
    peps_norm(),
)


def select(keys: list[str] | None) -> list[Case]:
    if not keys:
        return list(CASES)
    known = {c.key: c for c in CASES}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; valid: {sorted(known)}")
    return [known[k] for k in keys]
