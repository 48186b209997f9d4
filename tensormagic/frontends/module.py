"""tm.Module: a cell with parameters, as a torch.nn.Module."""
import inspect

import torch

from ..language.errors import NotationValueError
from ..runtime.function import TensorGradFunction, bind_by_name, tensorgrad


class Module(torch.nn.Module):
    """A cell whose named inputs are parameters of the module; calling it takes the others.

        layer = tm.Module("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])", W=torch.randn(4, 5), c=torch.zeros(5))
        Y = layer(X)                       # X positionally or by name
        torch.optim.Adam(layer.parameters()); layer.state_dict()

    fn: a TensorGradFunction or the text of a cell (compiled with its default wrt: every input).
    A tensor that is already an nn.Parameter is registered as it is; any other becomes one.
    """

    def __init__(self, fn, **parameters):
        super().__init__()
        if isinstance(fn, str):
            fn = tensorgrad(fn)
        if not isinstance(fn, TensorGradFunction):
            raise TypeError(f"tm.Module needs a tensorgrad callable or the text of a cell, "
                            f"not {type(fn).__name__}")
        self.fn = fn
        for name, value in parameters.items():
            if name not in fn.inputs:
                raise NotationValueError(f"'{name}' is not an input of {fn.name} "
                                         f"(inputs: {', '.join(fn.inputs)})")
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"parameter '{name}' must be a tensor, not {type(value).__name__}")
            if not isinstance(value, torch.nn.Parameter):
                value = torch.nn.Parameter(value)
            if hasattr(self, name):
                raise NotationValueError(f"the name '{name}' is taken by torch.nn.Module: "
                                         f"rename the input in the cell")
            self.register_parameter(name, value)
        self.free = tuple(n for n in fn.inputs if n not in parameters)

    def _values(self, args, kwargs):
        values = bind_by_name(self.fn.name, self.free, args, kwargs, "inputs besides its parameters")
        values.update(self.named_parameters(recurse=False))
        return values

    def forward(self, *args, **kwargs):
        """The cell's last output."""
        return self.fn(**self._values(args, kwargs))

    def evaluate(self, *args, **kwargs):
        """Every output of the cell, by name."""
        return self.fn.evaluate(**self._values(args, kwargs))

    @property
    def __signature__(self):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([inspect.Parameter(n, kind) for n in self.free])

    def extra_repr(self):
        return f"{self.fn.statement!r}"
