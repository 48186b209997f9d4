"""The compiler: a cell and input shapes → a program of tensor operations → Python source.

plan.py builds the program (program.py: vars, ops) choosing contraction paths (opt_einsum,
or cotengra for many operands: search.py), memory layouts (layout.py) and convolutions
(convs.py), with derived.py for derived statements (second order), padded reads and scatters;
describe.py prints it as a table. codegen.py walks the program and asks each op
kind (kinds/: one class per kind, its forward, backward, saved values and tangent; KINDS is
the table) for source, written with pysrc.py's small pieces. kernels.py holds the helpers the
generated source calls at run time (torch only).

May import: language (and torch, opt_einsum, cotengra). Never calculus, runtime or views.
"""
