"""The compiler: a cell and input shapes → a program of tensor operations → Python source.

plan.py builds the program (program.py: vars, ops) choosing contraction paths (opt_einsum,
or cotengra for many operands: search.py), memory layouts (layout.py), convolutions
(convs.py) and, for a memory budget or torch.distributed, index slices (slicing.py), with
derived.py for derived statements (second order), padded reads and scatters, lowering.py for
the recognised forms (fused primitives) and sizes.py for sizes that print as names (the
shape-generic export); describe.py prints it as a table. codegen.py walks the program and asks
each op kind (kinds/: one class per kind, its forward, backward, saved values and tangent;
KINDS is the table) for source, written with pysrc.py's small pieces. kernels.py holds the
helpers the generated source calls at run time, slicekernels.py the loops of a sliced product
(torch only: these two are the compiler's only modules that import torch).

May import: language (and torch, opt_einsum, cotengra). Never calculus, runtime or views.
"""
