"""Statements → tensor-network diagrams, drawn as SVG by this package alone.

One node per tensor factor (its shape tells its rank), one labelled edge per index two
factors share, an open leg per left-hand index, a small dot for an index shared by three or
more factors (or by two and left open), a self-loop for a trace, and a box around what a
function, a power or a sum encloses. An index summed where it occurs only once ends in a
small ring (a sum is a contraction with a vector of ones). Each statement of a cell is one
panel; an output read by a later statement has the same colour there.

Every element carries a class and data attributes (data-name, data-index, data-rank) so a
test can read the structure back from the SVG.
"""
import math
from dataclasses import dataclass, field
from html import escape as _escape

from ..language.ir import Add, Call, Const, Mul, Pow, Scalar, Sigma, Tensor, children, free, leaves
from ..language.printer import formula_text, statement_text, text
from . import graphlayout

NODE = 44                # a tensor node's width
GAP = 70                 # between neighbouring nodes, beyond their size
LEG = 34
PAD = 16                 # inside a box
LABEL_H = 16             # a box's label strip
INPUT_FILL = "#dbe9f6"
GRADIENT_FILL = "#f6c6c6"
PALETTE = ("#f6c85f", "#9dd9a5", "#c9b6e4", "#f4a582", "#8fd3e8", "#e8a2c8")
DIRECTIONS = [(0, 1), (0, -1), (1, 0), (-1, 0), (0.7071, 0.7071), (-0.7071, 0.7071),
              (0.7071, -0.7071), (-0.7071, -0.7071)]


@dataclass
class Port:
    x: float
    y: float
    dx: float     # outward direction
    dy: float


@dataclass
class Drawing:
    """A drawn expression in its own frame (0, 0)–(w, h), with a port per open index."""
    w: float
    h: float
    svg: list
    ports: dict = field(default_factory=dict)


@dataclass
class _Item:
    indices: tuple
    w: float
    h: float
    svg: object = None         # callable (cx, cy) -> svg text, or a Drawing
    ports: dict = None         # for a box: index -> Port in the box's frame


class Diagram:
    """The cell's statements as tensor networks; renders itself in a notebook."""

    def __init__(self, svg, title=""):
        self.svg = svg
        self.title = title

    def _repr_svg_(self):
        return self.svg

    def _repr_html_(self):
        """The SVG inline in HTML, so that a page's own tools (and tests) can read it."""
        return f'<div class="tensormagic-picture" style="overflow-x:auto">{self.svg}</div>'

    def __str__(self):
        return self.svg

    def __repr__(self):
        """What a terminal (text/plain only) shows instead of the picture."""
        what = "contraction plan" if self.title == "plan" else "tensor-network diagram"
        return f"<{what}: an SVG picture, shown in notebooks; .save('picture.svg') writes it>"

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg)
        return path


# -- the cell ----------------------------------------------------------------------------------
def cell_diagram(cell, derivation=()):
    """Each statement as a panel; then, if given, each derived formula (the gradient of a
    tensor is the network with that tensor taken out and the incoming gradient put in)."""
    colours = {name: PALETTE[k % len(PALETTE)] for k, name in enumerate(cell.outputs)}
    panels, seen = [], {}
    for number, st in enumerate(cell.statements, 1):
        fills = {name: colours[name] for name in seen}
        panels.append(_panel(statement_text(st), st.target, st.indices, st.op, st.rhs,
                             f"{number}", fills, colours[st.target]))
        seen[st.target] = number
    hint = statement_layout(cell.statements[0]) if len(cell.statements) == 1 else None
    for f in derivation:
        fills = dict(colours)
        fills.update({leaf.name: GRADIENT_FILL for leaf in leaves(f.rhs) if leaf.name.startswith("Δ")})
        panels.append(_panel(formula_text(f), f.target.name, f.target.indices, "=", f.rhs,
                             f"Δ{f.name}", fills, GRADIENT_FILL, hint))
    return Diagram(_stack(panels), "\n".join(statement_text(st) for st in cell.statements))


