"""Deterministic positions for the nodes of a small graph, in units of one edge length.

Shapes a tensor-network reader expects are recognised and drawn as such: a chain on a line,
a ring on a circle, an m×n grid (an MPS norm is a 2×n ladder, a PEPS a grid) as a grid, a
tree in layers. Anything else gets a spring layout started from a circle (no randomness).
Each component is laid out on its own, then they are placed side by side.
"""
import math


def positions(n, edges):
    """n nodes 0..n-1, edges: pairs (a, b), a != b. Returns [(x, y)] (y grows downwards)."""
    adjacent = [set() for _ in range(n)]
    for a, b in edges:
        if a != b:
            adjacent[a].add(b)
            adjacent[b].add(a)
    out = [None] * n
    left = 0.0
    for component in _components(adjacent):
        local = _layout(component, adjacent)
        xs = [p[0] for p in local.values()]
        ys = [p[1] for p in local.values()]
        x0, y0 = min(xs), (min(ys) + max(ys)) / 2
        for node, (x, y) in local.items():
            out[node] = (left + x - x0, y - y0)
        left += max(xs) - x0 + 1.0
    return out


def _components(adjacent):
    seen, out = set(), []
    for start in range(len(adjacent)):
        if start in seen:
            continue
        order, stack = [], [start]
        seen.add(start)
        while stack:
            node = stack.pop()
            order.append(node)
            for nxt in sorted(adjacent[node], reverse=True):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        out.append(sorted(order))
    return out


def _layout(nodes, adjacent):
    n = len(nodes)
    m = sum(len(adjacent[v]) for v in nodes) // 2
    degree = {v: len(adjacent[v]) for v in nodes}
    if n == 1:
        return {nodes[0]: (0.0, 0.0)}
    if m == n - 1 and max(degree.values()) <= 2:
        return _chain(nodes, adjacent)
    if m == n and all(d == 2 for d in degree.values()):
        return _ring(nodes, adjacent)
    grid = _grid(nodes, adjacent)
    if grid:
        return grid
    if m == n - 1:
        return _tree(nodes, adjacent)
    return _spring(nodes, adjacent)


def _walk(start, adjacent, nodes):
    order, prev, node = [start], None, start
    while True:
        nxt = [v for v in sorted(adjacent[node]) if v != prev and v not in order]
        if not nxt:
            return order
        prev, node = node, nxt[0]
        order.append(node)


def _chain(nodes, adjacent):
    start = min(v for v in nodes if len(adjacent[v]) <= 1)
    return {v: (float(k), 0.0) for k, v in enumerate(_walk(start, adjacent, nodes))}


def _ring(nodes, adjacent):
    order = _walk(min(nodes), adjacent, nodes)
    n = len(order)
    radius = 0.5 / math.sin(math.pi / n)
    # a flat top edge, going clockwise from the top left (y grows downwards)
    angles = [-math.pi / 2 - math.pi / n + 2 * math.pi * k / n for k in range(n)]
    return {v: (radius * math.cos(t), radius * math.sin(t)) for v, t in zip(order, angles)}


def _distances(start, adjacent):
    dist, frontier = {start: 0}, [start]
    while frontier:
        nxt = []
        for node in frontier:
            for v in adjacent[node]:
                if v not in dist:
                    dist[v] = dist[node] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


def _grid(nodes, adjacent):
    """Coordinates if the graph is an m×n grid (m, n ≥ 2), widest side horizontal."""
    n_nodes = len(nodes)
    corners = [v for v in nodes if len(adjacent[v]) == 2]
    if len(corners) < 4:
        return None
    a = min(corners)
    da = _distances(a, adjacent)
    best = None
    for b in corners:
        width = da[b] + 1
        if b == a or n_nodes % width or n_nodes // width < 2 or width < 2:
            continue
        db = _distances(b, adjacent)
        coords = {}
        for v in nodes:
            x2 = da[v] - db[v] + width - 1
            if x2 % 2:
                break
            x = x2 // 2
            coords[v] = (x, da[v] - x)
        else:
            if _is_grid(coords, adjacent, width, n_nodes // width):
                key = (-width, b)
                if best is None or key < best[0]:
                    best = (key, coords)
    if best is None:
        return None
    return {v: (float(x), float(y)) for v, (x, y) in best[1].items()}


def _is_grid(coords, adjacent, width, height):
    if sorted(coords.values()) != sorted((x, y) for x in range(width) for y in range(height)):
        return False
    return all(abs(coords[u][0] - coords[v][0]) + abs(coords[u][1] - coords[v][1]) == 1
               for u in coords for v in adjacent[u])


def _tree(nodes, adjacent):
    """Layers from the centre of the tree downwards; leaves evenly spaced."""
    ecc = {v: max(_distances(v, adjacent).values()) for v in nodes}
    root = min(nodes, key=lambda v: (ecc[v], v))
    coords, next_x = {}, [0.0]

    def place(node, parent, depth):
        kids = [v for v in sorted(adjacent[node]) if v != parent]
        if not kids:
            coords[node] = (next_x[0], float(depth))
            next_x[0] += 1.0
            return
        for kid in kids:
            place(kid, node, depth + 1)
        xs = [coords[k][0] for k in kids]
        coords[node] = ((min(xs) + max(xs)) / 2, float(depth))

    place(root, None, 0)
    return coords


def _spring(nodes, adjacent, steps=300):
    """Fruchterman–Reingold from a circle, with a fixed cooling schedule: deterministic."""
    n = len(nodes)
    pos = {v: [math.cos(2 * math.pi * k / n) * n / 4, math.sin(2 * math.pi * k / n) * n / 4]
           for k, v in enumerate(nodes)}
    temp = n / 4
    for _ in range(steps):
        move = {v: [0.0, 0.0] for v in nodes}
        for i, u in enumerate(nodes):
            for v in nodes[i + 1:]:
                dx, dy = pos[u][0] - pos[v][0], pos[u][1] - pos[v][1]
                d = math.hypot(dx, dy) or 1e-3
                force = 1.0 / d - (d if v in adjacent[u] else 0.0)
                move[u][0] += dx / d * force
                move[u][1] += dy / d * force
                move[v][0] -= dx / d * force
                move[v][1] -= dy / d * force
        for v in nodes:
            d = math.hypot(*move[v]) or 1.0
            step = min(d, temp)
            pos[v][0] += move[v][0] / d * step
            pos[v][1] += move[v][1] / d * step
        temp = max(temp * 0.98, 0.01)
    # scale so that the shortest edge has length 1
    lengths = [math.dist(pos[u], pos[v]) for u in nodes for v in adjacent[u]]
    scale = 1.0 / max(min(lengths), 1e-3) if lengths else 1.0
    return {v: (p[0] * scale, p[1] * scale) for v, p in pos.items()}
