"""Constant arithmetic for the parser: in float64's range, without big integers.

Numbers in a statement are folded as torch will hold them: an integer stays exact while
|n| ≤ 2**53, a larger one becomes a float, and a result outside float64's range (or a
division by zero) is an error, never an overflow at call time or a hang in big-integer
arithmetic (9**9**9 is refused at once, not computed).
"""
import cmath
import math

EXACT = 2 ** 53  # integers up to this size are exact in float64


class ConstantError(ArithmeticError):
    """A constant that cannot be held: the parser reports it with a caret."""


def bounded(value):
    """value as a number float64 can hold: a small int, a finite float or complex."""
    if isinstance(value, int):
        if -EXACT <= value <= EXACT:
            return value
        try:
            value = float(value)
        except OverflowError:
            raise ConstantError("this number is too large: it overflows float64") from None
    finite = cmath.isfinite(value) if isinstance(value, complex) else math.isfinite(value)
    if not finite:
        raise ConstantError("this number is too large: it overflows float64")
    return value


def fold(operation, *values):
    """operation(*values), bounded; Python's arithmetic errors become ConstantError."""
    try:
        return bounded(operation(*values))
    except ZeroDivisionError:
        raise ConstantError("this constant divides by zero") from None
    except (OverflowError, ValueError):
        raise ConstantError("this number is too large: it overflows float64") from None


def power(base, exponent):
    """base ** exponent, exact for small integer results, in floating point otherwise."""
    if type(base) is int and type(exponent) is int and exponent >= 0 and \
            (abs(base) <= 1 or exponent * math.log2(abs(base)) <= 53):
        return base ** exponent
    base = float(base) if isinstance(base, int) else base
    exponent = float(exponent) if isinstance(exponent, int) else exponent
    return fold(lambda a, b: a ** b, base, exponent)


_FUNCTIONS = {"sqrt": (math.sqrt, cmath.sqrt), "exp": (math.exp, cmath.exp),
              "log": (math.log, cmath.log), "recip": (lambda v: 1 / v,) * 2}


def function(name, value):
    """An elementwise function of a number (the constant factors of a derivative rule, the
    2/sqrt(pi) of erf's), bounded like every folded constant."""
    real, complex_ = _FUNCTIONS[name]
    return fold(complex_ if isinstance(value, complex) else real, value)

