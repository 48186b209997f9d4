"""Second order, derived symbolically: forward mode over the derived reverse mode, on the IR.

The gradient cell holds the cell's statements (each name assigned once; those the last
output L does not read left out), then each derived gradient formula as a statement, with
ΔL = 1. Its tangent in a direction vW (tangent.py, on that cell) is the Hessian-vector
product, HvW = d(ΔW). The Hessian is that tangent in the direction of every entry of W at
once: dW[a,b] = δ[a,iʹ] δ[b,oʹ], carried by every tangent as extra left indices (iʹ,oʹ), and
each δ whose other index a Σ runs over is summed away (simplify.py), so that for
L := x[i]*A[i,j]*x[j] the Hessian reads ∂²L/∂x[i]∂x[a] = A[i,a] + A[a,i].

Formulas made to be shown take the cell's own names and read like the gradients; made to be
compiled (sizes given: the call's shapes), a broadcast sum and mean's |j| are numbers, the
partials are conjugated for complex values (conj=True), and sibling reductions that reuse a
name have one name per binding.
"""
from dataclasses import dataclass, replace

from ..language.bindings import distinct
from ..language.cell import Cell
from ..language.ir import Add, Const, Scalar, Sigma, Statement, Tensor, children, unique, with_children
from ..language.printer import formula_text, text
from ..language.ranges import index_sizes
from ..language.sums import place_sums
from . import simplify
from .derive import DELTA, PRIME, Formula, _flat, _outer_indices, _target_dims, _without_sums, derive
from .tangent import tangents

HVP, DIRECTION = "Hv", "v"


@dataclass(frozen=True)
class Gradients:
    """The gradient cell: its Cell (outputs: the gradients of `wrt`, in order), the name of
    the loss, the gradient statements as formulas, and the names reads of tangents take."""
    cell: Cell
    loss: str
    formulas: tuple
    grads: dict        # input name → the name of its gradient in the cell


def gradient_cell(cell, wrt, conj=False, shapes=None, given=None):
    """The gradient cell of `cell`'s last output with respect to `wrt`. shapes (one per input)
    and given (sizes=): made to be compiled at those shapes (see the module docstring)."""
    statements, loss, scattered = _single_assignment(cell, compiled=shapes is not None)
    sizes = None if shapes is None else \
        _statement_sizes(statements, cell.inputs, shapes, given, cell.pad, scattered)
    forward = _cell(cell, statements, (loss,))
    formulas = derive(forward, wrt, conj=conj, sizes=sizes)
    names = set(cell.inputs) | {st.target for st in statements}
    upstream = _prefix(names, "Δ") + loss
    identity = _identity(names)
    derived, like = [], dict(scattered)
    for f in formulas:
        rhs = _flat(_one(f.rhs, upstream))
        derived.append(Formula(f.name, f.target, rhs, f.of_input))
        like[f.target.name] = (f.name,)
    grads = {f.name: f.target.name for f in derived if f.of_input}
    gradient_statements = [_statement(f.target, f.rhs) for f in derived]
    out = _cell(cell, statements + gradient_statements, tuple(grads[n] for n in wrt), like, identity)
    return Gradients(out, loss, tuple(derived), grads)


def hvp_formulas(cell, wrt):
    """The Hessian-vector product as it is shown: (the tangents its formulas read, in cell
    order; {input: HvW[...] = ...}). The direction of W is vW."""
    g = gradient_cell(cell, wrt)
    names = _names(g.cell)
    prefix = _prefix(names, "d")
    found = tangents(g.cell, wrt, prefix)
    renames = {prefix + n: _free_name(DIRECTION + n, names) for n in wrt}
    renames.update({prefix + g.grads[n]: _free_name(HVP + n, names) for n in wrt})
    renames.update({f.target.name: "d" + f.target.name[len(prefix):] for f in found
                    if f.target.name not in renames})
    shown = [_renamed_formula(f, renames) for f in found]
    results = {}
    for n in wrt:  # (a gradient that no direction moves: its product is 0)
        indices = next(f.target.indices for f in g.formulas if f.of_input and f.name == n)
        name = renames[prefix + g.grads[n]]
        zero = Formula(n, Tensor(name, indices), Const(0), True)
        results[n] = next((f for f in shown if f.target.name == name), zero)
    chain = _needed(shown, list(results.values()))
    return tuple(_gradient_chain(g, chain + list(results.values())) + chain), results


