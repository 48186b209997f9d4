"""A program → generated source, run once: the compiled forward, backward and jvp of one
(shapes, dtype, device, gradients wanted) signature, and what the autograd glue reads."""
from dataclasses import dataclass, field

from ..compiler import codegen, plan, slicing
from ..language.printer import statement_text
from . import execute

DEFAULT_SIZE = 4


@dataclass
class Compiled:
    """One (shapes, dtype, device, gradients wanted) signature, planned and compiled."""
    forward: object
    backward: object
    source: str
    program: object
    saved: tuple
    wanted: tuple          # per input: is its gradient computed
    low_memory: bool = False
    slots: tuple = ()      # per saved value: ("arg" | "out" | "extra", index)
    n_out: int = 1
    wrt: tuple = ()        # per input: may it carry a tangent (is it in wrt)
    namespace: dict = field(default_factory=dict)
    jvps: dict = field(default_factory=dict)   # active inputs → generated jvp
    extras: tuple = ()     # positions, among the saved values, of the intermediates
    saved_outs: tuple = ()  # the outputs the backward reads
    pick: tuple = ()       # per saved value, its place in (*inputs, *saved_outs, *intermediates)

    def __post_init__(self):
        self.any_wanted = any(self.wanted)
        self.extras = tuple(j for j, (kind, _) in enumerate(self.slots) if kind == "extra")
        self.saved_outs = tuple(sorted({k for kind, k in self.slots if kind == "out"}))
        n, m = len(self.wanted), len(self.saved_outs)
        self.pick = tuple(k if kind == "arg" else n + self.saved_outs.index(k) if kind == "out"
                          else n + m + k for kind, k in self.slots)

    def jvp(self, active):
        """The generated jvp for inputs carrying tangents (`active`, a mask), compiled once."""
        if active not in self.jvps:
            text = codegen.generate_jvp(self.program, active)
            self.jvps[active] = execute.run(text, "jvp", self.namespace)["jvp"]
        return self.jvps[active]


def compile_program(program, label, low_memory, dtype, device, comments=None, wrt=None):
    source = codegen.generate(program, comments)
    namespace = execute.namespace(dtype, device)
    execute.run(source.text, label, namespace)
    wanted = tuple(program.vars[v].needs for v in program.inputs)
    wrt = tuple(wrt) if wrt is not None else (True,) * len(program.inputs)
    return Compiled(namespace["forward"], namespace["backward"], source.text, program,
                    source.saved, wanted, low_memory, _slots(program, source, low_memory),
                    len(program.outputs), wrt, namespace)


def _slots(program, source, low_memory):
    """Where each value the backward reads comes from: an input, an output, or an
    intermediate the forward also returns (so that it goes through save_for_backward)."""
    if low_memory:
        return ()
    slots, extras = [], 0
    for vid in source.saved:
        if vid in program.inputs:
            slots.append(("arg", program.inputs.index(vid)))
        elif vid in source.outputs:
            slots.append(("out", source.outputs.index(vid)))
        else:
            slots.append(("extra", extras))
            extras += 1
    return tuple(slots)


def build(cell, shapes, wants, dtype, device, label, low_memory, sizes=None, complex_inputs=None,
          wrt=None, every=True, memory_limit=None, ranks=1):
    """complex_inputs: per input, is it complex (default: all are when dtype is); wrt: per
    input, may it carry a tangent (None: all); every: every output is returned (else only the
    last statement's); memory_limit: bytes one slice of a product may hold (None: no limit),
    counted in elements of dtype; ranks: spread every product over this many ranks (1: none)."""
    budget = None if memory_limit is None else slicing.Budget(memory_limit, dtype.itemsize)
    program = plan.build(cell, shapes, wants, sizes, complex=dtype.is_complex,
                         complex_inputs=complex_inputs, every=every, budget=budget, ranks=ranks)
    comments = {start: statement_text(st) for start, st in zip(program.starts, cell.statements)
                if start is not None}
    return compile_program(program, label, low_memory, dtype, device, comments, wrt)
