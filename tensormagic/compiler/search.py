"""A contraction path for a product of many operands from cotengra, when it is installed.

opt_einsum's paths minimise FLOPs; past a couple of dozen operands a FLOP-minimal path can
write much more memory than it needs, and memory traffic is what the products then wait on.
cotengra's hyper-optimised greedy search with a combined objective (FLOPs plus memory written)
finds paths that run faster (benchmarks: the 5×5 PEPS). The search is capped in trials and
time, seeded (the same product gets the same path in every process), runs once per product
and shapes, is cached for the process, and is kept only when it scores better than
opt_einsum's greedy path by that objective. Small products (a greedy path under WORTH FLOPs)
are left to opt_einsum: there the number of operations, not their size, sets the time, and a
search would only delay the first call.
"""
import contextlib
import functools
import importlib.util
import random

import numpy as np
import opt_einsum

OPERANDS = 24     # products with at least this many operands are searched
WORTH = 1e8       # ... when opt_einsum's greedy path costs at least this many FLOPs
SECONDS = 5.0     # time cap of one search (TRIALS ends it first on a typical machine); 0: off
TRIALS = 256      # greedy trials of one search (about 1.3 s for the 5×5 PEPS)


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
    greedy, info = opt_einsum.contract_path(",".join(inputs) + "->" + output, *shapes,
                                            shapes=True, optimize="greedy")
    if float(info.opt_cost) < WORTH:
        return None
    import cotengra
    # integer labels and seeded generators: the same product gets the same path in every
    # process (string hashes, and so set orders, change between processes)
    number = {c: k for k, c in enumerate(sorted(size))}
    terms = [tuple(number[c] for c in term) for term in inputs]
    out, size = tuple(number[c] for c in output), {number[c]: n for c, n in size.items()}
    opt = cotengra.HyperOptimizer(methods=["greedy"], minimize="combo", max_time=seconds,
                                  max_repeats=trials, optlib="random", seed=0, parallel=False,
                                  reconf_opts=None, simulated_annealing_opts=None, progbar=False)
    with _seeded(0):
        found = opt.search(terms, out, size)
    # kept only where it beats opt_einsum's greedy path by the same objective
    usual = cotengra.ContractionTree.from_path(terms, out, size, path=greedy)
    best = min((found, usual), key=lambda tree: tree.combo_cost())
    return tuple(tuple(pair) for pair in best.get_path())


@contextlib.contextmanager
def _seeded(seed):
    """Python's and NumPy's global generators seeded, and restored afterwards."""
    state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
