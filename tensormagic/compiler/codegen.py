"""Program → Python source: a forward function and its reverse-mode backward.

The generator walks the program and asks each op's kind (kinds.KINDS) for its
source; what is here is shared by every kind: names, saved values, gradient
accumulation, broadcasting and summing labelled tensors.

Only the program's data is read: einsum equations are letters, names are
identifiers the parser has already validated, numbers are repr()s. Nothing a
user typed is pasted in.
"""
import re
from dataclasses import dataclass

from ..language.functions import FUNCTIONS
from ..language.ir import Add, Call, Const, Mul, Pow, Scalar, signed_sum
from ..language.numbers import function
from .kinds import KINDS
from .program import Ref
from .pysrc import eq, num


@dataclass(frozen=True)
class Source:
    text: str
    saved: tuple     # var ids the backward reads
    outputs: tuple   # var ids returned by forward (an alias resolved to the var it names)


def generate(program, comments=None, names=("forward", "backward")):
    """comments: {op index: text} shown above that op in the forward; names: the functions'.
    The functions a sliced product loops over (one slice's forward and backward) come first."""
    gen = _Gen(program, names)
    backward = gen.backward()
    forward = gen.forward(comments or {})
    outputs = tuple(gen.alias.get(v, v) for v in program.outputs)
    forward = release(forward, {gen.name(v) for v in (*outputs, *gen.saved)})
    backward = release(backward, set())
    inner = list(gen.inner.values())
    return Source("\n".join(inner + forward + [""] + backward) + "\n", tuple(gen.saved), outputs)


_LOCAL = re.compile(r"(?<![\w.])_[A-Za-z]*\d+[a-z]?\b")


def release(lines, keep):
    """`del` each local (a name the function assigns) right after the line that reads it
    last, so that its memory goes back while the function still runs; not those in keep
    (returned). The backward's saved values count: the runtime hands them over in a list
    the backward empties."""
    assigned, last = set(), {}
    for k, line in enumerate(lines):
        code = line.split("  #")[0].strip()
        if not code or code.startswith(("#", "def ")):
            continue
        target, sep, value = code.partition(" = ")
        if not sep or code.startswith("return"):
            target, value = "", code
        for name in _LOCAL.findall(value):
            last[name] = k
        for name in _LOCAL.findall(target):
            assigned.add(name)
            last.setdefault(name, k)
    after = {}
    for name, k in last.items():
        if name in assigned and name not in keep:
            after.setdefault(k, []).append(name)
    out = []
    for k, line in enumerate(lines):
        out.append(line)
        names = sorted(after.get(k, ()), key=lambda n: last[n])
        if names and not line.strip().startswith("return"):
            out.append(f"    del {', '.join(names)}")
    return out


