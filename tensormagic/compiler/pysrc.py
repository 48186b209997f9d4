"""Small pieces of generated Python source: numbers, einsum equations, shapes, transposes."""
import cmath
import math

import opt_einsum

from ..language.errors import NotationValueError


def num(value):
    """A number as source text (inf and nan included) that reads no name a user may shadow
    (inputs named float or complex)."""
    if isinstance(value, complex):
        if not cmath.isfinite(value):
            raise ValueError(f"non-finite complex constant {value!r}")  # the parser refuses these
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "torch.nan" if math.isnan(value) else ("torch.inf" if value > 0 else "(-torch.inf)")
    return repr(value)


def eq(operands, out):
    """An einsum equation in letters for operands' labels → out."""
    letters = {}
    for label in [i for labels in operands for i in labels] + list(out):
        letters.setdefault(label, opt_einsum.get_symbol(len(letters)))
    if len(letters) > 52:
        raise NotationValueError(f"one product here spans {len(letters)} distinct indices; torch.einsum "
                                 f"takes at most 52: split the statement")
    return ",".join("".join(letters[i] for i in labels) for labels in operands) + "->" + \
        "".join(letters[i] for i in out)


def shape(sizes, labels):
    """A shape tuple's source for these labels."""
    dims = [str(sizes[i]) for i in labels]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def dims(values):
    """Integers as a call's argument list: (2, 3) → '2, 3'."""
    return ", ".join(map(str, values))


def transpose(text):
    """The matrix transpose of a matrix expression."""
    return text[:-3] if text.endswith(".mT") else text + ".mT"


def const_log(value, complex_dtype):
    """log of a constant base, as torch would take it in this dtype."""
    if not isinstance(value, complex) and value > 0:
        return math.log(value)
    if value == 0:
        return float("-inf")
    return cmath.log(value) if complex_dtype else float("nan")
