"""Generated source, run: the namespace it runs in (torch, the dtype and device it is made
for, the helpers of compiler/kernels.py and slicekernels.py) and running it with its text kept for tracebacks."""
import linecache
import weakref
from itertools import count

import torch

from ..compiler import kernels, slicekernels

_ids = count()


def namespace(dtype, device):
    """What generated code reads besides its arguments."""
    return {"torch": torch, "_dtype": dtype, "_rdtype": dtype.to_real(), "_device": device,
            **kernels.NAMESPACE, **slicekernels.NAMESPACE}


def run(text, label, namespace):
    """Run generated source; its text stays in linecache (for tracebacks) while the functions
    it defines live, and is dropped with them."""
    filename = f"<tensorgrad {label} #{next(_ids)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    before = {k: id(v) for k, v in namespace.items()}
    exec(compile(text, filename, "exec"), namespace)
    defined = [v for k, v in namespace.items() if before.get(k) != id(v) and callable(v)]
    if defined:
        weakref.finalize(defined[0], linecache.cache.pop, filename, None)
    return namespace
