"""What the plan reads in cells of derived statements (second order: calculus/second.py) and in
the language's padded reads and scatters on the left, as methods _Builder takes on.

Derived statements: a target's shape given by the names cell.like lists (ΔW like W), the
identity δ (an eye matrix per size, sized by its first index, a left one), a Σ over an index
its body does not carry (the body times the size, the statement's or its source's).
Padded reads: a tensor read at shifted subscripts within its padding is its padded copy, read
p places further on. Scatters: H[tok[b], d] := / += rhs, one scatter op.
"""
import math
from dataclasses import replace

from ..language.errors import NotationValueError
from ..language.ir import Affine, Const, Sigma, Tensor, children, free, with_children
from .program import Op, Ref


class Derived:
    """The _Builder's methods for derived statements and for padded and scattering ones."""

    def target_sizes(self, st):
        """A derived formula's left side has the dims of the names cell.like gives it (ΔW
        those of W): its indices' sizes before anything on the right is read."""
        dims = self.like_shape(st.target)
        if dims is None:
            return {}
        if st.target_access is not None:  # a scatter: its plain subscripts
            return {a: n for a, n in zip(st.target_access, dims) if isinstance(a, str)}
        return dict(zip(st.indices, dims))

    def like_shape(self, target):
        like = self.cell.like.get(target)
        return None if like is None else [n for name in like for n in self.vars[self.env[name]].shape]

    def identities(self, st, known):
        """Each δ a derived formula reads (cell.identity) becomes an identity matrix as long as
        its first index, a left index: one var per size, made once."""
        name = self.cell.identity
        if name is None:
            return st

        def visit(e):
            if isinstance(e, Tensor) and e.name == name:
                n = known[(e.access or e.indices)[0]]
                key = f"{name}:{n}"
                if key not in self.env:
                    v = self.new((), (n, n))
                    self.ops.append(Op("eye", v.id, (), {"n": n}))
                    self.env[key] = v.id
                    if name in self.pad:  # read where a padded tensor is
                        self.pad[key] = self.pad[name]
                return replace(e, name=key)
            return with_children(e, tuple(visit(c) for c in children(e)))

        return replace(st, rhs=visit(st.rhs))

    def broadcast_sum(self, e):
        """Σ over indices its body does not carry (a derived formula's: the term was broadcast
        along them): the body times their sizes."""
        inner = free(e.body)
        rest = tuple(i for i in e.indices if i in inner)
        value = self.expr(Sigma(rest, e.body) if rest else e.body)
        count = math.prod(self.broadcast_size(i) for i in e.indices if i not in inner)
        if isinstance(value, Const):
            return Const(value.value * count)
        return self.emit("scale", value.labels, (value, Const(count)))

    def broadcast_size(self, index):
        """The size of an index only a Σ names: the statement's, or (a tangent's) that of the
        statement it is the tangent of (cell.source), where it may be written unprimed."""
        if index in self.sizes:
            return self.sizes[index]
        source = self.sized.get(self.cell.source.get(self.st.target), {})
        plain = index.rstrip("ʹ")
        if index in source or plain in source:
            return source.get(index, source.get(plain))
        raise NotationValueError(f"index '{index}' has no size in the derived statement "
                                 f"{self.st.text}")

    def source(self, e):
        """(the var a read reads, the read): a padded tensor read at a shifted subscript is
        its padded copy, read p places further on."""
        var = self.vars[self.env[e.name]]
        p = self.pad.get(e.name)
        dims = tuple(d for d, a in enumerate(e.access or ()) if isinstance(a, Affine) and a.terms)
        if not p or not dims:
            return var, e
        key = (var.id, dims, p)
        if key not in self.padded:
            shape = tuple(n + 2 * p if d in dims else n for d, n in enumerate(var.shape))
            v = self.new((), shape, var.needs, real=var.real)
            self.ops.append(Op("pad", v.id, (Ref(var.id, ()),), {"pads": tuple(p if d in dims else 0
                                                                           for d in range(len(shape)))}))
            self.padded[key] = v
        access = tuple(Affine(a.terms, a.offset + p) if d in dims else a for d, a in enumerate(e.access))
        return self.padded[key], replace(e, access=access)

    def scatter(self, st, rhs):
        """H[tok[b], d] := / += rhs: the right side added at the positions the index tensors
        give (repeated ones accumulate), into zeros or into the old value."""
        old = Ref(self.env[st.target], ()) if st.op == "+=" else None
        shape = self.scatter_shape(st, old)
        args, dims = [rhs], []
        for a in st.target_access:
            if isinstance(a, Tensor):
                dims.append(("gather", len(args), a.name))
                args.append(Ref(self.env[a.name], a.indices))
            else:
                dims.append(("plain", a))
        real = self.is_real("scatter", [rhs] + ([old] if old else []), {})
        if not real:
            args[0] = self.cast(rhs)
            old = old and self.cast(old)
        args += [old] if old else []
        needs = any(self.vars[a.var].needs for a in (args[0], old) if isinstance(a, Ref))
        v = self.new((), shape, needs, st.target, real)
        info = {"dims": tuple(dims), "labels": st.indices, "sizes": tuple(self.sizes[i] for i in st.indices),
                "of": st.target, "add": old is not None}
        self.ops.append(Op("scatter", v.id, tuple(args), info))
        self.env[st.target] = v.id
        self.defined.pop(st.target, None)

    def scatter_shape(self, st, old):
        """Plain subscripts have their index's size; a scattered dim the old value's (+=), the
        formula's (a derived cell) or sizes= gives under the index tensor's name (:=)."""
        like = self.like_shape(st.target)
        shape = []
        for d, a in enumerate(st.target_access):
            if isinstance(a, str):
                shape.append(self.sizes[a])
            elif old is not None or like is not None:
                shape.append((self.vars[old.var].shape if old is not None else like)[d])
            elif a.name in self.given:
                shape.append(self.given[a.name])
            else:
                raise self.error(a, f"{st.target}[...] := scatters by '{a.name}' into a dim no shape "
                                    f"fixes: give its size, sizes={{'{a.name}': n}} (--sizes "
                                    f"{a.name}=n in the magic), or add into an existing {st.target} (+=)")
        return tuple(shape)
