"""tensormagic: index notation in, symbolic gradients out, as differentiable torch callables."""
from ._version import __version__
from .frontends.module import Module
from .language.errors import NotationError, NotationSyntaxError, NotationValueError
from .runtime.function import TensorGradFunction, tensorgrad

# What pickles name is this package's public face (tensormagic.tensorgrad, tensormagic.Module),
# never the stage that defines it: moving code between stages keeps pickles loadable.
for _public in (tensorgrad, TensorGradFunction, Module):
    _public.__module__ = __name__
del _public

__all__ = ["__version__", "tensorgrad", "TensorGradFunction", "Module", "NotationError", "NotationSyntaxError",
           "NotationValueError", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython):
    """%load_ext tensormagic"""
    from .frontends.magic import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    """%unload_ext tensormagic"""
    from .frontends.magic import unload_ipython_extension as unload
    unload(ipython)
