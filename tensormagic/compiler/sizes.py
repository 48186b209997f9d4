"""Sizes that print as names, for code that serves many shapes (the shape-generic export).

A Size is an int (the example's value, which planning reads) that writes itself into generated
source as an expression in the input sizes (`_n0`, `(_n0 * 5)`, `((_n2 - 3) // 2 + 1)`), so
the same source runs at other sizes once the names are bound. Every comparison planning makes
between sizes is a decision the code may rest on (two dims agree, a window fits, a range is the
narrower one): inside `guarded()` each is recorded with its outcome, and the code holds only
for sizes that decide every one of them the same way. Costs (contraction paths, layouts) are
worked out from plain ints: they choose how fast the code is, never whether it is right.
"""
import contextlib

_log = None  # the guards being recorded: [(left, op, right, outcome)], or None


@contextlib.contextmanager
def guarded():
    """Record the comparisons of Sizes made inside: yields the list of guards."""
    global _log
    outer, _log = _log, []
    try:
        yield _log
    finally:
        _log = outer


def plain(sizes):
    """{label: int} of a sizes dict (for cost models: no guard, no symbol)."""
    return {k: int(v) for k, v in sizes.items()}


def _text(x):
    return x.text if isinstance(x, (Size, SizeRatio)) else repr(x)


def _symbolic(x):
    return isinstance(x, (Size, SizeRatio))


class _Printed:
    """A number that writes itself as its expression (`text`); pickled as the plain number."""

    def __repr__(self):
        return self.text

    __str__ = __repr__

    def __format__(self, spec):
        return self.text if not spec else format(self._plain(self), spec)

    def __reduce__(self):
        return self._plain, (self._plain(self),)


class Size(_Printed, int):
    """An int that prints as the expression computing it from the input sizes."""
    _plain = int

    def __new__(cls, value, text):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __hash__(self):
        return int.__hash__(self)

    # -- arithmetic keeps the expression -------------------------------------------------
    def _op(self, other, op, fn, reflected=False):
        if not isinstance(other, int):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        if op == "*" and not _symbolic(a) and int(a) == 1:
            return b
        if op in "*//" and not _symbolic(b) and int(b) == 1:
            return a
        if op in "+-" and not _symbolic(b) and int(b) == 0:
            return a
        return Size(fn(int(a), int(b)), f"({_text(a)} {op} {_text(b)})")

    def __add__(self, o): return self._op(o, "+", lambda a, b: a + b)  # noqa: E704
    def __radd__(self, o): return self._op(o, "+", lambda a, b: a + b, True)  # noqa: E704
    def __sub__(self, o): return self._op(o, "-", lambda a, b: a - b)  # noqa: E704
    def __rsub__(self, o): return self._op(o, "-", lambda a, b: a - b, True)  # noqa: E704
    def __mul__(self, o): return self._op(o, "*", lambda a, b: a * b)  # noqa: E704
    def __rmul__(self, o): return self._op(o, "*", lambda a, b: a * b, True)  # noqa: E704
    def __floordiv__(self, o): return self._op(o, "//", lambda a, b: a // b)  # noqa: E704
    def __rfloordiv__(self, o): return self._op(o, "//", lambda a, b: a // b, True)  # noqa: E704

    def __neg__(self):
        return Size(-int(self), f"(-{self.text})")

    def __truediv__(self, o):
        return SizeRatio(int(self) / float(o), f"({self.text} / {_text(o)})")

    def __rtruediv__(self, o):
        return SizeRatio(float(o) / int(self), f"({_text(o)} / {self.text})")

    # -- comparisons are decisions: recorded -------------------------------------------
    def _cmp(self, other, op, fn):
        if not isinstance(other, (int, float)):
            return NotImplemented
        outcome = fn(int(self), other if not isinstance(other, Size) else int(other))
        if _log is not None and (not isinstance(other, Size) or other.text != self.text):
            _log.append((self.text, op, _text(other), outcome))
        return outcome

    def __eq__(self, o): return self._cmp(o, "==", lambda a, b: a == b)  # noqa: E704
    def __ne__(self, o): return self._cmp(o, "!=", lambda a, b: a != b)  # noqa: E704
    def __lt__(self, o): return self._cmp(o, "<", lambda a, b: a < b)  # noqa: E704
    def __le__(self, o): return self._cmp(o, "<=", lambda a, b: a <= b)  # noqa: E704
    def __gt__(self, o): return self._cmp(o, ">", lambda a, b: a > b)  # noqa: E704
    def __ge__(self, o): return self._cmp(o, ">=", lambda a, b: a >= b)  # noqa: E704


class SizeRatio(_Printed, float):
    """A float made of sizes (a mean's 1/|j|), printing as its expression."""
    _plain = float

    def __new__(cls, value, text):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __hash__(self):
        return float.__hash__(self)
