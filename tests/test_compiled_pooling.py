"""Pooling as torch.compile traces it: window positions one at a time and the shares put back
by fold (compiler/kernels.py, _compiled_pool_backward and _folded). Values and gradients,
with many ties (the shares must split among them as in eager mode), against torch's own
windows (unfold, then amax) and against eager tensormagic; and fold against unview, the general
transpose of a strided view, on the windows fold takes and those it does not."""
import pytest
import torch

import tensormagic as tm
from tensormagic.compiler import kernels

# (statement, window sizes, x's shape, the same by torch: unfold's windows, then amax/amin,
# whose gradient torch splits evenly among ties, as the language's max/min do)
POOLS = [
    ("m[b,c,i,j] := max[a,d](x[b,c,2*i+a,2*j+d])", {"a": 3, "d": 3}, (2, 3, 11, 10),
     lambda x: x.unfold(2, 3, 2).unfold(3, 3, 2).amax((-2, -1))),
    ("m[b,c,i] := max[a](x[b,c,2*i+a])", {"a": 3}, (2, 3, 13),
     lambda x: x.unfold(2, 3, 2).amax(-1)),
    ("m[b,c,i,j] := min[a,d](x[b,c,2*i+2*a,j+d])", {"a": 2, "d": 3}, (2, 2, 12, 9),
     lambda x: x.unfold(2, 3, 2)[..., ::2].unfold(3, 3, 1).amin((-2, -1))),
    ("m[i,b] := max[a](x[2*i+a,b])", {"a": 2}, (9, 4),  # the window's dim first: no fold
     lambda x: x.unfold(0, 2, 2).amax(-1)),
    ("m[b,c,i,j] := max[a,d](x[b,c,3*i+a,3*j+d])", {"a": 2, "d": 2}, (2, 2, 11, 10),  # gaps
     lambda x: x.unfold(2, 2, 3).unfold(3, 2, 3).amax((-2, -1))),
    ("m[b,i,j] := max[a,d](x[b,i+a,j+d])", {"a": 2, "d": 2}, (3, 6, 5),  # stride 1
     lambda x: x.unfold(1, 2, 1).unfold(2, 2, 1).amax((-2, -1))),
]


@pytest.mark.parametrize("text,sizes,shape,torch_form", POOLS, ids=[p[0] for p in POOLS])
def test_compiled_pooling_shares_ties_as_torch_does(text, sizes, shape, torch_form):
    torch.manual_seed(0)
    x = torch.randint(-2, 3, shape).double().requires_grad_()  # few values: ties everywhere
    fn = tm.tensorgrad(text, sizes=sizes)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    out = compiled(x)
    g = torch.randn_like(out)
    dx, = torch.autograd.grad(out, x, g)
    want = torch_form(x)
    want_dx, = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(dx, want_dx)
    eager_dx, = torch.autograd.grad(fn(x), x, g)
    torch.testing.assert_close(dx, eager_dx)


@pytest.mark.parametrize("spatial", [1, 2])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_fold_is_unview_on_pooling_windows(spatial, stride, dilation):
    torch.manual_seed(1)
    kernel, blocks = 3, 4
    reach = stride * (blocks - 1) + dilation * (kernel - 1) + 1
    shape = (2, 3) + (reach + 2,) * spatial  # 2 positions past the last window: padded back
    lead = [(1, 0) + (0,) * spatial, (0, 1) + (0,) * spatial]
    coefs, sizes, dims = list(lead), [2, 3], []
    for k in range(spatial):
        on = [0] * (2 + spatial)
        on[2 + k] = stride
        coefs.append(tuple(on))
        on = [0] * (2 + spatial)
        on[2 + k] = dilation
        coefs.append(tuple(on))
        sizes += [blocks, kernel]
        dims.append(len(sizes) - 1)
    shares = torch.randn(sizes, dtype=torch.float64)
    offsets = (0,) * len(shape)
    folded = kernels._folded(shares, torch.Size(shape), sizes, coefs, offsets, dims)
    assert folded is not None
    torch.testing.assert_close(folded, kernels.unview(shares, shape, coefs, offsets))


def test_fold_declines_what_it_cannot_express():
    sizes, shape = [4, 2, 3], torch.Size((9, 3))
    shares = torch.randn(sizes)
    window_first = [(2, 0), (1, 0), (0, 1)]  # the window's dim before a plain one
    assert kernels._folded(shares, shape, sizes, window_first, (0, 0), (1,)) is None
    offset = [(0, 1), (2, 0), (1, 0)]
    assert kernels._folded(torch.randn(3, 4, 2), torch.Size((3, 9)), [3, 4, 2],
                           offset, (0, 1), (2,)) is None
    diagonal = [(1, 1), (1, 0)]  # one result dim reading two x dims
    assert kernels._folded(torch.randn(3, 2), torch.Size((4, 4)), [3, 2], diagonal, (0, 0), (1,)) is None
