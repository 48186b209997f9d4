"""Helpers the generated source calls (beyond torch): strided views, their transposes,
checked gathers, exact products. Each is plain torch, differentiable where it must be."""
import functools
import itertools
import math

import torch

from ..language.errors import NotationValueError


def step(x):
    return (x > 0).to(x.dtype)


def view(x, sizes, coefs, offsets):
    """x read at Σ coef·index + offset along each dim, as a strided view (no copy).
    coefs: per result dim, the coefficient along each of x's dims."""
    strides = [sum(c * s for c, s in zip(cs, x.stride())) for cs in coefs]
    # the offsets by slicing, not by reading x's storage offset, which a compiler cannot trace
    start = x[tuple(slice(o, None) for o in offsets)]
    return start.as_strided(sizes, strides)


def unview(g, shape, coefs, offsets):
    """The transpose of view: g added into zeros of `shape` at the positions view reads
    (positions read more than once, as by a convolution's windows, accumulate: the
    smallest dims are looped over until the rest reads each position once)."""
    contiguous = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    strides = [sum(c * s for c, s in zip(cs, contiguous)) for cs in coefs]
    offset = sum(o * s for o, s in zip(offsets, contiguous))
    sizes = list(g.shape)
    looped = []
    while not _injective([n for k, n in enumerate(sizes) if k not in looped],
                         [s for k, s in enumerate(strides) if k not in looped]):
        left = [(sizes[k], k) for k in range(len(sizes)) if k not in looped and sizes[k] > 1]
        looped.append(sorted(left)[0][1])  # the smallest dim left (a compiler traces sorted)
    covers = not looped and math.prod(sizes) == math.prod(shape)  # every position read once
    if covers and offset == 0 and g.is_contiguous() and \
            all(s == math.prod(sizes[k + 1:]) for k, s in enumerate(strides) if sizes[k] > 1):
        return g.reshape(shape)  # g already lies in the result's memory order (pooling windows)
    out = g.new_empty(shape) if covers else g.new_zeros(shape)
    if not looped:
        out.as_strided(sizes, strides, offset).copy_(g)
        return out
    kept = [k for k in range(len(sizes)) if k not in looped]
    for at in itertools.product(*(range(sizes[k]) for k in looped)):
        shift = offset + sum(i * strides[k] for i, k in zip(at, looped))
        part = g[tuple(at[looped.index(k)] if k in looped else slice(None) for k in range(len(sizes)))]
        out.as_strided([sizes[k] for k in kept], [strides[k] for k in kept], shift).add_(part)
    return out


def _injective(sizes, strides):
    """No two positions share an element: each stride passes everything the smaller ones span."""
    span = 0
    for s, n in sorted((s, n) for n, s in zip(sizes, strides) if n > 1):
        if s <= span:
            return False
        span += s * (n - 1)
    return True


def dense(x):
    """x, or (a permuted view, not a broadcast one) its contiguous copy: what a large
    elementwise op reads fastest."""
    if x.is_contiguous() or 0 in x.stride():
        return x
    return x.contiguous()


def index(t, name, of, dim, size):
    """An index tensor checked before use: integers, every value in range. Under vmap or a
    compiler its values cannot be read here: a negative one (which indexing would count from
    the end) is moved out of range instead, so that torch's own bounds check refuses it as it
    refuses a value too large (an error, never a silent read elsewhere)."""
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise NotationValueError(f"index tensor '{name}' must hold integers, not {t.dtype}")
    if _traced():
        return torch.where(t < 0, size, t)
    if t.numel():
        low, high = int(t.min()), int(t.max())
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise NotationValueError(f"index tensor '{name}' holds {bad}, out of range for dim {dim} "
                                     f"of '{of}' (size {size}): values must lie in 0..{size - 1}")
    return t


def _transformed():
    """Is a torch.func transform (vmap, grad, jacrev, ...) running?"""
    return torch._C._are_functorch_transforms_active()


def _traced():
    """Are values symbolic here: a torch.func transform or a compiler tracing?"""
    return _transformed() or torch.compiler.is_compiling()


