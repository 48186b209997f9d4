"""fn.export(): a standalone module that needs only torch, checked in a fresh interpreter
where tensormagic cannot be imported, against the original callable."""
import json
import subprocess
import sys
import types

import pytest
import torch

import tensormagic as tm
from conftest import make_tensor
from tensormagic.runtime import export

CELLS = {
    "seed": ("A[i,k] := B[i,j] * C[j,k] * D[l,l]", "B C", {"B": (3, 4), "C": (4, 2), "D": (3, 3)},
             torch.float64, "high"),
    "mlp": ("H[b,o] := tanh(X[b,i]*W[i,o] + c[o])\nL := (H[b,o]*V[o] - T[b])**2", None,
            {"X": (3, 4), "W": (4, 2), "c": (2,), "V": (2,), "T": (3,)}, torch.float64, "high"),
    "scaled_low": ("y[i] := alpha * exp(x[i]) / (x[j]*x[j])", None, {"alpha": (), "x": (5,)},
                   torch.float64, "low"),
    "complex": ("s := conj(z[i]) * M[i,j] * z[j]", None, {"z": (3,), "M": (3, 3)},
                torch.complex128, "high"),
    "copy": ("y[i] := x[i]", None, {"x": (4,)}, torch.float64, "high"),
    # language II: the kernels (_view, _unview, _index, ...) and the error type they raise
    "conv": ("y[b,o,i] := x[b,c,2*i+a] * w[o,c,a]", None, {"x": (2, 3, 9), "w": (4, 3, 3)},
             torch.float64, "high"),
    "embedding": ("e[b,d] := W[tok[b], d] * s[d]\nL := logsumexp[d](e[b,d]) - e[b,0]", None,
                  {"W": (5, 3), "tok": ("int", 5, (4,)), "s": (3,)}, torch.float64, "high"),
    # a sliced product: its inner functions and the loops (slicekernels) travel along
    "sliced": ("A[i,m] := B[i,j]*C[j,k]*D[k,l]*E[l,m]", None,
               {"B": (4, 3), "C": (3, 2), "D": (2, 3), "E": (3, 4)}, torch.float64, "high",
               {"memory_limit": 384}),
}

CHILD = r"""
import importlib.util, json, sys
sys.modules["tensormagic"] = None          # tensormagic is not importable here
try:
    import tensormagic
    raise SystemExit("tensormagic was importable")
except ImportError:
    pass
import torch
jobs = json.loads(sys.argv[1])
for job in jobs:
    spec = importlib.util.spec_from_file_location(job["module"], job["path"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn = getattr(mod, job["name"])
    data = torch.load(job["data"])
    args = [a.detach().requires_grad_(w) for a, w in zip(data["args"], job["wanted"])]
    out = fn(*args)
    grads = torch.autograd.grad(out, [a for a in args if a.requires_grad], data["cotangent"])
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)
    every = getattr(mod, job["name"] + "_all")(*args)
    torch.save({"out": out.detach(), "grads": [g.detach() for g in grads],
                "outputs": sorted(every), "doc": fn.__doc__}, job["result"])
print("ok", len(jobs))
"""


def _inputs(shapes, dtype):
    """Random inputs; ("int", high, shape) is an index tensor."""
    return [torch.randint(0, s[1], s[2]) if s and s[0] == "int" else make_tensor(s, dtype=dtype)
            for s in shapes.values()]


def test_exported_modules_match_the_original_in_a_fresh_interpreter(tmp_path):
    jobs, expected = [], {}
    for key, (text, wrt, shapes, dtype, memory, *options) in CELLS.items():
        fn = tm.tensorgrad(text, wrt=wrt, memory=memory, **(options[0] if options else {}))
        args = _inputs(shapes, dtype)
        fn(*args)  # the shapes seen
        path = tmp_path / f"{key}_ops.py"
        assert fn.export(path) == path
        source = path.read_text()
        imports = [line.split()[1] for line in source.splitlines()
                   if line.strip().startswith(("import ", "from "))]
        # torch and the standard library only (the fresh interpreter below proves it too)
        assert "torch" in imports and all(m == "torch" or m.split(".")[0] in sys.stdlib_module_names
                                          for m in imports), imports
        wanted = [n in fn.wrt for n in fn.inputs]
        leaves = [a.detach().requires_grad_(w) for a, w in zip(args, wanted)]
        out = fn(*leaves)
        cotangent = make_tensor(tuple(out.shape), dtype=dtype)
        assert "NotationValueError" not in source or "class NotationValueError" in source
        grads = torch.autograd.grad(out, [a for a in leaves if a.requires_grad], cotangent)
        expected[key] = (out.detach(), grads, fn)
        data = tmp_path / f"{key}.pt"
        torch.save({"args": args, "cotangent": cotangent}, data)
        jobs.append({"module": f"{key}_ops", "path": str(path), "name": fn.name, "wanted": wanted,
                     "data": str(data), "result": str(tmp_path / f"{key}.out.pt")})
    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == f"ok {len(jobs)}"
    for key, (out, grads, fn) in expected.items():
        got = torch.load(tmp_path / f"{key}.out.pt")
        torch.testing.assert_close(got["out"], out, rtol=1e-12, atol=1e-12)
        assert len(got["grads"]) == len(grads) == len(fn.wrt)
        for g, h in zip(got["grads"], grads):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
        assert got["outputs"] == sorted(fn.outputs)
        for line in fn.statement.splitlines() + list(fn.formulas.values()):
            assert line in got["doc"]


