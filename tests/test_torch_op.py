"""The callable behaves like a torch op: in-place use of outputs, pickling, dtype promotion,
torch.compile, saved tensors, a warning for a dropped gradient, its signature, tm.Module."""
import copy
import inspect
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import tensormagic as tm

F32, F64 = torch.float32, torch.float64
LINEAR = "Y[b,o] := X[b,i]*W[i,o] + c[o]"


def _layer(dtype=F64, requires_grad=True):
    X = torch.randn(3, 4, dtype=dtype)
    W = torch.randn(4, 5, dtype=dtype, requires_grad=requires_grad)
    c = torch.randn(5, dtype=dtype, requires_grad=requires_grad)
    return X, W, c


def _grads(out_fn, *leaves):
    return torch.autograd.grad(out_fn(), leaves)


# -- 3. in-place use of outputs -------------------------------------------------------------
def test_inplace_relu_after_a_linear_cell():
    fn = tm.tensorgrad(LINEAR)
    X, W, c = _layer()
    head = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(5, 2, dtype=F64))
    ours = _grads(lambda: head(fn(X, W, c)).sum(), W, c)
    want = _grads(lambda: head(X @ W + c).sum(), W, c)
    torch.testing.assert_close(ours, want)


@pytest.mark.parametrize("text, shapes, ref", [
    ("A[i,k] := B[i,j] * C[j,k]", [(3, 4), (4, 2)], lambda B, C: B @ C),
    ("z[b,i,k] := x[b,i,j] * y[j,k]", [(2, 3, 4), (4, 5)], lambda x, y: x @ y),  # a reshaped mm
    ("s := x[i] * y[i]", [(4,), (4,)], lambda x, y: x @ y),
])
def test_add_inplace_to_an_output(text, shapes, ref):
    """The backward of a product never reads the output: writing into it is fine, as for
    torch's own product; the output is no view (autograd forbids writing into those)."""
    fn = tm.tensorgrad(text)
    args = [torch.randn(s, dtype=F64, requires_grad=True) for s in shapes]
    out = fn(*args)
    assert out._base is None

    def ours():
        o = fn(*args)
        o.add_(1)
        return (o * o).sum()
    torch.testing.assert_close(_grads(ours, *args),
                               _grads(lambda: (ref(*args).add_(1) ** 2).sum(), *args))


def test_an_output_the_backward_reads_refuses_inplace_like_torch():
    fn = tm.tensorgrad("y[i] := tanh(x[i])")
    x = torch.randn(4, dtype=F64, requires_grad=True)
    for f in (fn, torch.tanh):
        out = f(x)
        out.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


FORMS_SAVING = [
    ("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])", [(3, 4), (4, 5), (5,)]),
    ("Y[o,b] := exp(X[b,i]*W[i,o])", [(3, 4), (4, 5)]),
    ("z[b,i,k] := sigmoid(x[b,i,j] * y[j,k])", [(2, 3, 4), (4, 5)]),
    ("H[n,h] := tanh(X[n,i]*W[i,h])\nL[n] := H[n,h]*H[n,h]", [(3, 2), (2, 4)]),
    ("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o]) * V[o]", [(3, 4), (4, 5), (5,), (5,)]),
]


@pytest.mark.parametrize("text, shapes", FORMS_SAVING)
def test_outputs_share_no_storage_with_saved_tensors(text, shapes):
    """An output is a saved tensor itself (as torch.tanh's is) or shares nothing with one."""
    fn = tm.tensorgrad(text)
    args = [torch.randn(s, dtype=F64, requires_grad=True) for s in shapes]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        outs = fn.evaluate(*args)
    assert saved
    for out in outs.values():
        for s in saved:
            if s.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
                assert s.shape == out.shape and s.stride() == out.stride()


# -- 4. pickling ----------------------------------------------------------------------------
def test_pickle_after_a_call_and_rebuild():
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])")
    X, W, c = _layer()
    y = fn(X, W, c)
    back = pickle.loads(pickle.dumps(fn))
    assert back._cache == {} and back.tangents == fn.tangents
    torch.testing.assert_close(back(X, W, c), y)
    torch.testing.assert_close(_grads(lambda: back(X, W, c).sum(), W), _grads(lambda: fn(X, W, c).sum(), W))
    twin = copy.deepcopy(fn)
    torch.testing.assert_close(twin(X, W, c), y)


