"""A cell planned once for a family of shapes (the shape-generic export).

Planning starts from example shapes whose every dimension is a compiler.sizes.Size named after
its place among the inputs' dimensions (_n0, _n1, ... in input order), so the generated source
computes with those names: `.reshape(_n0, 5)`, `_view(x, (_n0, ((_n1 - 3) // 2 + 1), 3), ...)`.
Every comparison of sizes planning made (two dims agree, a window fits, a range is the
narrower one) is kept as a guard; the source serves every shape that decides each guard the way
the example did, which is every batch size, sequence length or image size the plan does not
depend on. Where it does (the guards differ), another example is another family.
"""
import re
from dataclasses import dataclass

from ..compiler.sizes import Size


_NOT = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_NAME = re.compile(r"\b_n\d+\b")


@dataclass(frozen=True)
class Family:
    compiled: object   # runtime.compiled.Compiled: its source reads the size names
    names: tuple       # per input, the names of its dimensions
    guards: tuple      # (left, op, right, outcome) for each decision planning made by sizes
    example: tuple     # the input shapes it was planned from

    @property
    def parameters(self):
        return ", ".join(n for dims in self.names for n in dims)

    def conditions(self, inputs):
        """[(a Python expression in the size names, the same in the inputs' shapes)]: what a
        shape must satisfy to be served, each decision as the example decided it."""
        where = {name: f"{n}.shape[{d}]" for n, dims in zip(inputs, self.names)
                 for d, name in enumerate(dims)}
        out = {}
        for left, op, right, outcome in self.guards:
            op = op if outcome else _NOT[op]
            if op in ("==", "!=") and right < left:  # a == b and b == a: one condition
                left, right = right, left
            test = f"{left} {op} {right}"
            out.setdefault(test, _NAME.sub(lambda m: where[m.group()], test))
        return list(out.items())


def named_shapes(inputs, shapes):
    """(per input the names of its dims, the shapes as Sizes bearing those names)."""
    names, symbolic, k = [], [], 0
    for n in inputs:
        dims = tuple(f"_n{k + d}" for d in range(len(shapes[n])))
        k += len(dims)
        names.append(dims)
        symbolic.append(tuple(Size(int(s), name) for s, name in zip(shapes[n], dims)))
    return tuple(names), symbolic