def test_export_checks_shapes_and_needs_a_call_or_shapes(tmp_path):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    with pytest.raises(ValueError, match="has not been called yet"):
        fn.export(tmp_path / "x.py")
    path = fn.export(tmp_path / "mm_ops.py", shapes={"B": (2, 3), "C": (3, 4)}, dtype=torch.float64)
    mod = types.ModuleType("mm_ops")
    exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
    for n, k in ((2, 3), (5, 3), (2, 7)):  # one plan serves any sizes that agree where they must
        B, C = torch.randn(n, k, dtype=torch.float64), torch.randn(k, 4, dtype=torch.float64)
        torch.testing.assert_close(mod.A_fn(B, C), B @ C)
    with pytest.raises(ValueError, match=r"^inputs of shapes B \(3, 3\), C \(4, 4\) fit no plan of "
                       r"this module \(planned from B \(2, 3\), C \(3, 4\)\): they need "
                       r"B.shape\[1\] == C.shape\[0\]$"):
        mod.A_fn(torch.randn(3, 3), torch.randn(4, 4))
    with pytest.raises(ValueError, match="input 'B' has 3 dims; this module takes 2"):
        mod.A_fn(torch.randn(3, 3, 1), torch.randn(3, 4))
    with pytest.raises(ValueError, match="no entry for input C"):
        fn.export(tmp_path / "y.py", shapes={"B": (2, 3)})
    assert fn._last is None  # the call export makes does not count as one seen


def test_export_does_not_change_what_code_and_plan_show(tmp_path):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    fn(torch.randn(2, 3), torch.randn(3, 5))
    before = fn.code
    fn.export(tmp_path / "z.py", shapes={"B": (6, 7), "C": (7, 8)})
    assert fn.code == before


def helper_dependency(x):
    return x * 2


def twice_then_step(x):
    return helper_dependency(x) > 0


def test_helpers_are_found_by_the_names_the_code_uses():
    """A helper the runtime adds is carried along, with what it reads, without a fixed list."""
    namespace = {"torch": torch, "_new": twice_then_step, "_dt": torch.float32,
                 "_dev": torch.device("cpu"), "_unused": object(), "_k": 3,
                 "_mod": torch.nn.functional.softplus}
    source = ("def forward(x):\n    return (_new(x).to(_dt) * _k + _mod(x)).to(_dev), ()\n\n"
              "def backward(_saved, _grads):\n    return ()\n")
    text = export._helpers(source, namespace)
    assert "def helper_dependency" in text and "def twice_then_step" in text
    assert "_new = twice_then_step" in text and "_dt = torch.float32" in text
    assert "_unused" not in text
    mod = {}
    exec("import torch\n" + text + source, mod)
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(mod["forward"](x)[0], (x > 0).float() * 3 + torch.nn.functional.softplus(x))
    with pytest.raises(TypeError, match="cannot export the helper '_bad'"):
        export._helpers("def forward(x):\n    return _bad\n", {"_bad": object()})