@dataclass(frozen=True)
class Block:
    """One block of the Hessian, ∂²L/∂a[i…]∂b[j…] = rhs, and the statements it reads."""
    loss: str
    a: Tensor
    b: Tensor
    rhs: object
    chain: tuple = ()

    def text(self):
        lhs = f"∂²{self.loss}/∂{text(self.a)}∂{text(self.b)}"
        target = Tensor("H", self.a.indices + self.b.indices)
        rhs = shown_text(Formula("H", target, self.rhs)).split(" = ", 1)[1]
        return "\n".join([shown_text(f) for f in self.chain] + [f"{lhs} = {rhs}"])


def shown_text(f):
    """A derived formula as text, a statement of the language: a gradient as the gradients are
    shown; a tangent in Einstein's style where the summation rule reads it back with the same
    sums, else with each sum written out as sum[j](...)."""
    if f.target.name.startswith("Δ"):
        return formula_text(f)
    same = place_sums(_without_sums(f.rhs), f.target.indices) == f.rhs
    return f"{text(f.target)} {f.op} {text(f.rhs, sums=False if same else 'reduce')}"


@dataclass(frozen=True)
class Hessian:
    """The Hessian cell (outputs: one block per (a, b) of `keys`) and the blocks as shown."""
    cell: Cell
    keys: tuple
    blocks: dict


def hessian(cell, wrt, shapes=None, given=None):
    """Every block ∂²L/∂a∂b for a, b in wrt: a cell computing them (at these shapes, when
    given) and the blocks as formulas (shown: made without shapes)."""
    g = gradient_cell(cell, wrt, shapes=shapes, given=given)
    names = _names(g.cell)
    base = _prefix(names, "d")
    statements, like, keys, blocks, outputs, sources, pad = [], dict(g.cell.like), [], {}, [], {}, {}
    for k, b in enumerate(wrt):
        prefix = base if len(wrt) == 1 else f"{base}{k}_"  # one run of names per direction
        batched, extra = _batched_tangents(g, b, prefix, names)
        for f in batched:
            source = f.target.name[len(prefix):]
            like[f.target.name] = g.cell.like.get(source, (source,)) + (b,)
            sources[f.target.name] = source
            statements.append(_statement(f.target, f.rhs))
        pad.update({prefix + n: p for n, p in cell.pad.items()})  # dx read where x is
        for a in wrt:
            f = _tangent_of(batched, prefix + g.grads[a], g, a, extra)
            if f not in batched:  # ∂L/∂a does not depend on b: a block of zeros
                like[f.target.name] = (a, b)
                statements.append(_statement(f.target, f.rhs))
            keys.append((a, b))
            outputs.append(f.target.name)
            blocks[(a, b)] = _block(g, a, b, f, batched, extra, prefix)
    out = _cell(cell, list(g.cell.statements) + statements, tuple(outputs), like, g.cell.identity, pad)
    return Hessian(replace(out, source=sources), tuple(keys), blocks)


# -- the forward statements, once each -----------------------------------------------------
def _single_assignment(cell, compiled=False):
    """The statements the last output reads, each name assigned once: an earlier value of a
    name (and a new value of an input) takes a fresh name, `+=` adds the old value as a term
    (a scatter's, H[tok[b],d] += ..., scatters into zeros first), `=` becomes `:=`.
    compiled: sibling reductions that reuse a name get one per binding. Returns the
    statements, the loss's name, and the shapes the scatters take (like)."""
    taken = _names(cell)
    last = {st.target: k for k, st in enumerate(cell.statements)}
    current = {n: n for n in cell.inputs}
    out, like = [], {}

    def fresh(name):
        name = _free_name(name + PRIME, taken)
        taken.add(name)
        return name

    for k, st in enumerate(cell.statements):
        if compiled:
            st = distinct(st)[0]
        rhs = _reads_renamed(st.rhs, current)
        name = fresh(st.target) if last[st.target] != k or st.target in cell.inputs else st.target
        if st.op == "+=" and st.target_access is not None:
            old, scattered = current[st.target], fresh(st.target)
            out.append(replace(st, target=scattered, op=":=", rhs=rhs))
            like[scattered] = (old,)
            dims = _target_dims(st)
            rhs = Add((Tensor(old, dims), Tensor(scattered, dims)), (1, 1))
            st = Statement(st.target, dims, ":=", rhs, st.text, st.lineno)
        elif st.op == "+=":
            old = Tensor(current[st.target], st.indices)
            terms, signs = (rhs.terms, rhs.signs) if isinstance(rhs, Add) else ((rhs,), (1,))
            rhs = Add((old,) + terms, (1,) + signs)
        current[st.target] = name
        out.append(replace(st, target=name, op=":=", rhs=rhs))
    return _read_by_last(out), current[cell.statements[-1].target], like