class _Gen:
    def __init__(self, program, names=("forward", "backward")):
        self.p = program
        self.names = names
        self.inner = {}  # prefix -> source of a sliced product's inner functions
        self.saved = []
        self.conj = program.complex
        # A statement whose right side is already the result, in order, names no new value.
        self.alias = {}
        for op in program.ops:
            of = KINDS[op.kind].alias(program, op)
            if of is not None:
                self.alias[op.out] = self.alias.get(of, of)

    # -- names -------------------------------------------------------------------------
    def name(self, ref_or_id):
        if isinstance(ref_or_id, str):
            return ref_or_id  # a named temporary
        vid = ref_or_id.var if isinstance(ref_or_id, Ref) else ref_or_id
        vid = self.alias.get(vid, vid)
        v = self.p.vars[vid]
        return v.name if vid in self.p.inputs else f"_{vid}"

    def labels(self, vid):
        return self.p.vars[vid].labels

    def sizes(self, *refs):
        out = {}
        for r in refs:
            out.update(zip(r.labels, self.p.vars[r.var].shape))
        return out

    def use(self, ref_or_id):
        """A forward value read by the backward: it must be saved."""
        vid = ref_or_id.var if isinstance(ref_or_id, Ref) else ref_or_id
        vid = vid if isinstance(vid, str) else self.alias.get(vid, vid)
        if vid not in self.saved:
            self.saved.append(vid)
        return self.name(vid)

    def value(self, arg, use=False):
        if isinstance(arg, Const):
            return num(arg.value)
        return self.use(arg) if use else self.name(arg)

    def cj(self, text):
        return f"({text}).conj()" if self.conj else text

    def real(self, ref_or_id):
        """Is this value real (a real input, abs(z), ...)? Always so in a real program."""
        vid = ref_or_id.var if isinstance(ref_or_id, Ref) else ref_or_id
        return not self.conj or self.p.vars[vid].real

    def dtype(self, vid):
        """The dtype a var is created in: a real-valued one stays real in a complex program."""
        return "_rdtype" if self.conj and self.real(vid) else "_dtype"

    def define(self, op):
        """The names of the functions one slice of a sliced op runs (its inner program's
        forward and backward), generated once."""
        prefix = f"_slice{op.out}_"
        names = (prefix + "forward", prefix + "backward")
        if prefix not in self.inner:
            self.inner[prefix] = generate(op.info["inner"], names=names).text
        return names

    # -- forward -----------------------------------------------------------------------
    def forward(self, comments):
        params = ", ".join(self.name(i) for i in self.p.inputs)
        lines = [f"def {self.names[0]}({params}):"]
        for k, op in enumerate(self.p.ops):
            if k in comments:
                lines.append(f"    # {comments[k]}")
            if op.out not in self.alias:
                lines.extend(f"    {t} = {e}" for t, e in KINDS[op.kind].forward(self, op))
        outs = "".join(f"{self.name(v)}, " for v in self.p.outputs)
        saved = "".join(f"{self.name(v)}, " for v in self.saved)
        lines.append(f"    return ({outs}), ({saved})")
        return lines

    def call(self, func, x, p=None):
        if func == "pow":
            return f"{x} ** {num(p)}"
        return f"{FUNCTIONS[func].torch}({x})"

    def align(self, arg, labels, text=None):
        """arg (or text, a value laid out like arg) broadcast to `labels` (a subset in any
        order, missing ones as size-1 dims)."""
        if isinstance(arg, Const):
            return num(arg.value)
        return self.broadcast(self.name(arg) if text is None else text, arg.labels, labels)

    @staticmethod
    def broadcast(text, own, labels):
        """text (over labels `own`) laid out for broadcasting against `labels`."""
        if not own:
            return text
        order = [i for i in labels if i in own]
        if list(own) != order:
            text += f".permute({', '.join(str(own.index(i)) for i in order)})"
        index = [":" if i in own else "None" for i in labels]
        while index and index[0] == "None":
            index.pop(0)
        if "None" in index:
            text += f"[{', '.join(index)}]"
        return text

    def align_used(self, arg, labels):
        if isinstance(arg, Ref):
            self.use(arg)
        return self.align(arg, labels)

    # -- backward ----------------------------------------------------------------------
    def backward(self):
        p = self.p
        self.contribs = {v: [] for v in range(len(p.vars))}
        lines = self.blines = []
        for k, vid in enumerate(p.outputs):
            if p.vars[vid].needs:
                self.contribs[vid].append(f"_grads[{k}]")
        # an input's gradient is summed up as soon as the last op reading it is through, so
        # that what it reads can be released early
        first_read = {}
        for k, op in enumerate(p.ops):
            for arg in op.args:
                if isinstance(arg, Ref):
                    first_read.setdefault(arg.var, k)
        done = set()

        def finish(k):
            for vid in p.inputs:
                if vid not in done and p.vars[vid].needs and self.contribs[vid] \
                        and first_read.get(vid, -1) >= k:
                    done.add(vid)
                    lines.append(f"    _g{vid} = {' + '.join(self.contribs[vid])}  # Δ{p.vars[vid].name}")
                    if vid in p.symmetric:  # its symmetric (Hermitian) part: ½(G + Gᴴ)
                        t = f"_g{vid}.mT.conj()" if not self.real(vid) else f"_g{vid}.mT"
                        lines.append(f"    _g{vid} = 0.5 * (_g{vid} + {t})")

        for k in reversed(range(len(p.ops))):
            op = p.ops[k]
            kind = KINDS[op.kind]
            if not p.vars[op.out].needs or kind.leaf or not self.contribs[op.out]:
                continue
            parts = self.contribs[op.out]
            if len(parts) == 1 and re.fullmatch(r"_g\d+|_d\d+|_grads\[\d+\]", parts[0]):
                g = parts[0]  # the gradient passes through unchanged: no new name
            else:
                g = f"_g{op.out}"
                lines.append(f"    {g} = {' + '.join(parts)}")
            kind.backward(self, op, g)
            finish(k)
        finish(-1)
        body = lines
        grads = []
        for vid in p.inputs:
            v = p.vars[vid]
            if not v.needs:
                grads.append("None")
            elif self.contribs[vid]:
                grads.append(f"_g{vid}")
            else:
                grads.append(f"torch.zeros_like({self.use(vid)})")
        saved = "".join(f"{self.name(v)}, " for v in self.saved)
        # the list is emptied: each saved value lives only until its last reader below
        head = [f"def {self.names[1]}(_saved, _grads):", f"    ({saved}) = _saved", "    _saved.clear()"]
        return head + body + [f"    return ({''.join(g + ', ' for g in grads)})"]

    def line(self, text):
        """A statement of the backward, before the gradients that follow."""
        self.blines.append(f"    {text}")

    def give(self, arg, text):
        """Add text to arg's gradient."""
        if isinstance(arg, Ref) and self.p.vars[arg.var].needs:
            self.contribs[arg.var].append(text)

    def wants(self, arg):
        return isinstance(arg, Ref) and self.p.vars[arg.var].needs

    def elementwise(self, e, env):
        """Source for a derivative rule written in the placeholders X and Y."""
        if isinstance(e, Const):
            return num(e.value)
        if isinstance(e, Scalar):
            return self.use(env[e.name])
        if isinstance(e, Add):
            return f"({signed_sum([self.elementwise(t, env) for t in e.terms], e.signs)})"
        if isinstance(e, Mul):
            return "(" + " * ".join(self.elementwise(f, env) for f in e.factors) + ")"
        if isinstance(e, Pow):
            return f"{self.elementwise(e.base, env)} ** {self.elementwise(e.exponent, env)}"
        if isinstance(e, Call) and _constant(e) is not None:  # a constant factor: 1/sqrt(pi)
            return num(_constant(e))
        if isinstance(e, Call):
            return self.call(e.func, self.elementwise(e.arg, env))
        raise TypeError(e)

    def reduce(self, g, have, want):
        """g over labels `have`, summed down to `want` (a subset) in want's order."""
        have, want = tuple(have), tuple(want)
        if have == want:
            return g
        if set(have) == set(want):
            return f"{g}.permute({', '.join(str(have.index(i)) for i in want)})"
        if [i for i in have if i in want] == list(want):  # a plain sum keeps the order
            dims = [str(k) for k, i in enumerate(have) if i not in want]
            if not want:
                return f"{g}.sum()"
            return f"{g}.sum({dims[0]})" if len(dims) == 1 else f"{g}.sum(({', '.join(dims)}))"
        return f"torch.einsum('{eq([have], want)}', {g})"

    def spread(self, operands, target):
        """The einsum of `operands` laid out as target's var: diagonals filled through δ,
        indices found in no operand broadcast (the gradient of a sum)."""
        var = self.p.vars[target.var]
        labels, seen, eyes = [], set(), []
        for label in target.labels:
            if label in seen:
                fresh = f"{label}#{len(labels)}"  # no index name holds '#': no clash
                eyes.append((label, fresh))
                labels.append(fresh)
            else:
                seen.add(label)
                labels.append(label)
        covered = {i for _, ls in operands for i in ls} | {i for pair in eyes for i in pair}
        computed = [i for i in labels if i in covered]
        args = list(operands)
        for first, fresh in eyes:
            n = var.shape[target.labels.index(first)]
            args.append((f"torch.eye({n}, dtype={self.dtype(target.var)}, device=_device)", (first, fresh)))
        if len(args) == 1 and tuple(args[0][1]) == tuple(computed):
            text = args[0][0]
        elif len(args) == 2 and not args[0][1] and tuple(args[1][1]) == tuple(computed) \
                and len(eyes) == 1 and len(operands) == 1:
            # a scalar times δ, the gradient of a trace: the scalar on a diagonal, no eye(n)
            n = var.shape[target.labels.index(eyes[0][0])]
            text = f"torch.diag_embed({args[0][0]}.expand({n}))"
            if self.conj:  # the dtype eye(n) * g would have
                text += f".to(torch.promote_types({self.dtype(target.var)}, {args[0][0]}.dtype))"
        else:
            text = f"torch.einsum('{eq([ls for _, ls in args], computed)}', " \
                   f"{', '.join(t for t, _ in args)})"
        if len(computed) < len(labels):
            if " " in text:  # the indexing applies to the whole product
                text = f"({text})"
            index = [":" if i in covered else "None" for i in labels]
            text += f"[{', '.join(index)}].expand({', '.join(map(str, var.shape))})"
        return text