def test_pickles_name_only_the_public_package():
    """A pickle (or a torch.save) reads tensormagic.tensorgrad / tensormagic.Module, and no
    module inside the package, so that moving code between stages keeps pickles loadable."""
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])", wrt="W", name="layer",
                       sizes={"a": 2})
    data = pickle.dumps(fn)
    stages = ("language", "calculus", "compiler", "runtime", "views", "frontends")
    assert b"tensormagic" in data and not any(f"tensormagic.{s}".encode() in data for s in stages)
    back = pickle.loads(data)
    assert (back.text, back.wrt, back.name, back.memory, back.sizes) == \
        (fn.text, fn.wrt, fn.name, fn.memory, fn.sizes)
    buf = io.BytesIO()
    torch.save(tm.Module(fn, W=torch.randn(4, 5)), buf)
    assert b"tensormagic" in buf.getvalue()
    assert not any(f"tensormagic.{s}".encode() in buf.getvalue() for s in stages)


def test_torch_save_of_a_model_holding_the_callable():
    model = nn.Sequential(tm.Module(LINEAR, W=torch.randn(4, 5), c=torch.zeros(5)), nn.Tanh())
    X = torch.randn(3, 4)
    y = model(X)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(X), y)
    loaded(X).sum().backward()
    assert loaded[0].W.grad.shape == (4, 5)


class _Squares(torch.utils.data.Dataset):
    """Items computed by a tensorgrad callable inside a worker process."""

    def __init__(self):
        self.fn = tm.tensorgrad("y[i] := x[i] * x[i]")
        self.fn(torch.ones(3))  # called before pickling: its compiled code is not sent

    def __len__(self):
        return 2

    def __getitem__(self, k):
        return self.fn(torch.arange(3.0) + k)


def test_spawn_dataloader_workers():
    loader = torch.utils.data.DataLoader(_Squares(), batch_size=2, num_workers=1,
                                         multiprocessing_context="spawn")
    (batch,) = list(loader)
    torch.testing.assert_close(batch, torch.stack([torch.arange(3.0) ** 2, (torch.arange(3.0) + 1) ** 2]))


# -- 5. dtype promotion as torch ------------------------------------------------------------
SCALARS = [2, 2.0, 2j, np.float64(2.0), np.array(2.0), np.array(2), torch.tensor(2.0, dtype=F64),
           torch.tensor(2, dtype=torch.int64), torch.tensor(2.0, dtype=F32),
           torch.tensor(2 + 0j, dtype=torch.complex128)]
TENSORS = [torch.ones(3, dtype=F32), torch.ones(3, dtype=F64), torch.ones(3, dtype=torch.float16),
           torch.ones(3, dtype=torch.int64)]


def _torch_value(v):
    """What torch makes of a value in an expression: an ndarray becomes a tensor (0-dim ones
    too), a NumPy scalar a Python number."""
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    return v.item() if isinstance(v, np.generic) else v


@pytest.mark.parametrize("a", SCALARS, ids=repr)
@pytest.mark.parametrize("X", TENSORS, ids=lambda t: str(t.dtype))
def test_dtype_promotion_as_torch(a, X):
    fn = tm.tensorgrad("Y[i] := a * X[i] + b")
    for b in (1, np.array(1.5, dtype=np.float32)):
        want = (_torch_value(a) * X + _torch_value(b)).dtype
        if not (want.is_floating_point or want.is_complex):
            want = torch.get_default_dtype()  # integers compute in the default float dtype
        assert fn(a, X, b).dtype == want


def test_zero_dim_float64_keeps_a_float32_computation():
    fn = tm.tensorgrad("Y[i] := a * X[i]")
    X = torch.randn(3)
    assert fn(torch.tensor(2.0, dtype=F64), X).dtype == F32
    assert fn(np.array(2.0), X).dtype == F32
    assert fn(np.float64(2.0), X).dtype == F32