def _read_by_last(statements):
    need, kept = {statements[-1].target}, []
    for st in reversed(statements):
        if st.target in need:
            kept.append(st)
            need |= {leaf.name for leaf in _leaves(st.rhs)}
    return kept[::-1]


def _leaves(e):
    if isinstance(e, (Tensor, Scalar)):
        return [e] + list(e.gathers() if isinstance(e, Tensor) else ())
    return [leaf for c in children(e) for leaf in _leaves(c)]


def _reads_renamed(e, current):
    if isinstance(e, (Tensor, Scalar)) and e.name in current:
        return replace(e, name=current[e.name])
    return with_children(e, tuple(_reads_renamed(c, current) for c in children(e)))


class _Shape:
    def __init__(self, shape):
        self.shape = tuple(shape)


def _statement_sizes(statements, inputs, shapes, given, pad, like):
    """{index: size} of each statement at these input shapes (as the plan decides them);
    like: {a scatter's target: the name whose shape it has}."""
    env = {n: n for n in inputs}
    vars = {n: _Shape(s) for n, s in zip(inputs, shapes)}
    out = []
    for st in statements:
        sizes = index_sizes(st, env, vars, given, pad=pad)
        out.append(sizes)
        env[st.target] = st.target
        if st.target_access is None:
            vars[st.target] = _Shape(sizes[i] for i in st.indices)
        else:  # a scatter: its scattered dims as the tensor it adds into, or sizes= gives
            shape = vars[like[st.target][0]].shape if st.target in like else None
            vars[st.target] = _Shape(sizes[a] if isinstance(a, str) else shape[d] if shape else given[a.name]
                                     for d, a in enumerate(st.target_access))
    return out


# -- cells and statements ----------------------------------------------------------------
def _cell(cell, statements, outputs, like=None, identity=None, pad=None):
    """A cell of derived statements. A padded tensor's δ is read where it is (padded by the
    most any tensor is), as are the tangents `pad` names."""
    ndim = dict(cell.ndim)
    ndim.update({st.target: len(st.indices) for st in statements})
    padded = {**cell.pad, **(pad or {})}
    if padded and identity:
        padded[identity] = max(padded.values())
    return Cell(tuple(statements), cell.inputs, tuple(outputs), ndim, cell.shape_only,
                cell.index_inputs, dict(like or {}), identity, pad=padded)


def _statement(target, rhs):
    """A derived formula as a statement: each term summed, as the formula reads, over the
    indices it carries that its left side does not (Einstein's rule, term by term)."""
    terms, signs = (rhs.terms, rhs.signs) if isinstance(rhs, Add) else ((rhs,), (1,))
    placed = []
    for t in terms:
        explicit, body = (t.indices, t.body) if isinstance(t, Sigma) else ((), t)
        outer = tuple(i for i in unique(_outer_indices(body)) if i not in target.indices
                      and i not in explicit)
        placed.append(Sigma(explicit + outer, body) if explicit + outer else body)
    rhs = placed[0] if len(placed) == 1 and signs[0] > 0 else Add(tuple(placed), signs)
    st = Statement(target.name, target.indices, ":=", rhs, "", None, target_access=target.access)
    return replace(st, text=f"{text(target)} := {text(rhs, sums=True)}")


def _one(e, name):
    """e with the loss's gradient ΔL (a scalar) set to 1."""
    if isinstance(e, Tensor) and e.name == name and not e.indices:
        return Const(1)
    return with_children(e, tuple(_one(c, name) for c in children(e)))


def _names(cell):
    found = set(cell.inputs) | set(cell.outputs)
    for st in cell.statements:
        found.add(st.target)
        found |= {leaf.name for leaf in _leaves(st.rhs)}
    return found


def _prefix(names, start):
    """The shortest run of `start` that no name begins with (derive's rule for Δ)."""
    prefix = start
    while any(n.startswith(prefix) for n in names):
        prefix += start
    return prefix


