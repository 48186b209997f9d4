"""The front ends: where people meet the engine.

The IPython magics %%tensorgrad, %tensorgrad_verbose, %tensorgrad_export (magic.py; what a
cell shows, in a terminal and in a kernel with its live inspector, in outputs.py; the extra
displays of its flags in extras.py), the command line (cli.py, run by
`python -m tensormagic`), and tm.Module, a cell with parameters as a torch.nn.Module
(module.py).

May import: anything below (runtime, views, language). Nothing imports a front end but the
package's public face (tensormagic/__init__.py).
"""