def prod_others(x, dims):
    """For each entry, the product of the others along dims: exact when entries are zero."""
    keep = [d for d in range(x.dim()) if d not in dims]
    order = keep + list(dims)
    moved = x.permute(order)
    flat = moved.reshape(list(moved.shape[:len(keep)]) + [-1])
    ones = torch.ones_like(flat[..., :1])
    before = torch.cat([ones, torch.cumprod(flat[..., :-1], -1)], -1)
    after = torch.cat([torch.cumprod(flat[..., 1:].flip(-1), -1).flip(-1), ones], -1)
    others = (before * after).reshape(moved.shape)
    return others.permute([order.index(d) for d in range(x.dim())])


def prod(x, dims):
    keep = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(keep + list(dims))
    return moved.reshape(list(moved.shape[:len(keep)]) + [-1]).prod(-1)


def reduced(reduce, x, dims, **options):
    """reduce (torch.amax, torch.sum, ...) over dims: in one call when they are consecutive,
    else one dim at a time, the last first. torch reduces scattered small dims (a pooling
    window's, between the window positions') several times slower in one call."""
    dims = sorted(dims)
    if len(dims) == 1 or dims == list(range(dims[0], dims[-1] + 1)):
        return reduce(x, tuple(dims), **options)
    for d in reversed(dims):
        x = reduce(x, d, **options)
    return x


def extreme(x, dims, larger):
    """max (larger) or min of x over dims."""
    return reduced(torch.amax if larger else torch.amin, x, dims)


SHARED_BY_POSITION = 16  # reduced extents up to this many positions (pooling windows) go by slices


def share(g, x, y, dims):
    """amax's gradient: g shared equally among the entries of x equal to its max (or min) y
    along dims, zero elsewhere (in place into the mask, but where a torch.func transform
    batches g and not the mask). g and y broadcast against x, with size 1 along dims. (A
    compiler fuses the masks: by position only in eager mode.)"""
    if not torch.is_grad_enabled() and not _traced() and \
            math.prod(x.shape[d] for d in dims) <= SHARED_BY_POSITION:
        return _share_by_position(g, x, y, dims)
    hit = (x == y).to(g.dtype)
    weight = g / reduced(torch.sum, hit, dims, keepdim=True)
    return hit * weight if _transformed() else hit.mul_(weight)


def _share_by_position(g, x, y, dims):
    """share() one position of the reduced dims at a time (a pooling window's few): compares
    and products of y's size, not masks of x's size over dims of 2 or 3 (which torch runs
    slowly: about twice the time)."""
    positions, hits, weight = _shares(g, x, y, dims)
    out = torch.empty(x.shape, dtype=weight.dtype, device=weight.device)
    for at, hit in zip(positions, hits):
        torch.mul(hit, weight, out=out[at])
    return out


def _shares(g, x, y, dims):
    """(each position of the reduced dims as an index, x's entry there equal to the extreme y
    or not, the gradient each such entry gets: g over the count of ties)."""
    positions = _positions(x, dims)
    lead = (None,) * (x.dim() - y.dim()), (None,) * (x.dim() - g.dim())  # broadcasting's
    y, g = y[lead[0]].squeeze(dims), g[lead[1]].squeeze(dims)  # dropped leading 1s, restored
    hits = [x[at] == y for at in positions]
    count = hits[0].to(g.dtype)
    for hit in hits[1:]:
        count += hit
    return positions, hits, g / count


def pool(x, sizes, coefs, offsets, dims, larger):
    """max (larger) or min of x over windows: the windows a strided view, reduced over dims
    (as a compiler traces it, small windows position by position: see _compiled_pool_backward)."""
    windows = view(x, sizes, coefs, offsets)
    if torch.compiler.is_compiling() and _few(sizes, dims):
        pick = torch.maximum if larger else torch.minimum
        return functools.reduce(pick, [windows[at] for at in _positions(windows, dims)])
    return extreme(windows, dims, larger)


def _widened(t, dims):
    """t (laid out like the pooled result) with a dim of size 1 at each of the windows' dims."""
    wide = list(t.shape)
    for d in sorted(dims):
        wide.insert(d, 1)
    return t.reshape(wide)


def _few(sizes, dims):
    """Windows of few positions (a pooling window's): taken position by position."""
    return math.prod([sizes[d] for d in dims]) <= SHARED_BY_POSITION


