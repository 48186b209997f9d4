"""What each of the ranks that tests/test_distributed.py spawns runs: gloo over the loopback,
a file rendezvous (no port to pick), every scenario's results saved for the test to compare
with one process. Data and models are made here, seeded, so the test makes the same ones."""
import os
import re

import torch
import torch.distributed as dist

import tensormagic as tm

RING = "s := P[a,b,i]*Q[b,c,j]*R[c,a,k]*T[i,j,k]"
CHAIN = "A[i,m] := B[i,j]*C[j,k]*D[k,l]*E[l,m]"
# (statement, shapes, memory_limit): a summed product, one whose slices fill blocks of the
# result, and one cut only to give each rank its share
SLICED = {
    "ring": (RING, [(6, 6, 4)] * 3 + [(4, 4, 4)], 2048),
    "chain": (CHAIN, [(8, 6), (6, 4), (4, 6), (6, 8)], 512),
    "spread only": (RING, [(6, 6, 4)] * 3 + [(4, 4, 4)], None),
}
MODEL = """H[b,o] := tanh(X[b,i]*W[i,o] + c[o])
G[b,p] := tanh(H[b,o]*W2[o,p])
L := mean[b]((G[b,p]*V[p] - T[b])**2)"""
STEPS = 3


def tensors(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=torch.float64, generator=g) for s in shapes]


def model_data(wide=False):
    """Parameters and a batch of 8; wide: parameters past DDP's 1 MB buckets."""
    n, m = (64, 1024) if wide else (5, 6)
    p = 512 if wide else 4
    W, c, W2, V, X, T = tensors([(n, m), (m,), (m, p), (p,), (8, n), (8,)], seed=1)
    return dict(W=W / n ** 0.5, c=c, W2=W2 / m ** 0.5, V=V), X, T


def main(rank, world, folder, scenarios):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # the loopback only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world)
    try:
        for name in scenarios:
            torch.save(SCENARIOS[name](rank, world), os.path.join(folder, f"{name}_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def sliced(rank, world):
    """Value and gradients of each distributed product, with how many slices this rank ran
    and how many all-reduces it took part in."""
    out, real = {}, dist.all_reduce
    for key, (text, shapes, limit) in SLICED.items():
        fn = tm.tensorgrad(text, memory_limit=limit, distributed=True)
        xs = [x.requires_grad_() for x in tensors(shapes)]
        fn(*xs)  # compiled; now count what a call does
        namespace = fn._last.namespace
        runs, reduces = _count(namespace, [k for k in namespace if re.fullmatch(r"_slice\d+_forward", k)])
        value = fn(*xs)
        grads = torch.autograd.grad(value, xs, torch.ones_like(value))
        (slices,) = [op.info["slices"] for op in fn._last.program.ops if op.kind == "sliced"]
        dist.all_reduce = real
        out[key] = dict(value=value.detach(), grads=[g.detach() for g in grads], count=slices.count,
                        runs=runs[0], reduces=reduces[0], spread=slices.spread)
    return out


def _count(namespace, inner):
    """Count the calls of a sliced product's inner forward and of torch's all_reduce."""
    runs, reduces = [0], [0]
    for name in inner:
        def counted(*args, _f=namespace[name]):
            runs[0] += 1
            return _f(*args)
        namespace[name] = counted
    real = dist.all_reduce

    def all_reduce(*args, **kwargs):
        reduces[0] += 1
        return real(*args, **kwargs)
    dist.all_reduce = all_reduce
    return runs, reduces


def hvp(rank, world):
    """A Hessian-vector product through a distributed sliced product (a differentiated
    backward: every rank runs every slice itself)."""
    text, shapes, limit = SLICED["ring"]
    fn = tm.tensorgrad(text, memory_limit=limit, distributed=True)
    xs = [x.requires_grad_() for x in tensors(shapes)]
    vs = tensors(shapes, seed=2)
    grads = torch.autograd.grad(fn(*xs), xs, create_graph=True)
    return [h.detach() for h in torch.autograd.grad(grads, xs, vs)]


def train(model, params, X, T, rank, world, steps=STEPS):
    """SGD on this rank's half of the batch: the first gradients and the final parameters."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, T = X.chunk(world)[rank], T.chunk(world)[rank]
    first = None
    for _ in range(steps):
        opt.zero_grad()
        model(X=X, T=T).backward()
        if first is None:
            first = {n: _full(p.grad).clone() for n, p in params()}
        opt.step()
    return first, {n: _full(p).detach().clone() for n, p in params()}


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t  # an FSDP shard: all of it


def ddp(rank, world):
    P, X, T = model_data()
    module = tm.Module(MODEL, **P)
    wrapped = torch.nn.parallel.DistributedDataParallel(module)
    return train(wrapped, module.named_parameters, X, T, rank, world)


def compiled(rank, world):
    """torch.compile(fullgraph=True) of the module, under DDP with buckets of 1 MB: dynamo
    captures the module in one graph (fullgraph raises at a break), and DDP's optimizer splits
    it at bucket boundaries; recorded: each subgraph's call targets."""
    P, X, T = model_data(wide=True)
    module = tm.Module(MODEL, **P)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward
    torch._dynamo.reset()
    inner = torch.compile(module, backend=backend, fullgraph=True)
    wrapped = torch.nn.parallel.DistributedDataParallel(inner, bucket_cap_mb=1)
    first, last = train(wrapped, module.named_parameters, X, T, rank, world, steps=2)
    return first, last, graphs


def fsdp(rank, world):
    """FSDP2: each parameter sharded over the ranks (a DTensor), gathered for the forward."""
    from torch.distributed.fsdp import fully_shard
    P, X, T = model_data()
    module = tm.Module(MODEL, **P)
    fully_shard(module)
    local = {n: tuple(p.to_local().shape) for n, p in module.named_parameters()}
    first, last = train(module, module.named_parameters, X, T, rank, world)
    return first, last, local


SCENARIOS = {"sliced": sliced, "hvp": hvp, "ddp": ddp, "compiled": compiled, "fsdp": fsdp}