def _panel(title, target, indices, op, rhs, number, fills, colour, hint=None):
    drawing = _rhs(rhs, set(indices), fills, hint)
    head_w = NODE + 40
    w = head_w + drawing.w + 20
    h = max(drawing.h, NODE) + 34
    svg = [f'<g class="panel" data-statement="{_esc(number)}" data-target="{_esc(target)}">',
           f'<text class="title" x="4" y="14" font-size="12" fill="#57606a">'
           f'{_esc(title)}</text>']
    cy = 28 + drawing.h / 2
    svg.append(_node_svg(target, len(indices), NODE / 2 + 4, cy, colour, "output"))
    svg.append(f'<text x="{NODE + 12}" y="{cy + 5:.1f}" font-size="16">{_esc(op)}</text>')
    svg.append(f'<g transform="translate({head_w},{28})">')
    svg += drawing.svg
    svg += ["</g>", "</g>"]
    return Drawing(max(w, _text_w(title, 12) + 8), h + 10, svg)


def _stack(panels):
    y, body, width = 0.0, [], 0.0
    for p in panels:
        body.append(f'<g transform="translate(8,{y + 8:.1f})">')
        body += p.svg
        body.append("</g>")
        y += p.h + 12
        width = max(width, p.w + 16)
    height = y + 8
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="tensormagic-diagram" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">')
    return "\n".join([head, '<rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>"])


def _rhs(rhs, kept, fills, hint=None):
    """A right-hand side: its top-level terms side by side, each with its own open legs.
    hint: where the statement's factors sit, for a formula to keep them there."""
    body = rhs.body if isinstance(rhs, Sigma) else rhs
    if isinstance(body, Add):
        parts = [_network(_factors(t), kept & set(free(t)), fills, True, hint) for t in body.terms]
        return _row(parts, [None] + ["+" if s > 0 else "−" for s in body.signs[1:]],
                    "−" if body.signs[0] < 0 else None)
    return _network(_factors(rhs), kept, fills, True, hint)


def _row(parts, signs, lead=None):
    svg, x, h = [], 0.0, max(p.h for p in parts)
    if lead:
        svg.append(_sign(lead, 6, h / 2))
        x = 22
    for part, sign in zip(parts, signs):
        if sign:
            svg.append(_sign(sign, x + 12, h / 2))
            x += 30
        svg.append(f'<g class="term" transform="translate({x:.1f},{(h - part.h) / 2:.1f})">')
        svg += part.svg
        svg.append("</g>")
        x += part.w
    return Drawing(x, h, svg)


def _sign(text, x, y):
    return f'<text class="sign" x="{x:.1f}" y="{y + 7:.1f}" font-size="22" text-anchor="middle">{text}</text>'


def _factors(e):
    """The factors of a product, through nested products and the sums that wrap them."""
    if isinstance(e, Sigma):
        return _factors(e.body)
    if isinstance(e, Mul):
        return [f for factor in e.factors for f in _factors(factor)]
    return [e]


# -- one product: a network ----------------------------------------------------------------------
def _network(factors, kept, fills, legs, hint=None):
    """Factors as a network. kept: the indices that leave it (open legs, or ports on the
    enclosing box's border when legs is False)."""
    items = [_item(f, fills) for f in factors]
    occ = _occurrences(items)
    units = (_hinted(factors, hint) if hint else None) or _units(items, occ)
    sx = max(it.w for it in items) + GAP
    sy = max(it.h for it in items) + GAP
    net = _Net(items, [(x * sx, y * sy) for x, y in units])
    kinds = {i: _kind(ks, i in kept) for i, ks in occ.items()}
    pairs = [tuple(sorted(set(ks))) for i, ks in occ.items() if kinds[i] == "edge"]
    for i, ks in occ.items():  # edges and dots first: they fix the directions in use
        if kinds[i] == "edge":
            net.edge(i, *sorted(set(ks)), pairs)
        elif kinds[i] == "hyper":
            net.place_dot(i, sorted(set(ks)), pairs)
    for i, ks in occ.items():
        if kinds[i] == "hyper":
            net.hyperedge(i, ks, i in kept)
        elif kinds[i] == "loop":
            net.loop(i, ks[0])
        elif kinds[i] == "single":
            net.leg(i, ks[0], i in kept)
    return net.frame(legs)


def _kind(ks, kept):
    """How an index with occurrences ks (item numbers) is drawn."""
    distinct = len(set(ks))
    if len(ks) == 1:
        return "single"             # an open leg, or a capped one when summed
    if len(ks) == 2 and not kept:
        return "edge" if distinct == 2 else "loop"
    return "hyper"                  # 3+ occurrences, or 2+ and kept


class _Net:
    """The pieces of one network being drawn, in its own coordinates."""

    def __init__(self, items, pos):
        self.items, self.pos = items, pos
        self.lines, self.dots, self.ends, self.reach = [], [], [], []
        self.taken = {k: [] for k in range(len(items))}   # directions in use at each node
        self.dot_at, self.bends = {}, {}

    def edge(self, i, a, b, pairs):
        n, k = pairs.count((a, b)), self.bends.get((a, b), 0)
        self.bends[(a, b)] = k + 1
        pa, pb = self.anchor(a, i), self.anchor(b, i)
        self.lines.append(_edge(pa, pb, i, (k - (n - 1) / 2) * 22))
        self.take(a, pb)
        self.take(b, pa)

    def place_dot(self, i, distinct, pairs):
        self.dot_at[i] = _dot_position(distinct, self.pos, self.items, self.dot_at, pairs)
        for a in distinct:
            self.take(a, self.dot_at[i])

    def hyperedge(self, i, ks, kept):
        d = self.dot_at[i]
        for a in ks:
            self.lines.append(_line(self.anchor(a, i), d, "edge hyper", i))
        self.dots.append(f'<circle class="hyperedge" data-index="{_esc(i)}" cx="{d[0]:.1f}" '
                         f'cy="{d[1]:.1f}" r="5" fill="#24292f"/>')
        if kept:
            self.ends.append((i, d, _away(d, self.pos)))

    def loop(self, i, a):
        svg, reach = _loop(self.pos[a], self.pick(a), i, self.items[a])
        self.lines.append(svg)
        self.reach += reach

    def leg(self, i, a, kept):
        item, p = self.items[a], self.pos[a]
        if item.ports and i in item.ports:
            port = item.ports[i]
            start, d = self.anchor(a, i), (port.dx, port.dy)
        else:
            d = self.pick(a)
            start = (p[0] + d[0] * item.w / 2, p[1] + d[1] * item.w / 2)
        if kept:
            self.ends.append((i, start, d))
        else:
            svg, reach = _cap(start, d, i)
            self.lines.append(svg)
            self.reach += reach

    def anchor(self, k, index):
        """Where an edge for index meets item k: a box's port, or a node's centre."""
        item, p = self.items[k], self.pos[k]
        if item.ports and index in item.ports:
            port = item.ports[index]
            return (p[0] - item.w / 2 + port.x, p[1] - item.h / 2 + port.y)
        return p

    def take(self, k, q):
        p = self.pos[k]
        d = math.hypot(q[0] - p[0], q[1] - p[1])
        if d > 1e-6:
            self.taken[k].append(((q[0] - p[0]) / d, (q[1] - p[1]) / d))

    def pick(self, k):
        """The free direction at node k farthest from those in use, outward first."""
        cx = sum(p[0] for p in self.pos) / len(self.pos)
        cy = sum(p[1] for p in self.pos) / len(self.pos)
        here = self.pos[k]

        def score(d):
            gap = min((math.acos(max(-1.0, min(1.0, d[0] * u[0] + d[1] * u[1])))
                       for u in self.taken[k]), default=math.pi)
            return (round(gap, 2), round(d[0] * (here[0] - cx) + d[1] * (here[1] - cy), 1))

        best = max(DIRECTIONS, key=score)
        self.taken[k].append(best)
        return best

    def frame(self, legs):
        return _frame(self, legs)


def _item(f, fills):
    if isinstance(f, Tensor):
        rank = f.ndim if hasattr(f, "ndim") else len(f.indices)
        fill = fills.get(f.name, INPUT_FILL)
        kind = "gradient" if f.name.startswith("Δ") else "output" if f.name in fills else "tensor"
        return _Item(tuple(f.indices), NODE, NODE,
                     lambda cx, cy, f=f, rank=rank, fill=fill, kind=kind:
                     _node_svg(f.name, rank, cx, cy, fill, kind))
    if isinstance(f, Scalar):
        fill = fills.get(f.name, "#eeeeee")
        w = max(30, _text_w(f.name, 13) + 12)
        kind = "gradient" if f.name.startswith("Δ") else "scalar"
        return _Item((), w, 30, lambda cx, cy: _node_svg(f.name, 0, cx, cy, fill, kind))
    if isinstance(f, Const):
        shown = text(f)
        return _Item((), _text_w(shown, 14) + 6, 24,
                     lambda cx, cy: f'<text class="constant" x="{cx:.1f}" y="{cy + 5:.1f}" '
                                    f'font-size="14" text-anchor="middle">{_esc(shown)}</text>')
    if not isinstance(f, _COMPOUND) and not children(f):  # a leaf kind this module does not know
        label = _label_of(f)
        return _Item(tuple(free(f)), NODE, NODE,
                     lambda cx, cy: _node_svg(label, len(free(f)), cx, cy, INPUT_FILL, "other"))
    drawing = _box(f, fills)
    return _Item(tuple(drawing.ports), drawing.w, drawing.h, drawing, drawing.ports)


_COMPOUND = (Add, Call, Mul, Pow, Sigma)


def _label_of(e):
    """A short name for a node kind: its function or operation, else its class."""
    if type(e).__name__ == "Indicator":
        return "𝟙[=]"
    for attr in ("func", "op", "kind", "name"):
        value = getattr(e, attr, None)
        if isinstance(value, str):
            return value
    return type(e).__name__.lower()


def _occurrences(items):
    occ = {}
    for k, item in enumerate(items):
        for i in item.indices:
            occ.setdefault(i, []).append(k)
    return occ


def _units(items, occ):
    """Positions in units of one edge length."""
    pairs = set()
    for ks in occ.values():
        distinct = sorted(set(ks))
        if len(distinct) == 2:
            pairs.add(tuple(distinct))
    units = graphlayout.positions(len(items), sorted(pairs))
    if len(items) > 1:  # hyperedges join what pairs leave apart: re-lay with them as stars
        groups = _groups(len(items), pairs)
        extra = {(min(ks), k) for ks in (sorted(set(v)) for v in occ.values()) if len(ks) > 2
                 for k in ks[1:] if groups[min(ks)] != groups[k]}
        if extra:
            units = graphlayout.positions(len(items), sorted(pairs | extra))
    return units


def statement_layout(st):
    """Where each tensor of a one-product statement sits: [(name, indices, unit position)]."""
    factors = _factors(st.rhs)
    if not all(isinstance(f, (Tensor, Scalar, Const)) for f in factors):
        return None
    items = [_item(f, {}) for f in factors]
    units = _units(items, _occurrences(items))
    return [(f.name, tuple(f.indices), u) for f, u in zip(factors, units) if isinstance(f, Tensor)]


def _hinted(factors, layout):
    """A formula's factors where the statement had them: the tensors of each name in order,
    the incoming gradient where the tensor it replaces was (the one whose absence fits the
    index names best), anything else (δ, numbers) just below it. None where that fails."""
    units, holes, rest = [None] * len(factors), [], []
    names = {name for name, _, _ in layout}
    for name in sorted(names):
        spots = [(ix, u) for n, ix, u in layout if n == name]
        mine = [k for k, f in enumerate(factors) if isinstance(f, Tensor) and f.name == name]
        if len(mine) == len(spots):
            pairs = list(zip(mine, spots))
        elif len(mine) == len(spots) - 1:
            hole = max(range(len(spots)), key=lambda h: (_agreement(
                factors, mine, spots[:h] + spots[h + 1:]), -h))
            holes.append(spots[hole][1])
            pairs = list(zip(mine, spots[:hole] + spots[hole + 1:]))
        else:
            return None
        for k, (_, u) in pairs:
            units[k] = u
    if len(holes) != 1:
        return None
    rest = sorted((k for k, u in enumerate(units) if u is None),
                  key=lambda k: not getattr(factors[k], "name", "").startswith("Δ"))
    hole = holes[0]
    for n, k in enumerate(rest):
        side = ((n + 1) // 2) * (1 if n % 2 else -1)
        units[k] = (hole[0] + 0.9 * side, hole[1] + 0.9 * (n > 0))
    return units


def _agreement(factors, mine, spots):
    return sum(a.rstrip("ʹ") == b for k, (ix, _) in zip(mine, spots)
               for a, b in zip(factors[k].indices, ix))


def _groups(n, pairs):
    group = list(range(n))
    for a, b in sorted(pairs):
        ga, gb = group[a], group[b]
        group = [ga if g == gb else g for g in group]
    return group


def _dot_position(distinct, pos, items, others, pairs):
    cx = sum(pos[a][0] for a in distinct) / len(distinct)
    cy = sum(pos[a][1] for a in distinct) / len(distinct)
    clear = max(max(it.w, it.h) for it in items) / 2 + 12
    for dx, dy in [(0, 0), (0, 0.5), (0, -0.5), (0.5, 0), (-0.5, 0), (0, 0.8), (0, -0.8)]:
        q = (cx + dx * (clear * 2 + 20), cy + dy * (clear * 2 + 20))
        if all(math.dist(q, p) > clear for p in pos) and \
                all(math.dist(q, o) > 14 for o in others.values()) and \
                all(_off_segment(q, pos[a], pos[b]) > 14 for a, b in pairs):
            return q
    return (cx, cy + clear + 20)


def _off_segment(q, a, b):
    """The distance from q to the segment a–b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((q[0] - a[0]) * dx + (q[1] - a[1]) * dy) / ((dx * dx + dy * dy) or 1.0)))
    return math.dist(q, (a[0] + t * dx, a[1] + t * dy))


def _away(d, pos):
    """The direction from the middle of the nodes to d (down when d is the middle)."""
    cx = sum(p[0] for p in pos) / len(pos)
    cy = sum(p[1] for p in pos) / len(pos)
    vx, vy = d[0] - cx, d[1] - cy
    n = math.hypot(vx, vy)
    return (vx / n, vy / n) if n > 1e-6 else (0.0, 1.0)

def _frame(net, legs):
    """The network's bounds; its open legs drawn out (legs) or run to the border as ports."""
    items, pos = net.items, net.pos
    xs = [p[0] + s * it.w / 2 for it, p in zip(items, pos) for s in (-1, 1)]
    ys = [p[1] + s * it.h / 2 for it, p in zip(items, pos) for s in (-1, 1)]
    xs += [start[0] + d[0] * (LEG + 14) for _, start, d in net.ends] + [x for x, _ in net.reach]
    ys += [start[1] + d[1] * (LEG + 14) for _, start, d in net.ends] + [y for _, y in net.reach]
    x0, y0 = min(xs) - PAD, min(ys) - PAD
    x1, y1 = max(xs) + PAD, max(ys) + PAD
    legs_svg, ports = [], {}
    for i, start, d in net.ends:
        if legs:
            end = (start[0] + d[0] * LEG, start[1] + d[1] * LEG)
            legs_svg.append(_open_leg(start, end, d, i))
        else:
            end, normal = _to_border(start, d, (x0, y0, x1, y1))
            legs_svg.append(_line(start, end, "leg inner", i))
            ports[i] = Port(end[0] - x0, end[1] - y0, *normal)
    nodes = [_draw_item(item, p) for item, p in zip(items, pos)]
    body = [f'<g transform="translate({-x0:.1f},{-y0:.1f})">'] + net.lines + legs_svg + \
        net.dots + nodes + ["</g>"]
    return Drawing(x1 - x0, y1 - y0, body, ports)


def _to_border(start, d, rect):
    x0, y0, x1, y1 = rect
    ts = []
    if d[0] > 1e-9:
        ts.append(((x1 - start[0]) / d[0], (1, 0)))
    if d[0] < -1e-9:
        ts.append(((x0 - start[0]) / d[0], (-1, 0)))
    if d[1] > 1e-9:
        ts.append(((y1 - start[1]) / d[1], (0, 1)))
    if d[1] < -1e-9:
        ts.append(((y0 - start[1]) / d[1], (0, -1)))
    t, normal = min(ts)
    return (start[0] + d[0] * t, start[1] + d[1] * t), normal


# -- boxes -------------------------------------------------------------------------------------
def _box(e, fills):
    """A function, power or sum as a box around its contents, with ports for its free indices."""
    if isinstance(e, Sigma):
        e = e.body
        if isinstance(e, Mul) or isinstance(e, Tensor):
            inner = _network(_factors(e), set(free(e)), fills, legs=False)
            return _wrap(inner, "Σ", "sum")
    if isinstance(e, Call):
        label = "1/( )" if e.func == "recip" else e.func
        return _wrap(_contents(e.arg, fills), label, "function")
    if isinstance(e, Pow):
        if isinstance(e.exponent, Const):
            return _wrap(_contents(e.base, fills), f"( )**{text(e.exponent)}", "power")
        return _wrap(_joined([_contents(e.base, fills), _contents(e.exponent, fills)], ["**"]),
                     "power", "power")
    if isinstance(e, Add):
        parts = [_contents(t, fills) for t in e.terms]
        signs = ["+" if s > 0 else "−" for s in e.signs[1:]]
        return _wrap(_joined(parts, signs, "−" if e.signs[0] < 0 else None), "sum", "sum")
    if hasattr(e, "op") and hasattr(e, "indices") and hasattr(e, "body"):  # op[j](body)
        inner = _contents(e.body, fills, kept=set(free(e)))
        return _wrap(inner, f"{e.op}[{','.join(map(str, e.indices))}]", "reduction")
    if not isinstance(e, _COMPOUND) and children(e):  # max(a, b), 𝟙(a == b), and kinds added later
        parts = [_contents(k, fills) for k in children(e)]
        return _wrap(_joined(parts, [","] * (len(parts) - 1)), _label_of(e), "function")
    return _contents(e, fills)


def _contents(e, fills, kept=None):
    """What a box encloses; kept: the indices that leave it (default: all of e's free ones)."""
    body = e.body if isinstance(e, Sigma) else e
    if isinstance(body, (Mul, Tensor, Scalar, Const)) or \
            not (isinstance(body, _COMPOUND) or children(body)):
        return _network(_factors(e), set(free(e)) if kept is None else kept, fills, legs=False)
    return _box(body, fills)


def _joined(parts, signs, lead=None):
    """Terms side by side; each index's ports join at one port on the bottom border."""
    row = _row(parts, [None] + list(signs), lead)
    h = row.h + 30
    names = list(dict.fromkeys(i for p in parts for i in p.ports))
    ports, lines = {}, []
    for n, i in enumerate(names):
        px = row.w * (n + 1) / (len(names) + 1)
        ports[i] = Port(px, h, 0, 1)
        x = 22 if lead else 0.0
        for k, p in enumerate(parts):
            x += 30 if k else 0
            if i in p.ports:
                q = p.ports[i]
                qx, qy = x + q.x, (row.h - p.h) / 2 + q.y
                lines.append(f'<polyline class="join" data-index="{_esc(i)}" fill="none" '
                             f'stroke="#24292f" stroke-width="1.3" points="{qx:.1f},{qy:.1f} '
                             f'{qx:.1f},{h - 12:.1f} {px:.1f},{h - 12:.1f} {px:.1f},{h:.1f}"/>')
            x += p.w
    return Drawing(row.w, h, row.svg + lines, ports)


def _wrap(inner, label, kind):
    w = max(inner.w, _text_w(label, 12) + 12) + 2 * PAD
    h = inner.h + 2 * PAD + LABEL_H
    ox, oy = (w - inner.w) / 2, PAD + LABEL_H
    svg = [f'<g class="box" data-kind="{kind}" data-label="{_esc(label)}">',
           f'<rect x="1" y="1" width="{w - 2:.1f}" height="{h - 2:.1f}" rx="8" fill="#fbfbfd" '
           f'fill-opacity="0.9" stroke="#8c959f" stroke-dasharray="{"5,3" if kind == "sum" else "none"}"/>',
           f'<text x="9" y="{LABEL_H + 1}" font-size="12" font-style="italic" fill="#57606a">'
           f'{_esc(label)}</text>',
           f'<g transform="translate({ox:.1f},{oy:.1f})">'] + inner.svg + ["</g>"]
    ports = {}
    for i, p in inner.ports.items():
        start = (ox + p.x, oy + p.y)
        end, normal = _to_border(start, (p.dx, p.dy), (0, 0, w, h))
        svg.append(_line(start, end, "leg inner", i))
        ports[i] = Port(end[0], end[1], *normal)
    svg.append("</g>")
    return Drawing(w, h, svg, ports)


def _draw_item(item, p):
    if isinstance(item.svg, Drawing):
        x, y = p[0] - item.w / 2, p[1] - item.h / 2
        return "\n".join([f'<g transform="translate({x:.1f},{y:.1f})">'] + item.svg.svg + ["</g>"])
    return item.svg(*p)


# -- primitives ---------------------------------------------------------------------------------
def _node_svg(name, rank, cx, cy, fill, kind):
    r = NODE / 2
    stroke = 'stroke="#24292f" stroke-width="1.5"'
    if rank == 0:  # a small circle, stretched to a pill for a long name
        half = max(r * 0.62, _text_w(name, 13) / 2 + 5)
        shape = (f'<rect x="{cx - half:.1f}" y="{cy - r * 0.62:.1f}" width="{2 * half:.1f}" '
                 f'height="{r * 1.24:.1f}" rx="{r * 0.62:.1f}" fill="{fill}" {stroke}/>')
    elif rank == 1:
        shape = f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{fill}" {stroke}/>'
    elif rank == 2:
        shape = (f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{NODE}" height="{NODE}" rx="5" '
                 f'fill="{fill}" {stroke}/>')
    else:  # rank 3: a diamond; 4 and more: a hexagon
        sides, radius = (4, r * 1.25) if rank == 3 else (6, r * 1.12)
        pts = " ".join(f"{cx + radius * math.cos(2 * math.pi * k / sides - math.pi / 2):.1f},"
                       f"{cy + radius * math.sin(2 * math.pi * k / sides - math.pi / 2):.1f}"
                       for k in range(sides))
        shape = f'<polygon points="{pts}" fill="{fill}" {stroke}/>'
    size = 13 if len(name) <= 3 or rank == 0 else max(8, int(40 / len(name) * 1.6))
    return (f'<g class="node" data-name="{_esc(name)}" data-rank="{rank}" data-kind="{kind}">'
            f'{shape}<text x="{cx:.1f}" y="{cy + 4.5:.1f}" font-size="{size}" text-anchor="middle" '
            f'font-weight="bold">{_esc(name)}</text></g>')


def _edge(a, b, index, bend):
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    cx, cy = mx + nx * bend * 2, my + ny * bend * 2
    side = -1 if (ny > 1e-9 or (abs(ny) <= 1e-9 and nx > 0)) else 1  # the label above / left
    off = bend + math.copysign(12, bend) if bend else side * 12
    lx, ly = mx + nx * off, my + ny * off + 4
    path = f"M{a[0]:.1f},{a[1]:.1f} Q{cx:.1f},{cy:.1f} {b[0]:.1f},{b[1]:.1f}"
    return (f'<g class="edge contracted" data-index="{_esc(index)}">'
            f'<path d="{path}" fill="none" stroke="#24292f" stroke-width="1.6"/>'
            f'{_label(lx, ly, index)}</g>')


def _line(a, b, cls, index):
    return (f'<line class="{cls}" data-index="{_esc(index)}" x1="{a[0]:.1f}" y1="{a[1]:.1f}" '
            f'x2="{b[0]:.1f}" y2="{b[1]:.1f}" stroke="#24292f" stroke-width="1.6"/>')


def _open_leg(start, end, d, index):
    lx, ly = end[0] + d[0] * 10, end[1] + d[1] * 10 + 4
    return (f'<g class="leg open" data-index="{_esc(index)}">'
            f'<line x1="{start[0]:.1f}" y1="{start[1]:.1f}" x2="{end[0]:.1f}" y2="{end[1]:.1f}" '
            f'stroke="#24292f" stroke-width="1.6"/>{_label(lx, ly, index)}</g>')


def _loop(p, d, index, item):
    """A self-loop (a trace) on the node at p, pointing in direction d; (svg, far points)."""
    r = item.w / 2
    px, py = -d[1], d[0]
    s1 = (p[0] + d[0] * r * 0.8 + px * 10, p[1] + d[1] * r * 0.8 + py * 10)
    s2 = (p[0] + d[0] * r * 0.8 - px * 10, p[1] + d[1] * r * 0.8 - py * 10)
    far = r + 36
    c1 = (p[0] + d[0] * far + px * 26, p[1] + d[1] * far + py * 26)
    c2 = (p[0] + d[0] * far - px * 26, p[1] + d[1] * far - py * 26)
    tip = (p[0] + d[0] * (r + 30), p[1] + d[1] * (r + 30))
    lx, ly = p[0] + d[0] * (r + 40), p[1] + d[1] * (r + 40) + 4
    svg = (f'<g class="loop" data-index="{_esc(index)}">'
           f'<path d="M{s1[0]:.1f},{s1[1]:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} '
           f'{s2[0]:.1f},{s2[1]:.1f}" fill="none" stroke="#24292f" stroke-width="1.6"/>'
           f'{_label(lx, ly, index)}</g>')
    return svg, [tip, (lx, ly)]


def _cap(start, d, index):
    """A leg ending in a small ring: an index summed over one factor; (svg, far points)."""
    end = (start[0] + d[0] * 26, start[1] + d[1] * 26)
    ring = (end[0] + d[0] * 4, end[1] + d[1] * 4)
    lx, ly = ring[0] + d[0] * 12 + (-d[1]) * 8, ring[1] + d[1] * 12 + d[0] * 8 + 4
    svg = (f'<g class="cap" data-index="{_esc(index)}">'
           f'<line x1="{start[0]:.1f}" y1="{start[1]:.1f}" x2="{end[0]:.1f}" y2="{end[1]:.1f}" '
           f'stroke="#24292f" stroke-width="1.6"/>'
           f'<circle cx="{ring[0]:.1f}" cy="{ring[1]:.1f}" r="4" fill="white" stroke="#24292f" '
           f'stroke-width="1.4"/>{_label(lx, ly, index)}</g>')
    return svg, [ring, (lx, ly)]


def _label(x, y, text):
    return (f'<text class="label" x="{x:.1f}" y="{y:.1f}" font-size="12" font-style="italic" '
            f'text-anchor="middle" fill="#0b5cad" stroke="white" stroke-width="3" '
            f'paint-order="stroke">{_esc(text)}</text>')


def _esc(x):
    return _escape(str(x))


def _text_w(text, size):
    return 0.62 * size * len(text)
