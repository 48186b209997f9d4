"""fn.check(): each derived gradient beside a finite-difference reference, with a ✓ or a ✗.

The cell runs on small random float64 inputs (complex128 where the cell is complex): every
index gets a size of 2, 3 or 4, so that a transposed or misplaced index shows. The gradient
checked is the one the compiled backward computes, through torch autograd, for a random
incoming gradient on every output; the reference is a central difference of the same
scalar, element by element. A formula may also be given as text (a statement reading the
inputs, the outputs and Δ<output>), to check a hand-written or suspected formula.
Nothing the caller sees changes: no namespace, not the global random state, not fn.code.

A large cell (many inputs, or big sizes from sizes=) is sampled: finite differences cost two
evaluations of the whole cell per entry, so they stop at MAX_ENTRIES entries in all, or when
SECONDS have gone by, whichever comes first. The entries are taken round-robin over the inputs,
in a random order per input (its first and last entries first), so each input gets its share,
and what was checked is a uniform sample of each; the report says how many of how many.
"""
import html
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

from ..language.bindings import distinct
from ..language.errors import NotationError
from ..language.ir import Call, Tensor, children, leaves
from ..language.printer import as_cell
from ..views.mathml import gradient_math

SIZES = (3, 2, 4)
EPS = 1e-6
ATOL, RTOL = 1e-5, 1e-4
MAX_ENTRIES = 512   # finite-difference entries in all, over every input checked
SECONDS = 2.0       # the time the finite differences may take (at least 2 entries per input)


@dataclass(frozen=True)
class GradientCheck:
    name: str                # the input
    formula: str             # the formula as shown
    error: float             # max |derived - finite difference|
    scale: float             # max |finite difference|
    ok: bool
    problem: Optional[str] = None   # why the formula could not be evaluated
    checked: int = 0         # entries compared with a finite difference
    entries: int = 0         # entries the gradient has
    math: Optional[str] = field(default=None, repr=False, compare=False)  # the formula as MathML

    @property
    def badge(self):
        return "✓" if self.ok else "✗"

    @property
    def sampled(self):
        return self.checked < self.entries


@dataclass(frozen=True)
class CheckReport:
    results: Tuple[GradientCheck, ...]
    shapes: dict
    dtype: torch.dtype
    seconds: float
    note: Optional[str] = None   # why something could not be checked
    limits: tuple = (MAX_ENTRIES, SECONDS)   # the max_entries and seconds that capped it
    given: bool = False  # at inputs the caller gave (not random ones)

    @property
    def ok(self):
        return bool(self.results) and all(r.ok for r in self.results) and self.note is None

    def __bool__(self):
        return self.ok

    @property
    def sampled(self):
        """Were the finite differences taken at a sample of the entries (a large cell)?"""
        return any(r.sampled for r in self.results if r.problem is None)

    def __getitem__(self, name):
        return next(r for r in self.results if r.name == name)

    def __str__(self):
        lines = [f"{r.badge} {r.formula}    ({_detail(r)})" for r in self.results]
        lines.append(self._summary())
        return "\n".join(lines)

    def _summary(self):
        if not self.results:
            return self.note
        sig = ", ".join(f"{n} {tuple(s)}" for n, s in self.shapes.items())
        kind = str(self.dtype)[6:]
        where = f"at the {kind} inputs given," if self.given else f"on random {kind} inputs"
        text = f"checked against central differences {where} {sig} in {self.seconds:.2f} s"
        if self.sampled:
            done = [r for r in self.results if r.problem is None]
            text += (f"; sampled: {sum(r.checked for r in done):,} of "
                     f"{sum(r.entries for r in done):,} entries, at random (max_entries="
                     f"{self.limits[0]}, seconds={self.limits[1]})")
        return text + (f"; {self.note}" if self.note else "")

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td style='color:{'#1a7f37' if r.ok else '#cf222e'};font-weight:bold'>{r.badge}</td>"
            f"<td style='text-align:left'>{r.math or '<code>' + html.escape(r.formula) + '</code>'}</td>"
            f"<td style='color:#57606a'>{html.escape(_detail(r))}</td></tr>" for r in self.results)
        return (f"<table class='tensormagic-check'>{rows}</table>"
                f"<div style='color:#57606a;font-size:90%'>{html.escape(self._summary())}</div>")


def _detail(r):
    if r.problem is not None:
        return r.problem
    sample = f" at {r.checked:,} of {r.entries:,} entries" if r.sampled else ""
    return f"max error {r.error:.1e}{sample}"


