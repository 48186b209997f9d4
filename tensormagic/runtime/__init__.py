"""The runtime: generated source → the differentiable callable users hold.

compiled.py runs a program's source once per signature (Compiled; execute.py runs source);
second.py is fn.hvp and fn.hessian (second order compiled per signature); arguments.py turns a
call's arguments into tensors and a cache key; autograd.py wraps the compiled functions as
torch autograd Functions (which one runs under hooks, transforms and compilers);
function.py is the callable itself (tensorgrad, TensorGradFunction: caches, views, inspection);
scale.py reads memory_limit and the torch.distributed group for distributed=True;
export.py writes a standalone module; checking.py is fn.check(); inspector.py is
fn.inspector(), the live notebook view (ipywidgets, imported there only).

May import: language, calculus, compiler, views.
"""
