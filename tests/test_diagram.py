"""Golden structure of the tensor-network diagrams, read back from the SVG itself."""
import math
import xml.etree.ElementTree as ET
from collections import Counter

import torch

import tensormagic as tm
from tensormagic.views import graphlayout


def structure(fn):
    svg = fn.diagram()._repr_svg_()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    found = {"node": [], "edge": [], "leg": [], "hyperedge": [], "loop": [], "cap": [], "box": [],
             "panel": []}
    for el in root.iter():
        cls = el.get("class", "").split()
        if "node" in cls:
            found["node"].append((el.get("data-name"), int(el.get("data-rank")), el.get("data-kind")))
        elif "contracted" in cls:
            found["edge"].append(el.get("data-index"))
        elif cls[:2] == ["leg", "open"]:
            found["leg"].append(el.get("data-index"))
        elif "hyperedge" in cls:
            found["hyperedge"].append(el.get("data-index"))
        elif cls and cls[0] in ("loop", "cap", "panel"):
            found[cls[0]].append(el.get("data-index") or el.get("data-target"))
        elif "box" in cls:
            found["box"].append(el.get("data-label"))
    labels = [el.text for el in root.iter() if "label" in el.get("class", "").split()]
    return found, labels, svg


def test_chain():
    found, labels, _ = structure(tm.tensorgrad("y[a,e] := A[a,b]*B[b,c]*C[c,d]*D[d,e]"))
    assert sorted(found["edge"]) == ["b", "c", "d"]
    assert sorted(found["leg"]) == ["a", "e"]
    assert found["hyperedge"] == [] and found["loop"] == [] and found["box"] == []
    assert {n for n, _, k in found["node"] if k == "tensor"} == {"A", "B", "C", "D"}
    assert sorted(labels) == ["a", "b", "c", "d", "e"]


def test_ring():
    found, labels, _ = structure(tm.tensorgrad("z := A[a,b]*B[b,c]*C[c,d]*D[d,a]"))
    assert sorted(found["edge"]) == ["a", "b", "c", "d"] and found["leg"] == []
    assert ("z", 0, "output") in found["node"]


def test_trace_is_a_self_loop():
    found, labels, _ = structure(tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]"))
    assert found["loop"] == ["l"] and found["edge"] == ["j"] and sorted(found["leg"]) == ["i", "k"]
    assert ("D", 2, "tensor") in found["node"] and ("A", 2, "output") in found["node"]


def test_mps_norm_is_a_ladder_and_mps_state_has_physical_legs():
    found, labels, svg = structure(tm.tensorgrad(
        "nrm := A1[p,a]*A1[p,x] * A2[a,q,b]*A2[x,q,y] * A3[b,r,c]*A3[y,r,z] * A4[c,s]*A4[z,s]"))
    assert sorted(found["edge"]) == sorted("paxqbyrczs")
    ranks = Counter((n, r) for n, r, k in found["node"] if k == "tensor")
    assert ranks == Counter({("A1", 2): 2, ("A2", 3): 2, ("A3", 3): 2, ("A4", 2): 2})
    found, labels, _ = structure(tm.tensorgrad("psi[p,q,r,s] := A1[p,a]*A2[a,q,b]*A3[b,r,c]*A4[c,s]"))
    assert sorted(found["edge"]) == ["a", "b", "c"] and sorted(found["leg"]) == ["p", "q", "r", "s"]
    assert ("psi", 4, "output") in found["node"]


PEPS = "Z := A[a,b]*B[a,c,d]*C[c,e]*D[b,f,g]*E[d,f,h,i]*F[e,h,j]*G[g,k]*H[i,k,l]*I[j,l]"


def test_peps_grid():
    found, labels, _ = structure(tm.tensorgrad(PEPS))
    assert sorted(found["edge"]) == sorted("abcdefghijkl") and found["leg"] == []
    assert ("E", 4, "tensor") in found["node"]