def check(fn, formulas=None, seed=0, shapes=None, max_entries=MAX_ENTRIES, seconds=SECONDS,
          values=None):
    """Check every gradient fn derives (or, for names in formulas, the given formula text), at
    `values` (one per input) or at small random inputs of these (or small) shapes.
    max_entries, seconds: the finite differences stop at that many entries in all, or after
    that long (each None: no such cap); at least 2 entries of each input are compared."""
    _check_caps(max_entries, seconds)
    start = time.perf_counter()
    last, threads = fn._last, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost time (restored below)
    try:
        generator = torch.Generator().manual_seed(seed)
        dtype = torch.complex128 if _is_complex(fn) else torch.float64
        if values is not None:
            args = _given(fn, values)
            shapes = {n: tuple(a.shape) for n, a in zip(fn.inputs, args)}
            dtype = next((a.dtype for a in args if a.is_complex()), torch.float64)
        else:
            shapes, args = _first_that_runs(fn, [shapes] if shapes else _candidates(fn), dtype,
                                            generator)
        results = _check(fn, args, formulas or {}, generator, (max_entries, seconds))
        note = None
    except (NotationError, ValueError, TypeError, RuntimeError) as err:
        results, note = (), f"not checked: {err}"
    finally:
        fn._last = last
        torch.set_num_threads(threads)
    return CheckReport(tuple(results), dict(shapes or {}), dtype, time.perf_counter() - start, note,
                       (max_entries, seconds), values is not None)


def _check_caps(max_entries, seconds):
    if max_entries is not None and (isinstance(max_entries, bool) or
                                    not isinstance(max_entries, int)):
        raise TypeError(f"max_entries must be an int or None, not {type(max_entries).__name__}")
    if seconds is not None and (isinstance(seconds, bool) or
                                not isinstance(seconds, (int, float))):
        raise TypeError(f"seconds must be a number or None, not {type(seconds).__name__}")
    if (max_entries is not None and max_entries < 1) or (seconds is not None and seconds <= 0):
        raise ValueError(f"max_entries and seconds must be positive (or None), not "
                         f"{max_entries!r} and {seconds!r}")


def small_shapes(fn):
    """A small shape per input. Indices that meet in one dimension of one tensor share a size;
    the others get 3, 2, 4, 3, ... in order of first appearance (or the size fn.sizes gives
    them); a shifted or fixed subscript asks for as many positions as it reaches; a gathered
    dimension gets GATHERED positions."""
    uses = _uses(fn)
    parent = {}

    def root(i):
        while parent.setdefault(i, i) != i:
            i = parent[i]
        return i

    first = {}
    for name, subs in uses:
        for dim, a in enumerate(subs):
            if isinstance(a, str):
                parent[root(a)] = root(first.setdefault((name, dim), a))
    given = dict(getattr(fn, "sizes", None) or {})
    for st in fn.cell.statements:  # a binding renamed by distinct takes the size given its name
        given.update({fresh: given[i] for fresh, i in distinct(st)[1].items() if i in given})
    sizes = {root(i): given[i] for i in given}
    for name, subs in uses:
        for i in _mentioned(subs):
            sizes.setdefault(root(i), SIZES[len(sizes) % len(SIZES)])
    dims = {}
    for name, subs in uses:
        for dim, a in enumerate(subs):
            need = sizes[root(a)] if isinstance(a, str) else _reach(a, lambda i: sizes[root(i)])
            plain, old = isinstance(a, str), dims.get((name, dim))
            if old is None or (plain and not old[0]) or (plain == old[0] and need > old[1]):
                dims[(name, dim)] = (plain, need)
    return {n: tuple(dims[(n, d)][1] for d in range(fn.cell.ndim.get(n, 0))) for n in fn.inputs}


GATHERED = 5


def _uses(fn):
    """(name, subscripts) of every tensor the cell reads or writes, gathers' index tensors too."""
    out = []
    for st in fn.cell.statements:
        st, _ = distinct(st)  # sibling reductions reusing a name: a size per binding
        for leaf in leaves(st.rhs):
            if isinstance(leaf, Tensor):
                access = getattr(leaf, "access", None)
                out.append((leaf.name, tuple(access if access is not None else leaf.indices)))
        out.append((st.target, tuple(st.target_access or st.indices)))
        out += [(a.name, a.indices) for a in st.target_access or () if isinstance(a, Tensor)]
    return out


def _mentioned(subs):
    for a in subs:
        if isinstance(a, str):
            yield a
        elif isinstance(a, Tensor):
            yield from a.indices
        else:
            yield from (i for _, i in a.terms)