def _constant(e):
    """The value of a function of numbers in a derivative rule (recip(sqrt(pi))), else None."""
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Call):
        inner = _constant(e.arg)
        return None if inner is None else function(e.func, inner)
    return None


# -- forward mode ------------------------------------------------------------------------
def generate_jvp(program, active):
    """Source of `jvp(inputs..., tangents...)`: the forward again, each op followed by its
    tangent (kinds.KINDS[kind].tangent), returning the outputs' tangents. active: per input,
    whether it carries a tangent (only those are parameters)."""
    return _Tangents(program, active).source()


class _Tangents(_Gen):
    def __init__(self, program, active):
        super().__init__(program)
        self.tangents = {}
        self.params = []
        for vid, on in zip(program.inputs, active):
            if on:
                self.tangents[vid] = f"_d{vid}"
                self.params.append(f"_d{vid}")

    def use(self, ref_or_id):
        return self.name(ref_or_id)  # the forward runs here: nothing needs saving

    def define(self, op):
        """The inner functions of a sliced op: the forward's source defines them (the jvp
        runs in its namespace)."""
        prefix = f"_slice{op.out}_"
        return prefix + "forward", prefix + "backward"

    def tangent(self, arg):
        """The source name of arg's tangent, None where it is zero."""
        if not isinstance(arg, Ref):
            return None
        return self.tangents.get(self.alias.get(arg.var, arg.var))

    def source(self):
        params = ", ".join([self.name(i) for i in self.p.inputs] + self.params)
        lines = [f"def jvp({params}):"]
        for op in self.p.ops:
            if op.out in self.alias:
                continue
            kind = KINDS[op.kind]
            lines.extend(f"    {t} = {e}" for t, e in kind.forward(self, op))
            text = None if kind.leaf else kind.tangent(self, op)
            if text is not None:
                self.tangents[op.out] = f"_d{op.out}"
                lines.append(f"    _d{op.out} = {text}")
        outs = []
        for vid in self.p.outputs:
            t = self.tangents.get(self.alias.get(vid, vid))
            outs.append(t or f"torch.zeros_like({self.name(vid)})")
        lines.append(f"    return ({''.join(t + ', ' for t in outs)})")
        return "\n".join(lines) + "\n"