def test_every_set_of_shapes_seen_is_exported_and_dispatched(tmp_path):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] * D[l,l]", wrt="B C")
    fn(torch.randn(6, 6), torch.randn(6, 6), torch.randn(6, 6))  # float32: not the last call's dtype
    shapes = [((2, 3), (3, 4), (5, 5)), ((4, 1), (1, 2), (3, 3))]
    for sb, sc, sd in shapes:
        fn(torch.randn(sb, dtype=torch.float64), torch.randn(sc, dtype=torch.float64),
           torch.randn(sd, dtype=torch.float64))
    path = fn.export(tmp_path / "multi_ops.py")
    mod = types.ModuleType("multi_ops")
    exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
    examples = [example for _, _, example in mod._TM_FAMILIES]
    assert examples[0] == shapes[-1] and set(examples) <= set(shapes)  # the last call's first
    with pytest.raises(ValueError, match=r"planned from B \(4, 1\), C \(1, 2\), D \(3, 3\)"
                       r"(; or B \(2, 3\), C \(3, 4\), D \(5, 5\))?\): they need "
                       r"D.shape\[0\] == D.shape\[1\]"):
        mod.A_fn(torch.randn(2, 3), torch.randn(3, 4), torch.randn(4, 5))
    assert mod._TM_DTYPE == torch.float64
    for sb, sc, sd in shapes:
        B, C = (torch.randn(s, dtype=torch.float64, requires_grad=True) for s in (sb, sc))
        D = torch.randn(sd, dtype=torch.float64)
        torch.testing.assert_close(mod.A_fn(B, C, D), B @ C * torch.trace(D))
        assert torch.autograd.gradcheck(lambda b, c: mod.A_fn(b, c, D), (B, C))


WATCHED = r"""
import importlib.util, json, sys
sys.modules["tensormagic"] = None          # tensormagic is not importable here
import torch
import torch.utils.checkpoint
from torch.func import grad, jvp, vmap
job = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("watched_ops", job["path"])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
fn = getattr(mod, job["name"])
data = torch.load(job["data"])
args = [a.detach().requires_grad_() for a in data["args"]]
packed = []

def pack(t):
    packed.append(tuple(t.shape))
    return t

with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    out = fn(*args)
hooked = torch.autograd.grad(out, args, data["cotangent"])
with torch.autograd.graph.save_on_cpu():
    out_cpu = fn(*args)
on_cpu = torch.autograd.grad(out_cpu, args, data["cotangent"])
out_ckpt = torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
checkpointed = torch.autograd.grad(out_ckpt, args, data["cotangent"])
assert torch.autograd.gradcheck(fn, args)
assert torch.autograd.gradgradcheck(fn, args)
with torch.autograd.graph.save_on_cpu():
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)
plain = [a.detach() for a in args]
total = lambda *xs: (fn(*xs) * data["cotangent"]).sum()
func_grad = grad(total, argnums=tuple(range(len(plain))))(*plain)
batched = vmap(fn, in_dims=(0,) + (None,) * (len(plain) - 1))(data["batch"], *plain[1:])
tangent = jvp(fn, tuple(plain), tuple(data["tangents"]))[1]
torch.save({"packed": packed, "out": out.detach(), "hooked": hooked, "on_cpu": on_cpu,
            "checkpointed": checkpointed,
            "func_grad": func_grad, "batched": batched, "jvp": tangent}, job["result"])
print("ok")
"""