# -- 6. torch.compile -----------------------------------------------------------------------
def test_compile_fullgraph_from_the_first_call_of_each_shape():
    torch._dynamo.reset()
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])")
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for n in (3, 5):
        X, W, c = torch.randn(n, 4), torch.randn(4, 5, requires_grad=True), torch.randn(5)
        y = compiled(X, W, c)
        torch.testing.assert_close(y, torch.tanh(X @ W + c))
        (g,) = torch.autograd.grad(y.sum(), W)
        torch.testing.assert_close(g, _grads(lambda: torch.tanh(X @ W + c).sum(), W)[0])
    with torch.no_grad():
        torch.testing.assert_close(compiled(X, W, c), torch.tanh(X @ W + c))


# -- 7. saved tensors -----------------------------------------------------------------------
def _saved(f, *args):
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = f(*args)
    return out, packed


def test_relu_keeps_one_tensor():
    fn = tm.tensorgrad("y[b,o] := relu(x[b,o])")
    x = torch.randn(512, 1024, requires_grad=True)
    _, ours = _saved(fn, x)
    _, theirs = _saved(torch.relu, x)
    assert len(ours) == len(theirs) == 1


def test_a_relu_layer_saves_what_torch_saves():
    fn = tm.tensorgrad("Y[b,o] := relu(X[b,i]*W[i,o] + c[o])")
    X, W, c = torch.randn(64, 32), torch.randn(32, 16, requires_grad=True), torch.randn(16, requires_grad=True)
    _, ours = _saved(fn, X, W, c)
    _, theirs = _saved(lambda X, W, c: torch.relu(X @ W + c), X, W, c)

    def held(saved):
        """Elements kept alive only for the backward: saved tensors that are no input
        (inputs are kept by reference, so that a differentiated backward can recompute)."""
        return sum(t.numel() for t in saved if not any(t is a for a in (X, W, c)))
    assert held(ours) <= held(theirs) == 64 * 16


@pytest.mark.parametrize("text, shapes", FORMS_SAVING)
def test_every_saved_tensor_goes_through_save_for_backward(text, shapes):
    """Under a saved-tensor hook nothing the backward reads lives on the context: the hooks
    see all of it, and save_on_cpu gives the same gradients. (Without hooks the context may
    hold the intermediates, so that the backward frees each after its last reader.)"""
    fn = tm.tensorgrad(text)
    args = [torch.randn(s, dtype=F64, requires_grad=True) for s in shapes]
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        out = fn(*args)
    ctx = out.grad_fn
    for value in vars(ctx).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        assert not any(isinstance(v, torch.Tensor) for v in items)
    with torch.autograd.graph.save_on_cpu():
        offloaded = _grads(lambda: (fn(*args) ** 2).sum(), *args)
    torch.testing.assert_close(offloaded, _grads(lambda: (fn(*args) ** 2).sum(), *args))


def test_saved_tensors_hooks_see_the_intermediates():
    """The tanh, an intermediate the backward of the product reads, is packed by the hooks;
    unpack hands back copies, and the gradient comes out right."""
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o]) * V[o]")
    X, W, c = _layer()
    V = torch.randn(5, dtype=F64)
    store = {}

    def pack(t):
        store[len(store)] = t.detach().clone()
        return len(store) - 1
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda k: store[k]):
        y = fn(X, W, c, V)
    hidden = torch.tanh(X @ W + c).detach()
    assert any(t.shape == hidden.shape and torch.allclose(t, hidden) for t in store.values())
    torch.testing.assert_close(torch.autograd.grad(y.sum(), W),
                               _grads(lambda: (torch.tanh(X @ W + c) * V).sum(), W))


# -- 8. a dropped gradient says so ----------------------------------------------------------
def test_warns_once_for_an_input_outside_wrt_that_requires_grad():
    fn = tm.tensorgrad(LINEAR, wrt="W")
    X, W, c = _layer()
    with pytest.warns(UserWarning, match=r"input 'c' requires grad but is not in wrt \(W\)") as record:
        fn(X, W, c)
        fn(X, W, c)
        fn(X, W, c.detach())
    assert len([w for w in record if "requires grad" in str(w.message)]) == 1
    assert record[0].filename == __file__


def test_no_warning_for_wrt_inputs_or_without_grad():
    X, W, c = _layer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tm.tensorgrad(LINEAR)(X, W, c)
        with torch.no_grad():
            tm.tensorgrad(LINEAR, wrt="W")(X, W, c)