def _reach(a, size):
    """How many positions a shifted (2*i+a+1), fixed (0, -1) or gathered subscript needs."""
    if isinstance(a, Tensor):
        return GATHERED
    if not a.terms:  # a fixed position: room for a few, so that x[b,0] and x[b,-1] differ
        return max(a.offset + 1, -a.offset, 3)
    return max(sum(c * (size(i) - 1) for c, i in a.terms) + a.offset + 1, 1)


def _index_bounds(fn, shapes):
    """For each index tensor (tok in W[tok[b], d]): the size of the dimension it gathers from."""
    bounds = {}
    for name, subs in _uses(fn):
        for dim, a in enumerate(subs):
            if isinstance(a, Tensor) and (name in shapes or a.name in fn.sizes):
                bound = shapes[name][dim] if name in shapes else fn.sizes[a.name]  # (a scatter's)
                bounds[a.name] = min(bounds.get(a.name, bound), bound)
    return bounds


def _candidates(fn):
    """Small shapes; the last call's when those do not fit the cell (shifted indices, ...)."""
    yield small_shapes(fn)
    if fn._last is not None:
        program = fn._last.program
        yield {n: tuple(program.vars[v].shape) for n, v in zip(fn.inputs, program.inputs)}


def _first_that_runs(fn, candidates, dtype, generator):
    error = None
    for shapes in candidates:
        try:
            return shapes, _inputs(fn, shapes, dtype, generator)
        except (NotationError, ValueError) as err:
            error = error or err
    raise error


def _given(fn, values):
    """The inputs a person passed, as the check computes: CPU tensors in float64 (complex128
    for complex values; a complex cell's real inputs stay real), index tensors as integers."""
    out = []
    for name, v in zip(fn.inputs, values):
        t = torch.as_tensor(v).detach().cpu()
        if name in fn.cell.index_inputs:
            out.append(t)
        else:
            out.append(t.to(torch.complex128 if t.is_complex() else torch.float64))
    return out


def _is_complex(fn):
    calls = [c for st in fn.cell.statements for c in _nodes(st.rhs) if isinstance(c, Call)]
    return fn._complex_const or any(c.func == "conj" for c in calls)


def _nodes(e):
    yield e
    for c in children(e):
        yield from _nodes(c)


def _inputs(fn, shapes, dtype, generator):
    """Normal random inputs; positive ones if those make some output non-finite (log, sqrt);
    integers in range for the index tensors of gathers."""
    bounds = _index_bounds(fn, shapes)

    def draw(n, positive):
        if n in bounds:
            return torch.randint(0, bounds[n], shapes[n], generator=generator)
        if positive:
            return torch.rand(shapes[n], dtype=torch.float64, generator=generator).to(dtype) + 0.5
        return torch.randn(shapes[n], dtype=dtype, generator=generator)

    args = [draw(n, False) for n in fn.inputs]
    with torch.no_grad():
        outs = fn.evaluate(*args)
    if all(torch.isfinite(o).all() for o in outs.values()):
        return args
    return [draw(n, True) for n in fn.inputs]


def _check(fn, args, formulas, generator, caps):
    wrt = [k for k, n in enumerate(fn.inputs) if n in fn.wrt]
    leaves_ = [a.clone().requires_grad_(k in wrt) for k, a in enumerate(args)]
    with torch.enable_grad():
        outs = fn.evaluate(*leaves_)
    cotangents = {n: torch.randn(o.shape, dtype=o.dtype, generator=generator) for n, o in outs.items()}
    try:
        derived = torch.autograd.grad(_pair(outs, cotangents), [leaves_[k] for k in wrt],
                                      allow_unused=True)
        failure = None
    except Exception as err:  # noqa: BLE001 - a failing backward is what a check reports
        derived, failure = [None] * len(wrt), f"the backward failed: {type(err).__name__}: {err}"
    results = []
    compared = [k for k in wrt if not failure or fn.inputs[k] in formulas]
    references = _finite_differences(fn, args, compared, cotangents, generator, caps)
    for k, grad in zip(wrt, derived):
        name = fn.inputs[k]
        if failure and name not in formulas:
            results.append(GradientCheck(name, fn.formulas.get(name, f"Δ{name} = 0"),
                                         float("inf"), 0.0, False, failure))
            continue
        grad = torch.zeros_like(args[k]) if grad is None else grad
        formula = fn.formulas.get(name, f"Δ{name} = 0")
        at, reference = references[k]
        if name in formulas:
            formula = formulas[name]
            try:
                grad = _evaluate_formula(formula, fn, args, outs, cotangents).expand(args[k].shape)
            except (NotationError, ValueError, RuntimeError) as err:
                problem = str(err).splitlines()[0]
                results.append(GradientCheck(name, formula, float("inf"), 0.0, False, problem))
                continue
        got = grad.detach().reshape(-1)[at]
        error = (got - reference).abs().max().item() if reference.numel() else 0.0
        scale = reference.abs().max().item() if reference.numel() else 0.0
        math = gradient_math(fn, name) if name not in formulas else None
        results.append(GradientCheck(name, formula, error, scale, error <= ATOL + RTOL * scale,
                                     math=math, checked=len(at), entries=args[k].numel()))
    return results


