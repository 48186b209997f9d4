"""Interleaved timing: every repetition runs each function once, round-robin,
so slow drifts of the machine (frequency, other load) hit all methods alike."""

from __future__ import annotations

import argparse
import gc
import os
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Stats:
    median: float  # seconds per call
    q1: float
    q3: float
    reps: int
    inner: int  # calls per sample
    samples: tuple[float, ...]  # seconds per call, sample r taken in round r

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median

    def as_dict(self) -> dict:
        return dict(median_s=self.median, q1_s=self.q1, q3_s=self.q3,
                    reps=self.reps, calls_per_sample=self.inner,
                    samples_s=list(self.samples))


def paired_ratio(a: Stats, b: Stats) -> float:
    """Median over rounds of a's time / b's time in the same round.

    Both were timed within each round, so a slow spell of the machine
    cancels out of the ratio instead of landing on one method.
    """
    return statistics.median(x / y for x, y in zip(a.samples, b.samples))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(fns: dict[str, Callable[[], object]], reps: int, warmup: int,
            min_sample_s: float, clock: str = "wall",
            sync: Callable[[], None] = lambda: None) -> dict[str, Stats]:
    """Median seconds per call of each function.

    After `warmup` untimed calls, each function gets an inner loop count so one
    sample lasts at least `min_sample_s` (tiny calls are too short to time
    singly).  Then `reps` rounds; round r starts at function r mod n.
    clock "cpu" counts this process's CPU time (all threads): steadier than
    wall time on a shared machine, but it also counts threads spinning idle.
    sync waits for the device (torch.cuda.synchronize) before a sample starts and ends.
    """
    now = CLOCKS[clock]
    inner = {name: _calibrate(f, warmup, min_sample_s, now, sync) for name, f in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(_sample(fns[name], inner[name], now, sync))
    return {name: _stats(s, inner[name]) for name, s in samples.items()}


def _calibrate(f: Callable[[], object], warmup: int, min_sample_s: float,
               now: Callable[[], float], sync: Callable[[], None]) -> int:
    for _ in range(warmup):
        f()
    once = _sample(f, 1, now, sync)
    return max(1, min(100_000, math.ceil(min_sample_s / max(once, 1e-7))))


def _sample(f: Callable[[], object], n: int, now: Callable[[], float],
            sync: Callable[[], None] = lambda: None) -> float:
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        sync()
        t0 = now()
        for _ in range(n):
            f()
        sync()
        return (now() - t0) / n
    finally:
        if gc_was_on:
            gc.enable()


def _stats(samples: list[float], inner: int) -> Stats:
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Stats(statistics.median(samples), q1, q3, len(samples), inner,
                 tuple(samples))


def time_once(f: Callable[[], object]) -> tuple[object, float]:
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    result = f()
    return result, time.perf_counter() - t0


def peak_bytes(f: Callable[[], object], device: str) -> int:
    """Peak bytes allocated during one call of f, above what was allocated before it.

    CUDA: the caching allocator's max_memory_allocated. CPU: the profiler's memory events
    (every allocation and free of a tensor, in order), summed up to their highest point.
    """
    import torch
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        f()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        f()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    now = peak = 0
    for _, n in events:
        now += n
        peak = max(peak, now)
    return peak


def table_arguments(reps: int, out: str) -> argparse.ArgumentParser:
    """The options every table script takes: --reps, --threads, --clock, --out (default
    benchmarks/<out>) and --only; torch.set_num_threads follows --threads (see threaded)."""
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=reps)
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time, steadier on a shared machine (use with --threads 1)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), out))
    p.add_argument("--only", nargs="*", help="run only the cases whose key contains one of these")
    return p


def threaded(args: argparse.Namespace) -> argparse.Namespace:
    """args, with torch's thread count set from --threads."""
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    return args
