"""The contraction plan as a picture: each product's pairwise tree, every node with its
equation, its multiply-adds and its result size; the values the backward reuses are marked."""
import math
from html import escape

from .diagram import Diagram

BOX_W, BOX_H, DX, DY = 150, 54, 24, 40
KINDS = {"einsum1": "diag / Σ", "map": "{func}", "add": "+", "scale": "×", "pow": "**",
         "literal": "constant", "emit": "{name}"}


def plan_diagram(compiled):
    """The program's trees, then each sliced product's: one slice's tree (its sizes, and its
    multiply-adds times the slices), nothing of it kept for the backward."""
    program = compiled.program
    saved = set(compiled.saved)
    outer = {op.out: op for op in program.ops}
    groups = [(program, None, {})] + [
        (op.info["inner"], op.info["slices"].count,  # a slice's operands named as the product's
         {v: _leaf_text(r, outer.get(r.var), program) for v, r in zip(op.info["inner"].inputs, op.args)})
        for op in program.ops if op.kind == "sliced"]
    trees, x = [], 0.0
    for part, slices, names in groups:
        producer = {op.out: op for op in part.ops}
        pair_args = {a.var for op in part.ops if op.kind == "pair" for a in op.args}
        placed = set()
        for root in [op for op in part.ops if op.kind == "pair" and op.out not in pair_args]:
            layout, x = _place(root, producer, part, 0, x, placed, slices, names)
            trees.append(layout)
            x += 1.0
    nodes = [n for t in trees for n in t]
    if not nodes:
        svg = ('<svg xmlns="http://www.w3.org/2000/svg" class="tensormagic-plan" width="320" '
               'height="40"><text x="8" y="24" font-size="13">no pairwise contractions in this '
               'plan</text></svg>')
        return Diagram(svg, "plan")
    depth = max(n["depth"] for n in nodes)
    width = (x - 1) * (BOX_W + DX) + BOX_W + 16
    height = (depth + 1) * (BOX_H + DY) + 40
    body = []
    for n in nodes:
        cx, cy = _centre(n)
        for child in n["children"]:
            kx, ky = _centre(child)
            body.append(f'<line class="plan-edge" x1="{cx:.1f}" y1="{cy + BOX_H / 2:.1f}" '
                        f'x2="{kx:.1f}" y2="{ky - BOX_H / 2:.1f}" stroke="#57606a"/>')
    for n in nodes:
        body.append(_box(n, n["var"] in saved and not n["sliced"]))
    legend = (f'<text x="8" y="{height - 12:.0f}" font-size="11" fill="#57606a">multiply-adds and '
              f'result size per product; orange: kept for the backward pass</text>')
    svg = "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" class="tensormagic-plan" '
                     f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
                     f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
                     '<rect width="100%" height="100%" fill="white"/>'] + body + [legend, "</svg>"])
    return Diagram(svg, "plan")


def _place(op, producer, program, depth, x, placed, slices=None, names=None):
    """A tidy tree: leaves left to right, each product above the middle of its operands. A
    product two trees read (the same values under other names: made once) is drawn once; the
    second reader shows it as a leaf. slices: the count of a sliced product's slices (its tree
    is one slice's); names: leaf texts by var (a slice's operands)."""
    placed.add(op.out)
    children, nodes = [], []
    for ref in op.args:
        child = producer.get(ref.var)
        if child is not None and child.kind == "pair" and child.out in placed:
            a, b = child.args
            leaf = {"kind": "leaf", "var": ref.var, "depth": depth + 1, "x": x, "children": [],
                    "text": [f"{_names(a.labels)},{_names(b.labels)}→{_names(program.vars[child.out].labels)}",
                             "made once, drawn above"], "size": _size(program, ref.var),
                    "sliced": slices is not None}
            x += 1.0
            nodes.append(leaf)
            children.append(leaf)
        elif child is not None and child.kind == "pair":
            sub, x = _place(child, producer, program, depth + 1, x, placed, slices, names)
            nodes += sub
            children.append(sub[-1])
        else:
            leaf = {"kind": "leaf", "var": ref.var, "depth": depth + 1, "x": x, "children": [],
                    "text": [(names or {}).get(ref.var) or _leaf_text(ref, child, program)],
                    "size": _size(program, ref.var),
                    "sliced": slices is not None}
            x += 1.0
            nodes.append(leaf)
            children.append(leaf)
    a, b = op.args
    sizes = {}
    for r in (a, b):
        sizes.update(zip(r.labels, program.vars[r.var].shape))
    cost = math.prod(sizes[i] for i in set(a.labels + b.labels))
    out = program.vars[op.out]
    work = f"{cost:,} multiply-adds" if slices is None else f"{cost:,} × {slices:,} slices"
    node = {"kind": "pair", "var": op.out, "depth": depth, "children": children,
            "x": sum(c["x"] for c in children) / len(children), "sliced": slices is not None,
            "text": [f"{_names(a.labels)},{_names(b.labels)}→{_names(out.labels)}", work,
                     f"size {math.prod(out.shape):,}" + (" per slice" if slices else "")]}
    nodes.append(node)
    return nodes, x


def _leaf_text(ref, op, program):
    var = program.vars[ref.var]
    if var.name and (op is None or op.kind in ("input", "emit")):
        return f"{var.name}[{','.join(ref.labels)}]" if ref.labels else var.name
    kind = KINDS.get(op.kind, op.kind) if op is not None else "?"
    kind = kind.format(func=op.info.get("func", ""), name=var.name or "")
    return f"{kind} [{','.join(var.labels)}]"


def _size(program, var):
    return math.prod(program.vars[var].shape)


def _centre(n):
    return 8 + n["x"] * (BOX_W + DX) + BOX_W / 2, 8 + n["depth"] * (BOX_H + DY) + BOX_H / 2


def _box(n, saved):
    cx, cy = _centre(n)
    x, y = cx - BOX_W / 2, cy - BOX_H / 2
    stroke = 'stroke="#d9822b" stroke-width="2.5"' if saved else 'stroke="#57606a" stroke-width="1"'
    fill = "#fff4e5" if saved else ("#eef4fb" if n["kind"] == "pair" else "#f6f8fa")
    lines = n["text"] if n["kind"] == "pair" else n["text"] + [f"size {n['size']:,}"]
    weights = ["bold"] + ["normal"] * (len(lines) - 1)
    text = "".join(f'<text x="{cx:.1f}" y="{y + 17 + 15 * k:.1f}" font-size="{12 if k == 0 else 11}" '
                   f'text-anchor="middle" font-weight="{w}">{escape(t)}</text>'
                   for k, (t, w) in enumerate(zip(lines, weights)))
    return (f'<g class="plan-node" data-kind="{n["kind"]}" data-saved="{str(saved).lower()}">'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" '
            f'{stroke}/>{text}</g>')


def _names(labels):
    return "".join(labels) if all(len(i) == 1 for i in labels) else " ".join(labels)