def _pair(outs, cotangents):
    """The real scalar Re Σ conj(v)·out whose gradient the backward computes."""
    total = 0
    for name, out in outs.items():
        total = total + (cotangents[name].conj() * out).real.sum()
    return total


def _finite_differences(fn, args, ks, cotangents, generator, caps):
    """{k: (entries, ∂/∂x + i ∂/∂y of the paired scalar there)} for each input k in ks, by
    central differences, one entry of each input in turn (round-robin), in a random order per
    input (first and last entries first), until every entry is done, or max_entries are, or
    the time is up (after 2 entries of each input)."""
    max_entries, seconds = caps
    start = time.perf_counter()
    orders = {k: _order(args[k].numel(), generator) for k in ks}
    done = {k: [] for k in ks}
    total = 0

    def over():
        return (max_entries is not None and total >= max_entries) or \
            (seconds is not None and time.perf_counter() - start > seconds)

    for r in range(max((len(o) for o in orders.values()), default=0)):
        for k in ks:
            if r >= 2 and over():
                break
            if r < len(orders[k]):
                e = orders[k][r]
                done[k].append((e, _difference(fn, args, k, e, cotangents)))
                total += 1
        else:
            continue
        break
    out = {}
    for k in ks:
        pairs = sorted(done[k])
        at = torch.tensor([e for e, _ in pairs], dtype=torch.long)
        values = torch.tensor([v for _, v in pairs], dtype=args[k].dtype)
        out[k] = (at, values)
    return out


def _order(n, generator):
    """Entries 0 .. n-1: the first and the last, then the rest in a random order."""
    if n <= 2:
        return list(range(n))
    return [0, n - 1] + (torch.randperm(n - 2, generator=generator) + 1).tolist()


def _difference(fn, args, k, e, cotangents):
    """∂/∂x + i ∂/∂y of the paired scalar in entry e of args[k], by central differences. A
    symmetric (Hermitian) input moves along a symmetric (Hermitian) direction: entry (i,j) and
    its mirror (j,i) by half the step each (the mirror by its conjugate), whose derivative is
    the gradient's symmetric part there."""
    x = args[k]
    flat = x.reshape(-1)
    mirror = (e % x.shape[0]) * x.shape[0] + e // x.shape[0] if fn.inputs[k] in fn.cell.symmetric else None
    steps = (EPS, EPS * 1j) if x.is_complex() else (EPS,)
    grad = 0
    with torch.no_grad():
        for step in steps:
            values = []
            for sign in (1, -1):
                moved = flat.clone()
                if mirror is None:
                    moved[e] += sign * step
                else:
                    moved[e] += sign * step / 2
                    moved[mirror] += sign * (step.conjugate() if isinstance(step, complex) else step) / 2
                trial = list(args)
                trial[k] = moved.reshape(x.shape)
                values.append(_pair(fn.evaluate(*trial), cotangents).item())
            grad += (values[0] - values[1]) / (2 * EPS) * (step / EPS)
    return grad


def _evaluate_formula(text, fn, args, outs, cotangents):
    """A formula given as a statement (ΔB[i,j] := ...), read over inputs, outputs and Δoutputs."""
    env = dict(zip(fn.inputs, args))
    env.update({n: o.detach() for n, o in outs.items()})
    env.update({f"Δ{n}": v for n, v in cotangents.items()})
    # compiled as fn was (its class: no import of the callable's module, which imports this one),
    # with the definitions a long cell's formula uses
    formula = type(fn)(as_cell(text))
    missing = [n for n in formula.inputs if n not in env]
    if missing:
        raise ValueError(f"the formula {text!r} reads {', '.join(missing)}, which is no input, "
                         f"output or Δoutput of {fn.name}")
    with torch.no_grad():
        return formula(**{n: env[n] for n in formula.inputs})


