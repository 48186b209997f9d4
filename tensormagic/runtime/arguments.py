"""A call's arguments → tensors of one dtype on one device (as torch promotes), and the
compile cache's key for them."""
import numpy as np
import torch

from ..language.errors import NotationValueError


def prepare(values, names, has_complex_const=False, index_names=()):
    """Arguments → tensors on one device (NumPy arrays and numbers converted), of the dtype all
    inputs promote to; in a complex program a real input stays real (its real counterpart),
    as it does in torch; index tensors (index_names) keep their integer dtype."""
    if index_names:
        return _prepare_with_indices(values, names, has_complex_const, index_names)
    if values and all(isinstance(v, torch.Tensor) for v in values):
        # The common case, checked cheaply: floating tensors of one dtype on one device.
        dtype, device = values[0].dtype, values[0].device
        if (dtype.is_floating_point or dtype.is_complex) and (dtype.is_complex or not has_complex_const) \
                and all(v.dtype == dtype and v.device == device for v in values):
            return values, dtype, device
    tensors, device = [], None
    for name, v in zip(names, values):
        if isinstance(v, np.ndarray) or (isinstance(v, np.generic) and not isinstance(v, np.number)):
            v = torch.from_numpy(np.asarray(v))
        elif isinstance(v, np.number):
            v = v.item()
        if isinstance(v, torch.Tensor):
            if device is None or (v.dim() and device != v.device):
                if device is not None and any(t.dim() and t.device != v.device for t in tensors
                                              if isinstance(t, torch.Tensor)):
                    raise NotationValueError(f"'{name}' is on {v.device} but other inputs are on {device}")
                device = v.device if v.dim() or device is None else device
        elif not isinstance(v, (int, float, complex)) or isinstance(v, bool):
            raise TypeError(f"input '{name}' must be a tensor, an array or a number, "
                            f"not {type(v).__name__}")
        tensors.append(v)
    dtype = _common_dtype(tensors, has_complex_const)
    device = device or torch.device("cpu")
    out = []
    for v in tensors:
        is_complex = isinstance(v, complex) or (isinstance(v, torch.Tensor) and v.is_complex())
        own = dtype if is_complex else dtype.to_real()
        if isinstance(v, torch.Tensor):
            if v.dtype != own or v.device != device:
                v = v.to(device=device, dtype=own)
        else:
            v = torch.tensor(v, dtype=own, device=device)
        out.append(v)
    return out, dtype, device


def _prepare_with_indices(values, names, has_complex_const, index_names):
    picked = [k for k, n in enumerate(names) if n in index_names]
    rest = [k for k in range(len(names)) if k not in picked]
    tensors, dtype, device = prepare([values[k] for k in rest], [names[k] for k in rest], has_complex_const)
    out = list(values)
    for k, t in zip(rest, tensors):
        out[k] = t
    for k in picked:
        v = values[k]
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"index tensor '{names[k]}' must be an integer tensor or array, "
                            f"not {type(v).__name__}")
        if v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool:
            raise NotationValueError(f"index tensor '{names[k]}' must hold integers, not {v.dtype}")
        out[k] = v.to(device=device)
    return out, dtype, device


def _common_dtype(values, has_complex_const):
    """torch's type promotion over every input (torch.result_type, n-ary): tensors with
    dimensions outrank 0-dim tensors, which outrank Python numbers, unless the lower rank
    brings a higher category (integer < floating < complex). A complex constant in the cell
    counts as a Python complex. An integer result computes in the default float dtype."""
    ranks = [None, None, None]  # tensors with dimensions, 0-dim tensors, Python numbers
    numbers = [v for v in values if not isinstance(v, torch.Tensor)]
    numbers += [1j] if has_complex_const else []
    for v in values:
        if isinstance(v, torch.Tensor):
            rank = 0 if v.dim() else 1
            ranks[rank] = _promote(ranks[rank], v.dtype)
    for v in numbers:
        ranks[2] = _promote(ranks[2], _number_dtype(v))
    dtype = _combine(ranks[0], _combine(ranks[1], ranks[2]))
    if dtype is None or not (dtype.is_floating_point or dtype.is_complex):
        return torch.get_default_dtype()
    return dtype


def _promote(a, b):
    return b if a is None else torch.promote_types(a, b)


def _number_dtype(v):
    default = torch.get_default_dtype()
    if isinstance(v, complex):
        return torch.promote_types(default, torch.complex64)
    return default if isinstance(v, float) else torch.int64


_COMPLEX = {torch.float16: torch.complex32, torch.float32: torch.complex64,
            torch.float64: torch.complex128}


def _combine(higher, lower):
    """One rank over the next lower one (c10's combine_categories)."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    if higher.is_complex:
        return higher
    if lower.is_complex:
        return _COMPLEX.get(higher, lower) if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher == torch.bool or lower.is_floating_point:
        return torch.promote_types(higher, lower)
    return higher


def quick_signature(values, wrt_mask, has_complex_const):
    """The cache key of the common call in one pass (prepare and signature in one): tensors,
    one per input, of one floating or complex dtype on one device; None otherwise."""
    if len(values) != len(wrt_mask) or not values:
        return None
    first = values[0]
    if not isinstance(first, torch.Tensor):
        return None
    dtype, device = first.dtype, first.device
    cx = dtype.is_complex
    if not (cx or dtype.is_floating_point) or (has_complex_const and not cx):
        return None
    grad = torch.is_grad_enabled()
    key = [dtype, device]
    for t, w in zip(values, wrt_mask):
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.device != device:
            return None
        key.append((t.shape, grad and w and t.requires_grad, cx))
    return tuple(key)


def signature(tensors, dtype, device, wrt_mask, size=None):
    """The cache key. size: applied to each dimension (under torch.compile, operator.index
    makes a symbolic size a plain int: our code is specialised to the shapes)."""
    grad = torch.is_grad_enabled()
    return (dtype, device) + tuple((t.shape if size is None else tuple(size(d) for d in t.shape),
                                    grad and w and t.requires_grad, t.is_complex())
                                   for t, w in zip(tensors, wrt_mask))