def _positions(x, dims):
    """Each position of x's dims `dims`, as an index of x."""
    return [tuple(at.get(d, slice(None)) for d in range(x.dim())) for at in
            (dict(zip(dims, k)) for k in itertools.product(*(range(x.shape[d]) for d in dims)))]


def _compiled_pool_backward(g, x, y, sizes, coefs, offsets, dims):
    """pool_backward() as a compiler traces it. A compiler given the windows as one strided
    view runs its vectors along a window of 2 or 3 (masked loads: 7x slower than torch's
    pooling); given the window positions one at a time, it fuses their compares into
    elementwise loops along the result's last dim. The shares are then put back by fold."""
    windows = view(x, sizes, coefs, offsets)
    g, y = _widened(g, dims), _widened(y, dims)
    if _few(sizes, dims):
        _, hits, weight = _shares(g, windows, y, dims)
        kept = [d for d in range(len(sizes)) if d not in dims]
        stacked = torch.stack([hit * weight for hit in hits]).reshape(
            [sizes[d] for d in dims] + [sizes[d] for d in kept])
        back = [0] * len(sizes)
        for k, d in enumerate(list(dims) + kept):
            back[d] = k
        shares = stacked.permute(back)
    else:
        shares = share(g, windows, y, dims)
    folded = _folded(shares, x.shape, sizes, coefs, offsets, dims)
    return folded if folded is not None else unview(shares, x.shape, coefs, offsets)


def pool_backward(g, x, y, sizes, coefs, offsets, dims, larger):
    """Δx of pool(): g (laid out like y) shared among each window's extremes, added into x's
    shape straight from the windows' positions, one at a time (no gradient of the windows'
    size between); where the backward is recorded, transformed or compiled, as share() then
    unview(), whose ops torch can differentiate and batch."""
    if torch.compiler.is_compiling():
        return _compiled_pool_backward(g, x, y, sizes, coefs, offsets, dims)
    windows = view(x, sizes, coefs, offsets)
    g, y = _widened(g, dims), _widened(y, dims)
    if torch.is_grad_enabled() or _traced() or not _few(sizes, dims):
        return unview(share(g, windows, y, dims), x.shape, coefs, offsets)
    positions, hits, weight = _shares(g, windows, y, dims)
    contiguous = [math.prod(x.shape[d + 1:]) for d in range(x.dim())]
    strides = [sum(c * s for c, s in zip(cs, contiguous)) for cs in coefs]
    once = _injective(sizes, strides) and math.prod(sizes) == math.prod(x.shape)
    dx = (torch.empty if once else torch.zeros)(x.shape, dtype=weight.dtype, device=weight.device)
    into = view(dx, sizes, coefs, offsets)
    for at, hit in zip(positions, hits):  # each position's windows are apart: no entry twice
        if once:
            torch.mul(hit, weight, out=into[at])
        else:
            into[at].add_(hit * weight)
    return dx


def _folded(shares, shape, sizes, coefs, offsets, dims):
    """unview() of pooling windows (one or two dims, each read at stride·i + dilation·a, the
    others as they are) as torch's fold: one kernel where a compiler turns unview's loop of
    strided adds into a copy of the whole tensor per window position. None for other views."""
    reads = [[k for k, c in enumerate(cs) if c] for cs in coefs]
    if any(offsets) or any(len(r) != 1 for r in reads):
        return None
    reads = [r[0] for r in reads]
    kept = [r for r in range(len(sizes)) if r not in dims]
    spatial = sorted({reads[d] for d in dims})
    plain = [k for k in range(len(shape)) if k not in spatial]
    last = list(range(len(shape) - len(spatial), len(shape)))  # fold's spatial dims come last
    if len(spatial) > 2 or len(dims) != len(spatial) or spatial != last:
        return None
    by_dim = {k: [r for r in kept if reads[r] == k] for k in range(len(shape))}
    if any(len(by_dim[k]) != 1 or coefs[by_dim[k][0]][k] != 1 or sizes[by_dim[k][0]] != shape[k]
           for k in plain) or any(len(by_dim[k]) != 1 for k in spatial):
        return None
    window = {reads[d]: d for d in dims}
    order = [by_dim[k][0] for k in plain] + [window[k] for k in spatial] + [by_dim[k][0] for k in spatial]
    if [by_dim[k][0] for k in plain] != sorted([by_dim[k][0] for k in plain]):
        return None
    stride = [coefs[by_dim[k][0]][k] for k in spatial]
    dilation = [coefs[window[k]][k] for k in spatial]
    kernel = [sizes[window[k]] for k in spatial]
    blocks = [sizes[by_dim[k][0]] for k in spatial]
    reach = [s * (n - 1) + t * (m - 1) + 1 for s, n, t, m in zip(stride, blocks, dilation, kernel)]
    lead = math.prod([shape[k] for k in plain])  # lists: dynamo traces no generator here
    cols = shares.permute(order).reshape(lead, math.prod(kernel), math.prod(blocks))
    if len(spatial) == 1:  # fold takes two spatial dims: a first of size 1
        reach, kernel, dilation, stride = [1] + reach, [1] + kernel, [1] + dilation, [1] + stride
    out = torch.nn.functional.fold(cols, reach, kernel, dilation=dilation, stride=stride)
    out = out.reshape([shape[k] for k in plain] + reach[-len(spatial):])
    pad = []
    for k in reversed(spatial):
        pad += [0, shape[k] - out.shape[k]]
    return torch.nn.functional.pad(out, pad) if any(pad) else out


