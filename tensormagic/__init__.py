"""tensormagic: index notation in, symbolic gradients out, as differentiable torch callables."""
from .errors import NotationError, NotationSyntaxError, NotationValueError
from .function import TensorGradFunction, tensorgrad
from .module import Module

__all__ = ["tensorgrad", "TensorGradFunction", "Module", "NotationError", "NotationSyntaxError",
           "NotationValueError", "load_ipython_extension", "unload_ipython_extension"]
__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """%load_ext tensormagic"""
    from .magic import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    """%unload_ext tensormagic"""
    from .magic import unload_ipython_extension as unload
    unload(ipython)
