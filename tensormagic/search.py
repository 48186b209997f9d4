"""A contraction path for a product of many operands from cotengra, when it is installed.

opt_einsum's paths minimise FLOPs; past a couple of dozen operands a FLOP-minimal path can
write much more memory than it needs, and memory traffic is what the products then wait on.
cotengra's hyper-optimised greedy search with a combined objective (FLOPs plus memory written)
finds paths that run faster (benchmarks: the 5×5 PEPS). The search is capped in trials and
time, runs once per product and shapes, and is cached for the process; being random, it is
kept only when it scores better than opt_einsum's own path by that objective. Small
products (a greedy path under WORTH FLOPs) are left to opt_einsum: there the number of
operations, not their size, sets the time, and a search would only delay the first call.
"""
import functools
import importlib.util

import opt_einsum

OPERANDS = 24     # products with at least this many operands are searched
WORTH = 1e8       # ... when opt_einsum's greedy path costs at least this many FLOPs
SECONDS = 2.0     # time cap of one search; 0: no search
TRIALS = 256      # greedy trials of one search (~1.5 s for the 5×5 PEPS)


def available():
    return SECONDS > 0 and importlib.util.find_spec("cotengra") is not None


def path(inputs, output, sizes):
    """An opt_einsum-style path (pairs of positions) for operands with these index letters
    (one character each), or None: too few operands, too small, or no cotengra."""
    if len(inputs) < OPERANDS or not available():
        return None
    key = (tuple("".join(i) for i in inputs), "".join(output), tuple(sorted(sizes.items())))
    return _searched(key, SECONDS, TRIALS)


@functools.lru_cache(maxsize=32)
def _searched(key, seconds, trials):
    inputs, output, sizes = key
    size = dict(sizes)
    shapes = [tuple(size[i] for i in term) for term in inputs]
    eq = ",".join(inputs) + "->" + output
    _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="greedy")
    if float(info.opt_cost) < WORTH:
        return None
    import cotengra
    terms, out = [tuple(term) for term in inputs], tuple(output)
    opt = cotengra.HyperOptimizer(methods=["greedy"], minimize="combo", max_time=seconds,
                                  max_repeats=trials, optlib="random", seed=0, parallel=False,
                                  reconf_opts=None, simulated_annealing_opts=None, progbar=False)
    found = opt.search(terms, out, size)
    # the search is random: keep opt_einsum's own path when it scores better
    usual, _ = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto-hq")
    usual = cotengra.ContractionTree.from_path(terms, out, size, path=usual)
    best = min((found, usual), key=lambda tree: tree.combo_cost())
    return tuple(tuple(pair) for pair in best.get_path())
