"""The op kinds, one class each, and KINDS: the table codegen reads, keyed by program.Op.kind.

Each kind owns its calculus in one place (base.Kind says what a kind provides): its forward
source, its backward source, what it saves, its tangent. To add a kind, write its class in a
module here and list it below; nothing else dispatches on kinds.
"""
from .basic import AddTerms, Cast, Einsum1, Emit, Input, Literal, Map, Power, Scale
from .conv import Convolution
from .formula import Eye, IndicatorOf
from .fused import CrossEntropy, Gelu, LayerNorm, LogSoftmax, Silu, Softmax
from .index import Gather, Pad, Scatter, View
from .pair import Pair
from .reduce import Extreme, Pool, ReduceOver
from .sliced import Sliced

KINDS = {kind.name: kind() for kind in (
    Input, Literal, Cast, Einsum1, Scale, AddTerms, Map, Power, Emit,  # basic
    Pair, ReduceOver, Pool, Extreme, View, Gather, Pad, Scatter, Convolution, Sliced,
    Softmax, LogSoftmax, CrossEntropy, LayerNorm, Gelu, Silu,  # recognised forms (lowering.py)
    Eye, IndicatorOf,  # read by derived formulas only (second order)
)}