def pick(a, b, larger):
    """The share of max(a, b) (min: larger=False) that goes to a: 1, 0, or ½ at a tie."""
    dtype = (a if isinstance(a, torch.Tensor) else b).dtype
    won = (a > b) if larger else (a < b)
    return won.to(dtype) + 0.5 * (a == b).to(dtype)


def cross_entropy_backward(g, ls, target, dim):
    """Δz of -log_softmax(z) read at the targets: (softmax(z) - onehot(target)) · Δ, the
    softmax taken from the log-softmax kept; in place where nothing records it."""
    g = g.unsqueeze(dim)
    dz = torch.exp(ls)
    dz = dz * g if torch.is_grad_enabled() or _transformed() else dz.mul_(g)
    return dz.scatter_add_(dim, target, -g)


def silu_backward(g, x):
    """Δx of x·sigmoid(x): torch's kernel, or (where the backward is itself differentiated or
    transformed: torch has no derivative of that kernel) the same formula in plain ops."""
    if torch.is_grad_enabled() or _transformed():
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))
    return torch.ops.aten.silu_backward(g, x)


def conv_backward(g, x, w, stride, dilation, mask):
    """(Δx, Δw) of a convolution without padding or groups, by aten.convolution_backward
    (differentiable); complex tensors through their real and imaginary parts, with torch's
    convention Δx = Bᵀ(Δy, conj w), Δw = Bᵀ(Δy, conj x)."""
    n = len(stride)

    def real(g, x, w, want):
        out = torch.ops.aten.convolution_backward(g, x, w, None, list(stride), [0] * n, list(dilation),
                                                  False, [0] * n, 1, list(want) + [False])
        return out[0] if want[0] else out[1]

    if not g.is_complex():
        out = torch.ops.aten.convolution_backward(g, x, w, None, list(stride), [0] * n, list(dilation),
                                                  False, [0] * n, 1, list(mask) + [False])
        return out[0], out[1]
    gr, gi = g.real.contiguous(), g.imag.contiguous()
    xr, xi, wr, wi = x.real, x.imag, w.real, w.imag
    gx = gw = None
    if mask[0]:
        pick = (True, False)
        gx = torch.complex(real(gr, xr, wr, pick) + real(gi, xr, wi, pick),
                           real(gi, xr, wr, pick) - real(gr, xr, wi, pick))
    if mask[1]:
        pick = (False, True)
        gw = torch.complex(real(gr, xr, wr, pick) + real(gi, xi, wr, pick),
                           real(gi, xr, wr, pick) - real(gr, xi, wr, pick))
    return gx, gw


NAMESPACE = {"_step": step, "_dense": dense, "_view": view, "_unview": unview, "_index": index,
             "_prod_others": prod_others, "_prod": prod, "_share": share, "_pick": pick,
             "_extreme": extreme, "_pool": pool, "_pool_backward": pool_backward, "_cross_entropy_backward": cross_entropy_backward,
             "_silu_backward": silu_backward,
             "_conv_backward": conv_backward}