def test_exported_module_shows_every_saved_tensor_to_hooks_and_transforms(tmp_path):
    """As the package does: under a saved-tensor hook every value the backward reads, the
    intermediates too, passes through save_for_backward (so save_on_cpu and non-reentrant
    checkpointing see them); torch.func.grad, vmap and jvp work on the exported callable."""
    text = "H[b,o] := tanh(X[b,i]*W[i,o] + c[o])\nG[b,o] := H[b,o] * H[b,o] * W[0,o]\nL := G[b,o]*V[o]"
    fn = tm.tensorgrad(text)
    shapes = {"X": (3, 4), "W": (4, 2), "c": (2,), "V": (2,)}
    args = [make_tensor(s, dtype=torch.float64) for s in shapes.values()]
    leaves = [a.clone().requires_grad_() for a in args]
    packed = []

    def pack(t):
        packed.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*leaves)
    cotangent = make_tensor(tuple(out.shape), dtype=torch.float64)
    expected = torch.autograd.grad(out, leaves, cotangent)
    assert fn._last.extras, "the cell must save intermediates for this test to mean anything"
    assert len(packed) > len(args) + 1  # the intermediates went through the hook too
    plain = [a.detach() for a in args]
    batch = torch.stack([args[0], 2 * args[0]])
    tangents = [make_tensor(s, dtype=torch.float64) for s in shapes.values()]
    from torch.func import grad, jvp, vmap
    func_grad = grad(lambda *xs: (fn(*xs) * cotangent).sum(), argnums=(0, 1, 2, 3))(*plain)
    batched = vmap(fn, in_dims=(0, None, None, None))(batch, *plain[1:])
    tangent = jvp(fn, tuple(plain), tuple(tangents))[1]
    path = fn.export(tmp_path / "watched_ops.py")
    data = tmp_path / "watched.pt"
    torch.save({"args": args, "cotangent": cotangent, "batch": batch, "tangents": tangents}, data)
    job = {"path": str(path), "name": fn.name, "data": str(data), "result": str(tmp_path / "w.out.pt")}
    run = subprocess.run([sys.executable, "-c", WATCHED, json.dumps(job)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    got = torch.load(tmp_path / "w.out.pt")
    assert sorted(got["packed"]) == sorted(packed)
    torch.testing.assert_close(got["out"], out.detach(), rtol=1e-12, atol=1e-12)
    for key in ("hooked", "on_cpu", "checkpointed"):
        for g, h in zip(got[key], expected, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
    for g, h in zip(got["func_grad"], func_grad, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["batched"], batched, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["jvp"], tangent, rtol=1e-12, atol=1e-12)


def test_a_name_the_module_defines_itself_is_refused(tmp_path):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]", name="run")
    fn(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(ValueError, match="cannot be exported: the module defines 'run' itself"):
        fn.export(tmp_path / "run_ops.py")
    assert not (tmp_path / "run_ops.py").exists()


# -- one example, any batch size: the shape-generic export ----------------------------------
BATCHED = r"""
import importlib.util, json, sys
sys.modules["tensormagic"] = None          # tensormagic is not importable here
import torch
import torch.nn.functional as F
job = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("batched_ops", job["path"])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
fn = getattr(mod, job["name"])
refs = {
    "mlp": lambda X, W, c, V, T: ((torch.tanh(X @ W + c) @ V - T) ** 2).sum(),
    "ce": lambda z, y: F.cross_entropy(z, y, reduction="sum"),
    "conv": lambda x, w: F.max_pool1d(torch.relu(F.conv1d(x, w)), 2),
    "attention": lambda Q, K, V: torch.softmax(Q @ K.transpose(-1, -2) / 2, -1) @ V,
}
ref = refs[job["key"]]
for batch in job["batches"]:
    gen = torch.Generator().manual_seed(batch)
    args = []
    for shape in job["shapes"]:
        shape = [batch if s == "B" else s for s in shape]
        if str(len(args)) in job["ints"]:
            args.append(torch.randint(0, job["ints"][str(len(args))], shape, generator=gen))
        else:
            args.append(torch.randn(shape, dtype=torch.float64, generator=gen).requires_grad_())
    floats = [a for a in args if a.is_floating_point()]
    torch.testing.assert_close(fn(*args), ref(*args), rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda *xs: fn(*xs, *args[len(floats):]), floats)
print("ok", len(job["batches"]))
"""

GENERIC = {  # key: (cell, example shapes with B the batch dim, index tensors: position -> classes)
    "mlp": ("H[b,o] := tanh(X[b,i]*W[i,o] + c[o])\nL := (H[b,o]*V[o] - T[b])**2",
            [("B", 4), (4, 3), (3,), (3,), ("B",)], {}),
    "ce": ("L := sum[n](logsumexp[c](z[n,c]) - z[n, y[n]])", [("B", 5), ("B",)], {"1": 5}),
    "conv": ("h[b,o,i] := relu(x[b,c,i+a] * w[o,c,a])\nm[b,o,i] := max[a](h[b,o,2*i+a])",
             [("B", 2, 9), (3, 2, 3)], {}),
    "attention": ("S[b,q,k] := Q[b,q,d] * K[b,k,d] / 2\nP[b,q,k] := exp(S[b,q,k] - logsumexp[m](S[b,q,m]))\n"
                  "O[b,q,e] := P[b,q,k] * V[b,k,e]", [("B", 3, 4), ("B", 5, 4), ("B", 5, 2)], {}),
}


@pytest.mark.parametrize("key", list(GENERIC))
def test_one_example_serves_other_batch_sizes_in_a_fresh_interpreter(tmp_path, key):
    """Planned from one example before any call, the module runs batch sizes 1, 7 and 16 with
    values and gradients (gradcheck) of plain torch, where tensormagic cannot be imported."""
    text, shapes, ints = GENERIC[key]
    fn = tm.tensorgrad(text, sizes={"a": 2} if key == "conv" else None)
    example = [torch.randint(0, ints[str(k)], [3 if d == "B" else d for d in s]) if str(k) in ints
               else torch.randn([3 if d == "B" else d for d in s], dtype=torch.float64)
               for k, s in enumerate(shapes)]
    path = fn.export(tmp_path / f"{key}_ops.py", *example)
    assert fn._last is None  # exporting made no call
    job = {"path": str(path), "name": fn.name, "key": key, "shapes": shapes, "ints": ints,
           "batches": [1, 7, 16]}
    run = subprocess.run([sys.executable, "-c", BATCHED, json.dumps(job)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "ok 3"