# -- 9. signature and nn.Module -------------------------------------------------------------
def test_signature_shows_the_inputs():
    fn = tm.tensorgrad("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])")
    assert str(inspect.signature(fn)) == "(X, W, c)"
    assert list(inspect.signature(fn).parameters) == list(fn.inputs)


def test_module_registers_parameters_and_trains():
    W0, c0 = torch.randn(4, 5, dtype=F64), torch.zeros(5, dtype=F64)
    layer = tm.Module("Y[b,o] := tanh(X[b,i]*W[i,o] + c[o])", W=W0.clone(), c=c0.clone())
    assert [n for n, _ in layer.named_parameters()] == ["W", "c"]
    assert str(inspect.signature(layer)) == "(X)"
    X = torch.randn(3, 4, dtype=F64)
    torch.testing.assert_close(layer(X), torch.tanh(X @ W0 + c0))
    torch.testing.assert_close(layer(X=X), layer.evaluate(X)["Y"])
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(X).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(layer.W.detach(), W0)
    twin = tm.Module(layer.fn, W=torch.zeros(4, 5, dtype=F64), c=torch.ones(5, dtype=F64))
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(X), layer(X))


def test_module_refuses_bad_parameters():
    with pytest.raises(tm.NotationValueError, match="'V' is not an input"):
        tm.Module(LINEAR, V=torch.zeros(2))
    with pytest.raises(TypeError, match="must be a tensor"):
        tm.Module(LINEAR, W=[1.0])
    with pytest.raises(TypeError, match="tensorgrad callable"):
        tm.Module(42)
    layer = tm.Module(LINEAR, W=torch.zeros(4, 5))
    with pytest.raises(TypeError, match="unexpected input 'W'"):
        layer(torch.zeros(3, 4), W=torch.zeros(4, 5), c=torch.zeros(5))


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_the_quick_cache_key_is_the_full_one(grad_enabled):
    """The one-pass key of the common call equals the key binding and promotion give, for
    every mix of dtypes, requires_grad, wrt and complex constants (or it declines)."""
    from tensormagic.runtime import arguments as runtime
    dtypes = [torch.float32, torch.float64, torch.complex64, torch.float16, torch.int64]
    rng = np.random.default_rng(0)
    for text in ("A[i] := B[i,j]*C[j]", "A[i] := 2j*B[i,j]*C[j]"):
        for wrt in ("B", "B C", "C"):
            fn = tm.tensorgrad(text, wrt=wrt)
            for _ in range(40):
                args = []
                for shape in ((2, 3), (3,)):
                    dtype = dtypes[rng.integers(len(dtypes))] if rng.random() < 0.3 else torch.float32
                    t = torch.ones(shape, dtype=dtype)
                    if (dtype.is_floating_point or dtype.is_complex) and rng.random() < 0.5:
                        t.requires_grad_()
                    args.append(t)
                with torch.set_grad_enabled(grad_enabled):
                    quick = runtime.quick_signature(args, fn._wrt_mask, fn._complex_const)
                    tensors, dtype, device = runtime.prepare(args, fn.inputs, fn._complex_const)
                    full = runtime.signature(tensors, dtype, device, fn._wrt_mask)
                assert quick is None or quick == full, (text, wrt, args)
                if all(a.dtype == torch.float32 for a in args) and not fn._complex_const:
                    assert quick == full  # the common call takes the quick path


# -- backend="inductor": the generated code through torch.compile ----------------------------
def test_an_inductor_backend_gives_the_eager_values_and_gradients():
    text = "r[b] := sqrt(mean[i](x[b,i] ** 2) + 0.00001)\ny[b,i] := x[b,i] / r[b] * g[i]"
    eager, fused = tm.tensorgrad(text), tm.tensorgrad(text, backend="inductor")
    x, g = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    grads = []
    for fn in (eager, fused):
        a, b = x.clone().requires_grad_(), g.clone().requires_grad_()
        fn(a, b).sum().backward()
        grads.append((fn(x, g), a.grad, b.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)
    assert fused._through_compiler is not None and pickle.loads(pickle.dumps(fused)).backend == "inductor"
    torch._dynamo.reset()


def test_an_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match="backend must be 'eager' or a torch.compile backend .*inductor"):
        tm.tensorgrad("y[i] := x[i]", backend="fast")