def test_layouts_are_the_shapes_a_reader_expects():
    assert graphlayout.positions(3, [(0, 1), (1, 2)]) == [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    ring = graphlayout.positions(4, [(0, 1), (1, 2), (2, 3), (3, 0)])
    assert len({(round(x, 6), round(y, 6)) for x, y in ring}) == 4
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:  # a square: every side of length 1
        assert abs(math.dist(ring[a], ring[b]) - 1) < 1e-9
    grid = [(3 * r + c, 3 * r + c + 1) for r in range(3) for c in range(2)] + \
        [(3 * r + c, 3 * r + c + 3) for r in range(2) for c in range(3)]
    pos = graphlayout.positions(9, grid)
    for a, b in grid:  # every bond has unit length: a grid, no crossings
        assert abs(abs(pos[a][0] - pos[b][0]) + abs(pos[a][1] - pos[b][1]) - 1) < 1e-9
    ladder = [(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5)]
    pos = graphlayout.positions(6, ladder)
    assert sorted({round(y, 6) for _, y in pos}) == [-0.5, 0.5]
    tree = graphlayout.positions(4, [(0, 1), (0, 2), (0, 3)])
    assert tree[0][1] < tree[1][1] == tree[2][1] == tree[3][1]  # a root above its leaves
    assert graphlayout.positions(9, grid) == pos_again(grid)  # deterministic


def pos_again(grid):
    return graphlayout.positions(9, grid)


def test_hyperedges_boxes_caps_and_reused_outputs():
    found, _, _ = structure(tm.tensorgrad("Z[b,i,k] := X[b,i,j] * Y[b,j,k]"))
    assert found["hyperedge"] == ["b"] and found["edge"] == ["j"] and sorted(found["leg"]) == ["b", "i", "k"]
    found, _, _ = structure(tm.tensorgrad("y[i] := A[i]*B[i]*C[i,j]*D[j]"))
    assert found["hyperedge"] == ["i"] and found["edge"] == ["j"]
    found, _, _ = structure(tm.tensorgrad("S[i] := exp(M[i,j])"))
    assert found["box"] == ["exp"] and found["cap"] == ["j"] and found["leg"] == ["i"]
    fn = tm.tensorgrad("H[b,o] := tanh(X[b,i]*W[i,o] + c[o])\nL := (H[b,o]*V[o] - T[b])**2")
    found, _, svg = structure(fn)
    assert found["panel"] == ["H", "L"]
    assert "tanh" in found["box"] and "( )**2" in found["box"] and found["box"].count("sum") == 2
    # H read by the second statement is drawn as the first statement's output: the same colour
    h_nodes = [el for el in ET.fromstring(svg).iter()
               if el.get("class") == "node" and el.get("data-name") == "H"]
    assert len(h_nodes) == 2 and {el.get("data-kind") for el in h_nodes} == {"output"}
    assert len({el[0].get("fill") for el in h_nodes}) == 1
    x_fill = next(el[0].get("fill") for el in ET.fromstring(svg).iter()
                  if el.get("class") == "node" and el.get("data-name") == "X")
    assert x_fill != h_nodes[0][0].get("fill")


def test_diagram_is_deterministic_and_escapes_nothing_unsafe():
    text = "y[α] := W[α,β] * x[β]"
    a, b = tm.tensorgrad(text).diagram().svg, tm.tensorgrad(text).diagram().svg
    assert a == b and "α" in a
    ET.fromstring(a)


def test_plan_diagram_marks_costs_and_what_the_backward_keeps():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * E[k,l]")
    fn(torch.randn(3, 4), torch.randn(4, 5), torch.randn(5, 6))
    root = ET.fromstring(fn.plan_diagram()._repr_svg_())
    nodes = [el for el in root.iter() if el.get("class") == "plan-node"]
    kinds = Counter(el.get("data-kind") for el in nodes)
    assert kinds == Counter({"pair": 2, "leaf": 3})
    texts = " ".join(t.text for t in root.iter() if t.tag.endswith("text") and t.text)
    assert "multiply-adds" in texts and "B[i,j]" in texts
    assert any(el.get("data-saved") == "true" for el in nodes)  # the backward reuses something


def _centres(panel):
    """Each node's centre in a panel, by name (a rect's or polygon's middle)."""
    out = {}
    for el in panel.iter():
        if el.get("class") == "node" and el.get("data-kind") != "output":
            shape = el[0]
            if shape.tag.endswith("rect"):
                c = (float(shape.get("x")) + float(shape.get("width")) / 2,
                     float(shape.get("y")) + float(shape.get("height")) / 2)
            elif shape.tag.endswith("circle"):
                c = (float(shape.get("cx")), float(shape.get("cy")))
            else:
                pts = [tuple(map(float, p.split(","))) for p in shape.get("points").split()]
                c = (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))
            out.setdefault(el.get("data-name"), []).append(c)
    return out


def test_gradient_panels_keep_the_network_and_show_the_hole():
    fn = tm.tensorgrad(PEPS, wrt="E")
    root = ET.fromstring(fn.diagram(gradients=True).svg)
    panels = [el for el in root.iter() if el.get("class") == "panel"]
    assert [p.get("data-target") for p in panels] == ["Z", "ΔE"]
    before, after = _centres(panels[0]), _centres(panels[1])
    assert "E" in before and "E" not in after and "ΔZ" in after
    for name in "ABCDFGHI":  # every other tensor where it was, relative to A
        dx0, dy0 = (before[name][0][k] - before["A"][0][k] for k in (0, 1))
        dx1, dy1 = (after[name][0][k] - after["A"][0][k] for k in (0, 1))
        assert abs(dx0 - dx1) < 0.5 and abs(dy0 - dy1) < 0.5  # px, as written
    # ΔZ sits in the hole E left; E's four bonds are the open legs of the gradient
    ex, ey = (before["E"][0][k] - before["A"][0][k] for k in (0, 1))
    zx, zy = (after["ΔZ"][0][k] - after["A"][0][k] for k in (0, 1))
    assert abs(ex - zx) < 0.5 and abs(ey - zy) < 0.5
    legs = sorted(el.get("data-index") for el in panels[1].iter() if el.get("class") == "leg open")
    assert legs == ["d", "f", "h", "i"]


def test_language_ii_forms_draw():
    found, _, _ = structure(tm.tensorgrad("y[b,o,i] := x[b,c,2*i+a] * w[o,c,a]"))
    assert ("x", 3, "tensor") in found["node"] and ("w", 3, "tensor") in found["node"]
    assert sorted(found["edge"]) == ["a", "c"] and sorted(found["leg"]) == ["b", "i", "o"]
    found, _, _ = structure(tm.tensorgrad("p[b,i] := exp(x[b,i] - logsumexp[j](x[b,j]))"))
    assert "logsumexp[j]" in found["box"] and "exp" in found["box"] and "j" in found["cap"]
    found, _, _ = structure(tm.tensorgrad("m[i] := max(x[i], y[i])"))
    assert found["box"] == ["max"]
    found, _, _ = structure(tm.tensorgrad("e[b,d] := W[tok[b], d]", wrt="W"))
    assert ("W", 2, "tensor") in found["node"] and sorted(found["leg"]) == ["b", "d"]
