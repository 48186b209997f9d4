"""Past one process, on torch.distributed (gloo, 2 CPU processes on the loopback, a file
rendezvous, a hard time limit): a product's slices spread over the ranks give every rank the
one-process value and gradients; a tm.Module trains under DistributedDataParallel (eager and
torch.compile'd, fullgraph) and FSDP2 as it does in one process on the whole batch."""
import time

import pytest
import torch
import torch.multiprocessing as mp

import distributed_worker as worker
import tensormagic as tm

WORLD = 2
TIMEOUT = 300  # seconds for every scenario together (torch.compile takes most)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Spawn the ranks once, run every scenario, and read back each rank's results."""
    folder = tmp_path_factory.mktemp("ranks")
    context = mp.spawn(worker.main, args=(WORLD, str(folder), list(worker.SCENARIOS)),
                       nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT
    while not context.join(timeout=5):  # a rank that raised raises here, with its traceback
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"the {WORLD} ranks did not finish within {TIMEOUT} s")
    return {name: [torch.load(folder / f"{name}_{r}.pt", weights_only=False) for r in range(WORLD)]
            for name in worker.SCENARIOS}


def _one_process(text, shapes):
    xs = [x.requires_grad_() for x in worker.tensors(shapes)]
    value = tm.tensorgrad(text)(*xs)
    return value.detach(), torch.autograd.grad(value, xs, torch.ones_like(value))


@pytest.mark.parametrize("key", sorted(worker.SLICED))
def test_spread_slices_give_every_rank_the_full_value_and_gradients(ranks, key):
    text, shapes, _ = worker.SLICED[key]
    value, grads = _one_process(text, shapes)
    results = [r[key] for r in ranks["sliced"]]
    for got in results:
        assert got["spread"] and got["count"] >= WORLD
        torch.testing.assert_close(got["value"], value, rtol=1e-12, atol=1e-12)
        for a, b in zip(got["grads"], grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        # one all-reduce for the value, one for all the gradients together
        assert got["reduces"] == 2
    # slice k ran on rank k mod 2: each rank ran its share in the forward and in the backward
    count = results[0]["count"]
    assert [got["runs"] for got in results] == [2 * len(range(r, count, WORLD)) for r in range(WORLD)]


def test_a_differentiated_backward_through_spread_slices_matches_one_process(ranks):
    text, shapes, _ = worker.SLICED["ring"]
    xs = [x.requires_grad_() for x in worker.tensors(shapes)]
    grads = torch.autograd.grad(torch.einsum("abi,bcj,cak,ijk->", *xs), xs, create_graph=True)
    expected = torch.autograd.grad(grads, xs, worker.tensors(shapes, seed=2))
    for got in ranks["hvp"]:
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _single(wide=False, steps=worker.STEPS):
    """The same SGD steps in one process on the whole batch."""
    P, X, T = worker.model_data(wide)
    module = tm.Module(worker.MODEL, **P)
    return worker.train(module, module.named_parameters, X, T, rank=0, world=1, steps=steps)


def _same(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)


def test_ddp_gradients_and_parameters_equal_one_process_on_the_whole_batch(ranks):
    first, last = _single()
    for got_first, got_last in ranks["ddp"]:
        _same(got_first, first)  # the ranks' mean gradient is the whole batch's
        _same(got_last, last)


def test_torch_compile_under_ddp_captures_the_module_in_one_graph(ranks):
    """fullgraph=True: dynamo captured the module whole (it raises at a graph break). DDP's
    optimizer then splits that graph at its bucket boundaries, by design: the split never
    cuts the callable, which is one node (autograd_function_apply) of one subgraph."""
    first, last = _single(wide=True, steps=2)
    for got_first, got_last, graphs in ranks["compiled"]:
        _same(got_first, first)
        _same(got_last, last)
        assert len(graphs) >= 2  # the buckets' subgraphs
        holding = [g for g in graphs if any("autograd_function_apply" in t for t in g)]
        assert len(holding) == 1 and sum(t.count("autograd_function_apply") for t in holding[0]) == 1


def test_fsdp_shards_the_parameters_and_trains_as_one_process(ranks):
    first, last = _single()
    P, _, _ = worker.model_data()
    for got_first, got_last, local in ranks["fsdp"]:
        assert local["W"][0] < P["W"].shape[0]  # each rank holds a shard of W
        _same(got_first, first)
        _same(got_last, last)
