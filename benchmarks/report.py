"""Markdown report: environment, cases, timing tables, summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cases import Case
from timer import Stats, paired_ratio

THREE_PLUS = 3  # "multi-tensor" cases have at least this many operands
NOISY = 0.5  # flag a time whose interquartile range exceeds this fraction of its median
NOISY_NOTE = (f"† interquartile range over {NOISY:.0%} of the median: the machine was busy "
              f"during that measurement; read it with care.")


@dataclass
class CaseResult:
    case: Case
    tiny: bool
    gflop: float
    stats: dict[str, Stats] = field(default_factory=dict)  # "tm", "tm:fwd", ...
    err32: dict[str, float] = field(default_factory=dict)
    err64: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    once: dict[str, float] = field(default_factory=dict)  # "tm:build", "tm:first"
    peak: dict[str, int] = field(default_factory=dict)  # method -> peak bytes of one fwd+bwd
    tm_plan: str | None = None

    def ratio(self, key: str, baseline: str) -> float | None:
        if key not in self.stats or baseline not in self.stats:
            return None
        return paired_ratio(self.stats[key], self.stats[baseline])

    def fwd_ratio(self, key: str) -> float | None:
        if key not in self.stats or f"{key}:fwd" not in self.stats:
            return None
        return paired_ratio(self.stats[key], self.stats[f"{key}:fwd"])


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """A Markdown table padded so it also reads well on a terminal."""
    align = align or "l" * len(header)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(cells, widths, align)) + " |"
    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if a == "r" else "-" * (w + 2)
        for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def _fmt_time(seconds: float, unit: str) -> str:
    v = seconds * (1e3 if unit == "ms" else 1e6)
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _cell(r: CaseResult, key: str, baseline: str, unit: str) -> str:
    if key in r.failures:
        return "FAILED"
    if key not in r.stats:
        return "—"
    t = _fmt_time(r.stats[key].median, unit)
    if r.stats[key].spread > NOISY:
        t += "†"
    if key == baseline:
        return t
    return f"{t} ({r.ratio(key, baseline):.2f}×)"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def timing_table(results: list[CaseResult], methods, baseline: str, unit: str,
                 flops: bool = True) -> str:
    keys = [m.key for m in methods if any(m.key in r.stats or m.key in r.failures
                                          for r in results)]
    labels = {m.key: m.label for m in methods}
    lead = ["case", "sizes"] + (["GFLOP fwd"] if flops else [])
    header = [*lead, *(f"{labels[k]} {unit}" for k in keys),
              "tm fwd+bwd/fwd", "einsum fwd+bwd/fwd"]
    rows = []
    for r in results:
        rows.append([
            r.case.key,
            f"all={r.case.tiny_size}" if r.tiny else r.case.size_label(),
            *([f"{r.gflop:.3g}"] if flops else []),
            *(_cell(r, k, baseline, unit) for k in keys),
            _x(r.fwd_ratio("tm")), _x(r.fwd_ratio(baseline)),
        ])
    text = table(header, rows, "l" * len(lead) + "r" * (len(header) - len(lead)))
    if any(s.spread > NOISY for r in results for k, s in r.stats.items() if k in keys):
        text += "\n\n" + NOISY_NOTE
    return text


def memory_table(results: list[CaseResult], methods, baseline: str) -> str:
    keys = [m.key for m in methods if any(m.key in r.peak for r in results)]
    labels = {m.key: m.label for m in methods}
    rows = []
    for r in results:
        if not r.peak:
            continue
        base = r.peak.get(baseline)
        cells = [r.case.key + (" (tiny)" if r.tiny else "")]
        for k in keys:
            v = r.peak.get(k)
            if v is None:
                cells.append("—")
            elif k == baseline or not base:
                cells.append(f"{v / 2**20:.3g}")
            else:
                cells.append(f"{v / 2**20:.3g} ({v / base:.2f}×)")
        rows.append(cells)
    return table(["case", *(f"{labels[k]}" for k in keys)], rows, "l" + "r" * len(keys))


def targets(large: list[CaseResult], tiny: list[CaseResult], baseline: str) -> str:
    """Issue 8's targets for tensormagic, each met or missed and by how much."""
    def verdict(ok):
        return "**met**" if ok else "**missed**"
    lines = []
    ratios = {r.case.key: r.ratio("tm", baseline) for r in large if r.ratio("tm", baseline)}
    if ratios:
        worse = {k: v for k, v in ratios.items() if v > 1.0}
        lines.append(f"- every case ≤ 1.0× torch.einsum (fwd+bwd): {verdict(not worse)}"
                     + (f" — over: {', '.join(f'{k} {v:.2f}×' for k, v in worse.items())}"
                        if worse else f" (worst {max(ratios.values()):.2f}×)"))
        multi = [r.ratio("tm", baseline) for r in large
                 if r.case.n_tensors >= THREE_PLUS and not r.case.dense_tanh and r.ratio("tm", baseline)]
        if multi:
            g = geomean(multi)
            lines.append(f"- geomean ≤ 0.75× on the 3+-tensor cases: {verdict(g <= 0.75)} ({g:.2f}×)")
    peaks = {r.case.key: r.peak["tm"] / r.peak[baseline] for r in large
             if "tm" in r.peak and r.peak.get(baseline)}
    if peaks:
        over = {k: v for k, v in peaks.items() if v > 1.0}
        lines.append(f"- peak memory ≤ 1.0× torch.einsum's: {verdict(not over)}"
                     + (f" — over: {', '.join(f'{k} {v:.2f}×' for k, v in over.items())}"
                        if over else f" (highest {max(peaks.values()):.2f}×)"))
    speed = {r.case.key: 1 / r.ratio("tm", baseline) for r in tiny
             if r.case.n_tensors >= THREE_PLUS and not r.case.dense_tanh and r.ratio("tm", baseline)}
    if speed:
        slow = {k: v for k, v in speed.items() if v < 3.0}
        lines.append(f"- ≥ 3× faster than torch.einsum at tiny sizes (3+ tensors): {verdict(not slow)}"
                     + (f" — short: {', '.join(f'{k} {v:.1f}×' for k, v in slow.items())}"
                        if slow else f" (least {min(speed.values()):.1f}×)"))
    return "\n".join(lines)