def _identity(names):
    """The name derive gives the identity: δ, or δʹ… where a tensor of the cell is named δ."""
    if DELTA not in names:
        return DELTA
    name = DELTA + PRIME
    while name in names:
        name += PRIME
    return name


def _free_name(name, taken):
    while name in taken:
        name += PRIME
    return name


# -- the tangents, as shown ----------------------------------------------------------------
def _renamed_formula(f, renames):
    def visit(e):
        if isinstance(e, (Tensor, Scalar)) and e.name in renames:
            e = replace(e, name=renames[e.name])
        return with_children(e, tuple(visit(c) for c in children(e)))
    return replace(f, name=renames.get(f.target.name, f.name),
                   target=replace(f.target, name=renames.get(f.target.name, f.target.name)),
                   rhs=visit(f.rhs))


def _needed(formulas, results):
    """The formulas (in order) that `results` read, directly or through others."""
    by_name = {f.target.name: f for f in formulas}
    need, todo = set(), [r.rhs for r in results]
    while todo:
        for leaf in _leaves(todo.pop()):
            if leaf.name in by_name and leaf.name not in need:
                need.add(leaf.name)
                todo.append(by_name[leaf.name].rhs)
    result_names = {r.target.name for r in results}
    return [f for f in formulas if f.target.name in need and f.target.name not in result_names]


def _gradient_chain(g, shown):
    """The gradient formulas that the shown tangents read (ΔH, with ΔL = 1; an input's ΔW
    where a tangent reads it as a value), in the order reverse mode computes them."""
    return _needed(list(g.formulas), shown)


# -- the Hessian: tangents in the direction of every entry at once -----------------------
def _batched_tangents(g, b, prefix, names):
    """The tangents of the gradient cell in the direction of each entry of b: every tangent
    carries b's entry as extra left indices, and its reads of b's tangent are δs."""
    found = tangents(g.cell, [b], prefix)
    dims = _first_read(g, b)
    used = set(names) | {i for st in g.cell.statements for i in _all_indices(st)} | \
        {i for f in found for i in _all_indices(Statement(f.target.name, f.target.indices, ":=", f.rhs, "", 0))}
    extra = simplify.fresh_indices(dims, used)
    direction, batched = prefix + b, {f.target.name for f in found}
    out = []
    for f in found:
        rhs = simplify.batched(f.rhs, direction, batched, extra, g.cell.identity)
        target = Tensor(f.target.name, f.target.indices + extra) if f.target.access is None else \
            Tensor(f.target.name, unique(f.target.indices + extra), None, f.target.access + extra)
        out.append(replace(f, target=target, rhs=rhs))
    return out, extra


def _tangent_of(batched, name, g, a, extra):
    """The batched tangent named `name`, or a formula of zeros where there is none."""
    found = next((t for t in batched if t.target.name == name), None)
    if found is not None:
        return found
    indices = next(f.target.indices for f in g.formulas if f.of_input and f.name == a)
    return Formula(a, Tensor(name, indices + extra), Const(0), True)


def _first_read(g, b):
    """The index names b's gradient is written with (ΔW[i,o]: i, o)."""
    return next(f.target.indices for f in g.formulas if f.of_input and f.name == b)


def _all_indices(st):
    found = set(st.indices)
    todo = [st.rhs]
    while todo:
        e = todo.pop()
        if isinstance(e, Tensor):
            found |= set(e.occurrences())
            todo.extend(e.gathers())
        found |= set(getattr(e, "indices", ())) if not isinstance(e, Tensor) else set()
        todo.extend(children(e))
    return found


def _block(g, a, b, f, batched, extra, prefix):
    """Block (a, b) as shown: ∂²L/∂a∂b = rhs, and the tangents and gradients it reads."""
    renames = {t.target.name: "d" + t.target.name[len(prefix):] for t in list(batched) + [f]}
    shown = [_renamed_formula(t, renames) for t in batched]
    final = _renamed_formula(f, renames)
    chain = _needed(shown, [final])
    ga = next(x for x in g.formulas if x.of_input and x.name == a)
    rows = _gradient_chain(g, chain + [final]) + chain
    return Block(g.loss, Tensor(a, ga.target.indices), Tensor(b, extra), final.rhs, tuple(rows))
