"""Which products are convolutions: x read at shifted subscripts (i*s + a*d + offset) times a
plain w holding the window index a, so that torch's convolution can run them directly.

    y[b,o,i]   := x[b,c,i+a] * w[o,c,a]              F.conv1d(x, w)
    y[b,o,i,j] := x[b,c,2*i+a,2*j+e] * w[o,c,a,e]    F.conv2d(x, w, stride=2)

Every index must fall in one role: batch (x and the result), in-channel (x and w, summed),
out-channel (w and the result), output position i and window a (one shifted subscript each).
Anything else (groups, a diagonal, a gather, a range narrowed elsewhere) is left to the
general path: a strided view and a matrix product.
"""
from dataclasses import dataclass
from typing import Tuple

from ..language.ir import Affine, Tensor


@dataclass(frozen=True)
class Conv:
    x_perm: Tuple[int, ...]     # x's dims as batch…, in-channel…, spatial…
    w_perm: Tuple[int, ...]     # w's dims as out-channel…, in-channel…, window…
    batch: Tuple[str, ...]
    outs: Tuple[str, ...]
    positions: Tuple[str, ...]  # output position per spatial dim
    stride: Tuple[int, ...]
    dilation: Tuple[int, ...]
    offsets: Tuple[int, ...]    # where each spatial dim's reads start


def match(x, x_shape, w, w_shape, out, sizes):
    """A Conv for the product x * w → out (index labels), or None."""
    if not (isinstance(x, Tensor) and isinstance(w, Tensor)) or x.access is None or w.access is not None:
        return None
    if x.gathers() or len(set(w.indices)) != len(w.indices) or len(set(out)) != len(out):
        return None
    if any(w_shape[d] != sizes[i] for d, i in enumerate(w.indices)):
        return None
    plain = [a for a in x.access if isinstance(a, str)]
    spatial = []
    for dim, a in enumerate(x.access):
        if isinstance(a, Affine):
            roles = _split(a, w.indices)
            if roles is None:
                return None
            spatial.append((dim,) + roles)
    positions = [s[1] for s in spatial]
    windows = [s[3] for s in spatial]
    if not 1 <= len(spatial) <= 3 or len(set(plain + positions + windows)) != len(plain) + 2 * len(spatial):
        return None
    if any(i not in out or i in w.indices for i in positions) or any(k in out for k in windows):
        return None
    batch = [i for i in plain if i in out and i not in w.indices]
    chans = [i for i in plain if i in w.indices and i not in out]
    outs = [i for i in w.indices if i in out and i not in plain]
    if len(batch) + len(chans) != len(plain) or sorted(w.indices) != sorted(outs + chans + windows):
        return None
    if sorted(out) != sorted(batch + outs + positions):
        return None
    for dim, i, s, k, d, offset in spatial:  # the range of i must be what the convolution gives
        if (x_shape[dim] - offset - d * (sizes[k] - 1) - 1) // s + 1 != sizes[i]:
            return None
    x_perm = [x.access.index(i) for i in batch + chans] + [s[0] for s in spatial]
    w_perm = [w.indices.index(i) for i in outs + chans + windows]
    return Conv(tuple(x_perm), tuple(w_perm), tuple(batch), tuple(outs), tuple(positions),
                tuple(s[2] for s in spatial), tuple(s[4] for s in spatial), tuple(s[5] for s in spatial))


def _split(a, window_indices):
    """(position, stride, window, dilation, offset) of s*i + d*k + offset, k a window index."""
    if len(a.terms) != 2:
        return None
    (c1, i1), (c2, i2) = a.terms
    if i2 in window_indices and i1 not in window_indices:
        return i1, c1, i2, c2, a.offset
    if i1 in window_indices and i2 not in window_indices:
        return i2, c2, i1, c1, a.offset
    return None