def cases_table(cases: list[Case]) -> str:
    rows = [[c.key, c.title, f"`{c.statement}`",
             "`torch.tanh(X @ W + c)`" if c.dense_tanh else f"`{c.equation}`"]
            for c in cases]
    return table(["case", "what", "tensormagic statement", "torch"], rows)


def once_table(large: list[CaseResult], tiny: list[CaseResult]) -> str:
    tiny_by = {r.case.key: r for r in tiny}
    rows = []
    for r in large or tiny:
        t = tiny_by.get(r.case.key)
        cells = [r.case.key]
        for res in (r if large else None, t):
            for k in ("tm:build", "tm:first"):
                v = res.once.get(k) if res else None
                cells.append("—" if v is None else f"{v * 1e3:.1f}")
        rows.append(cells)
    return table(["case", "tensorgrad() ms", "first call ms (large)",
                  "tensorgrad() ms (tiny)", "first call ms (tiny)"], rows, "lrrrr")


def summary(large: list[CaseResult], tiny: list[CaseResult], methods,
            baseline: str) -> str:
    lines = []
    others = [m for m in methods if m.key != baseline]
    if large:
        multi = [r for r in large if r.case.n_tensors >= THREE_PLUS
                 and not r.case.dense_tanh]
        lines.append("Geometric mean of time / torch.einsum time, fwd+bwd "
                     "(lower is better; < 1 means faster than torch.einsum):")
        for m in others:
            have3 = [r for r in multi if r.ratio(m.key, baseline)]
            have = [r for r in large if r.ratio(m.key, baseline)]
            parts = []
            if have3:
                g3 = geomean([r.ratio(m.key, baseline) for r in have3])
                parts.append(f"{g3:.2f}× over the {len(have3)} cases with 3+ tensors "
                             f"({', '.join(r.case.key for r in have3)})")
            if have and len(have) != len(have3):
                ga = geomean([r.ratio(m.key, baseline) for r in have])
                parts.append(f"{ga:.2f}× over {len(have)} large case(s) "
                             f"({', '.join(r.case.key for r in have)})")
            if parts:
                lines.append(f"- {m.label}: " + "; ".join(parts))
    if tiny:
        lines.append("")
        lines.append("Tiny sizes (every index 4, 2 for the PEPS; per-call overhead): speedup = "
                     "torch.einsum time / method time (> 1 means faster):")
        for m in others:
            sp = {r.case.key: 1 / r.ratio(m.key, baseline) for r in tiny
                  if r.ratio(m.key, baseline)}
            if not sp:
                continue
            each = ", ".join(f"{k} {v:.2f}" for k, v in sp.items())
            lines.append(f"- {m.label}: geomean {geomean(list(sp.values())):.2f}× ({each})")
    return "\n".join(lines)


def noise(results: list[CaseResult]) -> str:
    spreads = sorted(s.spread for r in results for s in r.stats.values())
    if not spreads:
        return ""
    mid = spreads[len(spreads) // 2]
    return (f"Timing noise: interquartile range / median of the repetitions is "
            f"{mid:.0%} for the typical measurement, {spreads[-1]:.0%} at worst. "
            f"Ratios are medians of per-repetition ratios (methods are timed in the "
            f"same round), which cancels most of the machine's slow spells.")


def verification(results: list[CaseResult]) -> str:
    e32 = [v for r in results for v in r.err32.values()]
    e64 = [v for r in results for v in r.err64.values()]
    fails = [f"- {r.case.key}{' (tiny)' if r.tiny else ''} / {k}: {why}"
             for r in results for k, why in r.failures.items()]
    out = ["Before timing, every method's output and all gradients were compared "
           "with torch autograd in float64 on the same inputs "
           "(error = max|x - ref| / max|ref| per tensor)."]
    if e32:
        out.append(f"Largest float32 error of a timed method: {max(e32):.1e}.")
    if e64:
        out.append(f"Largest float64 error (tiny sizes, every method run in float64): "
                   f"{max(e64):.1e}.")
    if fails:
        out.append("\nNot timed (failed or wrong):\n" + "\n".join(fails))
    else:
        out.append("No method failed or disagreed.")
    return " ".join(out[:-1]) + ("\n" if fails else " ") + out[-1]
