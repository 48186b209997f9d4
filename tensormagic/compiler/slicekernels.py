"""The run-time loops of a sliced product (kinds/sliced.py), which the generated code calls.

A slice is one position of every sliced index's chunks: the operands are narrowed to it (and
made contiguous: the inner program's layouts read them so), the inner forward contracts them,
and its result is added up (a summed index) or placed as a block (an index of the result).
The backward does the same per slice: the inner forward again, then the inner backward, and
each operand's gradient added up or placed. With spread, slice k runs on rank k mod world
size of torch.distributed's default group, and an all-reduce (SUM) of the result, and of the
operands' gradients, gives every rank the full values. Everything is plain torch, so that a
backward run with grad enabled (create_graph=True) is differentiable; there, and under
torch.func transforms, every rank runs every slice itself (no collective: autograd and
torch.func do not differentiate through an all-reduce as this function needs).
"""
import itertools

import torch

NO_GROUP = ("distributed=True needs torch.distributed's default process group: call "
            "torch.distributed.init_process_group(...) first, or pass distributed=False")


def sliced_forward(inner, operands, chunks, dims, out, shape, spread):
    """The product of `operands`, slice by slice. chunks: (size, chunk) per sliced index;
    dims: per operand, ((dim, k), ...) its dims holding sliced index k; out: the result's;
    shape: the result's; spread: go round the ranks."""
    spread = spread and _spreading()
    counts = [n // c for n, c in chunks]
    result = _Blocks(out, counts, chunks, shape)
    for pos in _mine(counts, spread):
        xs = [_narrow(x, d, pos, chunks) for x, d in zip(operands, dims)]
        result.add(pos, inner(*xs)[0][0])
        del xs
    result = result.tensor(operands[0])
    return _all_reduce([result])[0] if spread else result


def sliced_backward(forward, backward, operands, g, wants, chunks, dims, out, shape, spread):
    """Each operand's gradient (None where not wanted), slice by slice: one slice's
    intermediates are recomputed and released before the next slice's."""
    spread = spread and _spreading()
    counts = [n // c for n, c in chunks]
    sums = [_Blocks(d, counts, chunks, x.shape) if w else None
            for x, d, w in zip(operands, dims, wants)]
    for pos in _mine(counts, spread):
        xs = [_narrow(x, d, pos, chunks) for x, d in zip(operands, dims)]
        # the list is the only reference to the slice's intermediates: the inner backward
        # frees each after its last reader
        parts = backward(list(forward(*xs)[1]), (_narrow(g, out, pos, chunks),))
        del xs
        for acc, part in zip(sums, parts):
            if acc is not None:
                acc.add(pos, part)
        del parts
    grads = [None if acc is None else acc.tensor(x) for acc, x in zip(sums, operands)]
    if spread:
        wanted = _all_reduce([t for t in grads if t is not None])
        grads = [None if t is None else wanted.pop(0) for t in grads]
    return tuple(grads)


class _Blocks:
    """A tensor of `shape` made of blocks, each the sum of the slices' parts at its position
    (dims: ((dim, k), ...), the dims holding sliced index k). When nothing records or
    transforms the computation, parts are added in place into one tensor; otherwise they are
    summed out of place and the blocks joined at the end (differentiable, and batched under
    vmap)."""

    def __init__(self, dims, counts, chunks, shape):
        self.dims, self.counts, self.chunks, self.shape = dims, counts, chunks, tuple(shape)
        self.parts, self.full = {}, None
        self.in_place = not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()

    def add(self, pos, part):
        if self.in_place:
            if self.full is None:
                self.full = part.new_zeros(self.shape)
            _narrow(self.full, self.dims, pos, self.chunks, copy=False).add_(part)
            return
        key = tuple(pos[k] for _, k in self.dims)
        self.parts[key] = part if key not in self.parts else self.parts[key] + part

    def tensor(self, like):
        """The whole tensor: blocks no part reached (another rank's) are zeros."""
        if self.in_place:
            return self.full if self.full is not None else like.new_zeros(self.shape)
        block = list(self.shape)
        for d, k in self.dims:
            block[d] //= self.counts[k]

        def join(prefix):
            if len(prefix) == len(self.dims):
                return self.parts[prefix] if prefix in self.parts else like.new_zeros(block)
            d, k = self.dims[len(prefix)]
            return torch.cat([join(prefix + (p,)) for p in range(self.counts[k])], d)
        return join(())


def _spreading():
    """Go round the ranks now: the default group exists (else an error), nothing is to be
    differentiated through the collectives, and no torch.func transform is active."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(NO_GROUP)
    return not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def _mine(counts, spread):
    """The slices this process runs: all of them, or every world-size-th from its rank."""
    positions = itertools.product(*(range(n) for n in counts))
    if not spread:
        return positions
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    return (pos for k, pos in enumerate(positions) if k % world == rank)


def _narrow(x, dims, pos, chunks, copy=True):
    """x's block at slice `pos` along its sliced dims (contiguous, a copy where it must be;
    copy=False: a view)."""
    for d, k in dims:
        x = x.narrow(d, pos[k] * chunks[k][1], chunks[k][1])
    return x.contiguous() if dims and copy else x


def _all_reduce(tensors):
    """Each tensor summed over the ranks (one collective for all of them when they share a
    dtype). The tensors are new here (sums of slices), so they are reduced in place."""
    dist = torch.distributed
    if len(tensors) > 1 and len({t.dtype for t in tensors}) == 1:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        return [p.view(t.shape) for p, t in zip(flat.split([t.numel() for t in tensors]), tensors)]
    out = []
    for t in tensors:
        t = t.contiguous()
        dist.all_reduce(t)
        out.append(t)
    return out


NAMESPACE = {"_sliced_forward": sliced_forward, "_sliced_backward": sliced_backward}
