"""The package layout: stages as subpackages whose imports run one way (tests read the
"May import:" line of each stage's docstring), no import circle, and a shallow house."""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tensormagic"
STAGES = ("language", "calculus", "compiler", "views", "runtime", "frontends")
MAX_FLOORS = 9  # the longest import chain, the package's public face included


def _modules():
    """{dotted name: path} of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported(name, node):
    """The package's modules an import statement in module `name` reads (lazy ones too)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = name.split(".")
    if MODULES[name].name != "__init__.py":
        base = base[:-1]
    if node.level:
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in MODULES]
    whole = [] if subs and len(subs) == len(node.names) else [prefix]
    return [m for m in whole + subs if m in MODULES]


def _graph():
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {m for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for m in _imported(name, node) if m != name}
    return graph


GRAPH = _graph()


def _stage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _allowed(stage):
    """The stages a stage's docstring says it may import (its own always)."""
    doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
    line = re.search(r"May import: ([^.(]*)", doc)
    assert line, f"{stage}/__init__.py says what it may import"
    said = line.group(1)
    if said.startswith("anything below"):
        return set(STAGES)
    return {s for s in STAGES if re.search(rf"\b{s}\b", said)} | {stage}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_imports_only_what_its_docstring_allows(stage):
    allowed = _allowed(stage)
    wrong = sorted((m, t) for m in GRAPH if _stage(m) == stage for t in GRAPH[m]
                   if t != "tensormagic._version" and (_stage(t) not in allowed or t == "tensormagic"))
    assert not wrong, f"{stage} imports outside what it may: {wrong}"


def test_the_stages_below_the_runtime_need_neither_torch_nor_ipython():
    """The language, the calculus and the views test in milliseconds: no torch, no IPython
    (the compiler's kernels, which the generated code calls at run time, are torch)."""
    for name, path in MODULES.items():
        if _stage(name) in ("language", "calculus", "views") or \
                (_stage(name) == "compiler" and not name.endswith("kernels")):
            tree = ast.parse(path.read_text())
            roots = {(a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
                     for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                     and not getattr(n, "level", 0) for a in (n.names if isinstance(n, ast.Import) else [n])}
            assert not roots & {"torch", "IPython", "ipywidgets"}, name


def _circles():
    """Strongly connected components of more than one module (Tarjan's, iteratively)."""
    index, low, on, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(GRAPH[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def floors():
    """{module: its floor}: 1 for a module importing nothing of the package, else one more
    than the highest floor it imports (the graph has no circle)."""
    out = {}

    def floor(m):
        if m not in out:
            out[m] = 1 + max((floor(t) for t in GRAPH[m]), default=0)
        return out[m]
    for m in GRAPH:
        floor(m)
    return out


def test_no_import_circle():
    assert _circles() == []


def test_the_house_is_shallow():
    found = floors()
    assert max(found.values()) <= MAX_FLOORS, sorted(found.items(), key=lambda kv: -kv[1])[:5]


def test_kinds_are_a_table_that_imports_its_members_not_the_reverse():
    """The registry: kinds/__init__ lists the kinds; the members import only kinds/base."""
    members = [m for m in GRAPH if m.startswith("tensormagic.compiler.kinds.")]
    assert "tensormagic.compiler.kinds.base" in members
    for m in members:
        assert "tensormagic.compiler.kinds" not in GRAPH[m], m
    from tensormagic.compiler.kinds import KINDS
    from tensormagic.compiler.kinds.base import Kind
    assert KINDS and all(isinstance(k, Kind) and k.name == name for name, k in KINDS.items())


def test_front_ends_take_the_engine_from_its_modules_not_the_package_face():
    for name, path in MODULES.items():
        if _stage(name) == "frontends" or name == "tensormagic.__main__":
            source = path.read_text()
            assert "import tensormagic" not in source and "from tensormagic" not in source, name
