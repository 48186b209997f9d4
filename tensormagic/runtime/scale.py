"""The options that take a callable past one device: memory_limit (bytes one slice of a
product may hold) and distributed (the slices spread over torch.distributed's ranks)."""
import math
import re

import torch

from ..compiler.slicekernels import NO_GROUP

_UNITS = {"": 1, "b": 1}
for _k, _p in (("k", 1), ("m", 2), ("g", 3), ("t", 4)):
    _UNITS.update({_k: 1024 ** _p, _k + "b": 1024 ** _p, _k + "ib": 1024 ** _p})
_TEXT = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*")
_EXPECTED = "a number of bytes or a string like '2GB' or '512 MiB' (units B, KB, MB, GB, TB; 1 KB = 1024 B)"


def memory_limit(value):
    """memory_limit=... as bytes (an int; None stays None): a positive number of bytes, or
    text with a binary unit ('2GB' is 2 * 1024**3 bytes, as is '2GiB')."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"memory_limit must be {_EXPECTED}, not {type(value).__name__}")
    number = value
    if isinstance(value, str):
        found = _TEXT.fullmatch(value.lower())
        if not found or found.group(2) not in _UNITS:
            raise ValueError(f"memory_limit must be {_EXPECTED}, not {value!r}")
        number = float(found.group(1)) * _UNITS[found.group(2)]
    if not math.isfinite(number) or number < 1:
        raise ValueError(f"memory_limit must be at least 1 byte, not {value!r}")
    return int(number)


def ranks(distributed):
    """How many ranks products are spread over: 1 unless distributed; then the default
    group's world size (a RuntimeError when there is none)."""
    if not distributed:
        return 1
    check_group()
    return torch.distributed.get_world_size()


def check_group():
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(NO_GROUP)
