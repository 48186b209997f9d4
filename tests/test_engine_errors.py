"""Invalid inputs, one table row each: the exception type, and a message that
quotes the offending statement with a caret under the culprit."""

from dataclasses import dataclass

import pytest
import torch

import tensormagic as tm
from conftest import make_tensor


@dataclass
class Bad:
    id: str
    text: str
    error: type
    at: object = None  # substring whose first character the caret must point at (or a tuple of choices)
    nth: int = 0  # which occurrence of `at` in the statement
    words: tuple = ()  # must all appear in the message
    wrt: object = None
    line: str = None  # the statement quoted (default: the whole text)
    lineno: int = 1

    def __str__(self):
        return self.id


SYN, VAL = tm.NotationSyntaxError, tm.NotationValueError

BAD = [
    # malformed
    Bad("double-star-operator", "A[i,k] := B[i,j] * * C[j,k]", SYN, at="* C"),
    Bad("juxtaposition", "A[i,k] := B[i,j] C[j,k]", SYN, at=("C[", "B[i,j] C")),
    Bad("unclosed-bracket", "A[i,k] := B[i,j * C[j,k]", SYN, at="[i,j *"),
    Bad("dangling-plus", "A[i,k] := B[i,j] +", SYN, at=("+", "\0end")),
    Bad("no-assignment", "A[i,k] B[i,j]", SYN, at=("A", "B")),
    Bad("empty-right-side", "A[i] := ", SYN, at=(":=", "\0end")),
    Bad("attribute-indexed", "A[i] := B.T[i]", SYN, at=("B.T", ".T", "T[")),
    Bad("attribute", "A[i] := B[i] * torch.pi", SYN, at=("torch", ".pi"), words=("attribute",)),
    Bad("method-call", "A[i] := B[i].sum()", SYN, at=("B[i].sum", ".sum", "sum")),
    Bad("lambda", "A[i] := B[i] * (lambda: 2)", SYN, at="lambda", words=("lambda",)),
    Bad("conditional", "A[i] := x[i] * (B[i] if c else 1)", SYN, at=("B[i] if", "if")),
    Bad("string-literal", "A[i] := B[i] * 'x'", SYN, at="'x'"),
    Bad("bytes-literal", "A[i] := B[i] * b'x'", SYN, at="b'x'"),
    Bad("bool-literal", "A[i] := B[i] * True", SYN, at="True"),
    Bad("comparison", "A[i] := B[i] < C[i]", SYN, at=("B[i] <", "<")),
    Bad("matmul-operator", "A[i] := B[i] @ C[i]", SYN, at=("@", " @")),
    Bad("index-subtraction", "A[i,j] := B[i-1,j]", SYN, at="i-1", words=("add",)),
    Bad("index-call", "A[i] := B[f(i)]", SYN, at="f(i)", words=("call",)),
    Bad("index-float", "A[i] := B[0.5]", SYN, at="0.5"),
    Bad("index-slice", "A[i] := B[:]", SYN, at=":]"),
    Bad("index-product-of-indices", "A[i,j] := B[i*j]", SYN, at="i*j", words=("product",)),
    Bad("index-zero-coefficient", "A[i] := B[0*i]", SYN, at="0", words=("positive",)),
    Bad("index-attribute", "A[i] := B[x.i]", SYN, at="x.i", words=("attribute",)),
    Bad("index-tensor-nested-twice", "A[i] := B[C[D[i]]]", SYN, at="D[i]", words=("plain",)),
    Bad("index-tensor-shifted", "A[i] := B[C[i+1]]", SYN, at="i+1", words=("plain",)),
    Bad("index-tensor-diagonal", "A[i] := B[C[i,i]]", SYN, at="i]]", words=("differ",)),
    Bad("reduce-unknown", "A[i] := foo[j](B[i,j])", VAL, at="foo",
        words=("foo", "sum", "prod", "max", "min", "logsumexp", "mean")),
    Bad("reduce-index-absent", "A[i] := max[k](B[i,j])", VAL, at="max[k]", words=("'k'", "occur")),
    Bad("reduce-left-index", "A[i] := max[i](B[i,j])", VAL, at="max[i]", words=("'i'", "left")),
    Bad("reduce-index-used-outside", "A[i] := max[j](B[i,j]) * C[j]", VAL, at="max[j]", words=("'j'", "outside")),
    Bad("reduce-nested-same-index", "s := sum[j](max[j](B[j]))", VAL, at="max[j]", words=("'j'", "enclosing")),
    Bad("reduce-without-indices", "s := sum(B[j])", SYN, at="sum(", words=("sum[j]",)),
    Bad("max-one-argument", "s := max(B[j])", SYN, at="max(", words=("max(a, b)", "max[j]")),
    Bad("reduce-shifted-index", "s := max[j+1](B[j])", SYN, at="j+1", words=("plain",)),
    Bad("reduce-index-twice", "s := max[j,j](B[j])", SYN, at="j", nth=1, words=("twice",)),
    Bad("reduce-two-bodies", "s := max[j](B[j], C[j])", SYN, at="max[j](", words=("one argument",)),
    Bad("index-tensor-computed", "t[b] := u[b] * 2\nE[b,d] := W[t[b], d]", VAL, at="t[b]",
        line="E[b,d] := W[t[b], d]", lineno=2, words=("'t'", "input")),
    Bad("index-tensor-as-value", "E[b,d] := W[tok[b], d] * tok[b]", VAL, at="tok[b]", nth=1,
        words=("'tok'", "integers")),
    Bad("subscript-of-expression", "A[i] := (B + C)[i]", SYN, at=("B + C", "(B + C)")),
    Bad("semicolon-second-statement", "A[i] := B[i]; C[i] := B[i]", SYN, at=";"),
    Bad("walrus-inside", "A[i] := (B := C[i])", SYN, at=("B :=", ":=", "(B")),
    Bad("list-literal", "A[i] := [B[i]]", SYN, at="[B"),
    Bad("left-index-arithmetic", "A[i+1] := B[i]", SYN, at=("i+1", "+1")),
    Bad("left-number", "2 := B[i]", SYN, at="2"),
    Bad("left-attribute", "A.x[i] := B[i]", SYN, at=("A.x", "A")),
    Bad("minus-equals", "A[i] -= B[i]", SYN, at="-="),
    Bad("import-call-statement", "__import__('os')", SYN, at=("_", "'os'")),
    Bad("two-args", "A[i] := exp(B[i], C[i])", SYN, at=("exp(", "C[i]")),
    Bad("keyword-arg", "A[i] := exp(B[i], base=2)", SYN, at=("exp(", "base")),
    # a quote outside a string: a Julia transpose or a prime, never Python's "unterminated string"
    Bad("transpose-after-subscript", "A[i,j] := B[j,i]'", SYN, at="'", words=("no transpose", "B[j,i]", "U+2032")),
    Bad("transpose-of-vector", "y[i] := x[i]' * 2", SYN, at="'", words=("no transpose",)),
    Bad("transpose-after-name", "y := x'", SYN, at="'", words=("no transpose", "i′")),
    Bad("transpose-after-parenthesis", "y[i] := (x[i] + 1)'", SYN, at="'", words=("no transpose",)),
    Bad("transpose-on-the-left", "y[i]' := x[i]", SYN, at="'", words=("no transpose",)),
    Bad("transpose-typographic-quote", "A[i,j] := B[j,i]’", SYN, at="’", words=("no transpose",)),
    Bad("transpose-inside-subscript", "y[i] := x[idx[i]']", SYN, at="'", words=("no transpose",)),
    Bad("quote-stray", "y[i] := x[i] '", SYN, at="'", words=("no transpose",)),
    Bad("quote-prime-in-subscript", "y[i] := x[i'] * z[i']", SYN, at="'", words=("a prime is written ′",)),
    Bad("quote-prime-after-digit", "y[i1] := x[i1']", SYN, at="'", words=("a prime is written ′",)),
    Bad("string-with-quote-inside", 'A[i] := B[i] * "it\'s"', SYN, at='"', words=("str",)),
    Bad("syntax-on-line-3", "A[i] := B[i]\n\nC[i] := A[i] * * 2", SYN, at="* 2", line="C[i] := A[i] * * 2",
        lineno=3),
    # meaningless
    Bad("unknown-function", "A[i] := foo(B[i])", VAL, at="foo", words=("foo", "exp", "tanh", "sigmoid", "softplus")),
    Bad("unknown-function-nested", "Y[i] := tanh(frobnicate(X[i,j] * v[j]))", VAL, at="frobnicate",
        words=("frobnicate", "exp")),
    Bad("eval-call", "A[i] := eval(B[i])", VAL, at="eval", words=("eval",)),
    Bad("print-call", "A[i] := print(B[i])", VAL, at="print", words=("print",)),
    Bad("getattr-call", "A[i] := getattr(B[i], C[i])", (SYN, VAL), at="getattr", words=("getattr",)),
    Bad("import-call-rhs", "A[i] := __import__('os')", (SYN, VAL), at=("__import__", "'os'")),
    Bad("left-index-missing", "A[i,k] := B[i,j]", VAL, at="k", words=("k",)),
    Bad("left-index-missing-scalar-rhs", "A[i] := alpha * 2", VAL, at="i", words=("i",)),
    Bad("left-index-repeated", "A[i,i] := B[i,j] * C[j,i]", VAL, at="i", nth=1, words=("i",)),
    Bad("define-after-read", "A[i] := B[i] * 2\nB[i] := A[i]", VAL, at="B", line="B[i] := A[i]", lineno=2,
        words=("B", "read before")),
    Bad("unknown-function-line-2", "A[i] := B[i]\nC[i] := sinc(A[i])", VAL, at="sinc", line="C[i] := sinc(A[i])",
        lineno=2, words=("sinc",)),
    # what a student writes (issue 17)
    Bad("lambda-called", "y[i] := (lambda t: t)(x[i])", SYN, at="lambda", words=("lambda", "cannot be called", "exp(x)")),
    Bad("call-of-a-call", "y[i] := exp(x[i])(z[i])", SYN, at="exp", words=("cannot be called",)),
    Bad("two-statements-on-one-line", "a[i] := x[i]; b[i] := x[i]", SYN, at=";", words=("one statement per line",)),
    Bad("misspelt-function", "y[i] := sigmod(x[i])", VAL, at="sigmod", words=("did you mean sigmoid?",)),
    Bad("misspelt-reduction", "y := maxx[i](x[i])", VAL, at="maxx", words=("did you mean max?",)),
    Bad("misspelt-logsumexp", "y := logsumxp[i](x[i])", VAL, at="logsumxp", words=("did you mean logsumexp?",)),
]


def _caret_column(message, statement):
    """Column (0-based, inside `statement`) of the first caret under the quoted statement."""
    lines = message.splitlines()
    for k, line in enumerate(lines[:-1]):
        if line.endswith(statement) and "^" in lines[k + 1]:
            return lines[k + 1].index("^") - (len(line) - len(statement))
    raise AssertionError(f"statement {statement!r} not quoted with a caret in:\n{message}")


def _columns(bad, statement):
    choices = bad.at if isinstance(bad.at, tuple) else (bad.at,)
    cols = set()
    for c in choices:
        if c == "\0end":
            cols.update({len(statement), len(statement.rstrip()), len(statement.rstrip()) - 1})
            continue
        at = -1
        for _ in range(bad.nth + 1):
            at = statement.index(c, at + 1)
        cols.add(at)
    return cols


@pytest.mark.parametrize("bad", BAD, ids=str)
def test_invalid_statement(bad):
    with pytest.raises(bad.error) as info:
        tm.tensorgrad(bad.text, wrt=bad.wrt)
    e = info.value
    assert isinstance(e, tm.NotationError)
    statement = bad.line or bad.text.strip()
    message = str(e)
    assert statement in message
    assert e.statement.strip() == statement
    assert e.lineno == bad.lineno
    col = _caret_column(message, statement)
    assert col in _columns(bad, statement), (col, message)
    if isinstance(e, SyntaxError):
        assert e.offset == col + 1
    for w in bad.words:
        assert w in message, (w, message)
    assert e.short() == message or e.short() in message


def test_error_classes():
    assert issubclass(tm.NotationSyntaxError, SyntaxError)
    assert issubclass(tm.NotationValueError, ValueError)
    assert issubclass(tm.NotationSyntaxError, tm.NotationError)
    assert issubclass(tm.NotationValueError, tm.NotationError)


@pytest.mark.parametrize("text", ["", "   ", "# just a comment\n\n", "\n\n"])
def test_empty_text(text):
    with pytest.raises(tm.NotationSyntaxError) as info:
        tm.tensorgrad(text)
    assert "statement" in str(info.value)


# ----------------------------------------------------------------------------
# wrt


@pytest.mark.parametrize(
    "text, wrt, culprit",
    [
        ("A[i,k] := B[i,j] * C[j,k]", "B Q", "Q"),
        ("A[i,k] := B[i,j] * C[j,k]", ["Zed"], "Zed"),
        ("A[i,k] := B[i,j] * C[j,k]", "A", "A"),  # an output, not an input
        ("A[i] := x[i]\ny[i] := A[i] * 2", "A", "A"),  # an intermediate output
        ("A[i,k] := B[i,j] * C[j,k]", "i", "i"),  # an index
        ("A[i,k] = B[i,j] * C[j,k]", "A", "A"),  # the old value of '=' has no gradient
        ("E[b,d] := W[tok[b], d]", "W tok", "tok"),  # an index tensor holds integers
    ],
)
def test_wrt_must_name_differentiable_inputs(text, wrt, culprit):
    with pytest.raises(tm.NotationValueError) as info:
        tm.tensorgrad(text, wrt=wrt)
    assert culprit in str(info.value)


# ----------------------------------------------------------------------------
# call-time


def _raises_value(fn, *args, words=(), **kwargs):
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, tm.NotationValueError)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    return info.value


def test_size_mismatch_names_index_tensors_and_sizes():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    _raises_value(fn, make_tensor((2, 3)), make_tensor((4, 5)), words=("j", "B", "C", "3", "4"))


def test_size_mismatch_across_terms():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k] + E[i,k]")
    _raises_value(fn, make_tensor((2, 3)), make_tensor((3, 4)), make_tensor((2, 5)), words=("k", "C", "E", "4", "5"))


def test_size_mismatch_on_diagonal():
    fn = tm.tensorgrad("s := D[l,l]")
    _raises_value(fn, make_tensor((2, 3)), words=("l", "D", "2", "3"))


def test_size_mismatch_in_later_statement():
    fn = tm.tensorgrad("A[i] := x[i] * 2\nB[i] := A[i] * y[i]")
    _raises_value(fn, make_tensor((3,)), make_tensor((4,)), words=("i", "3", "4"))


def test_size_mismatch_does_not_broadcast_size_one():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    _raises_value(fn, make_tensor((2, 1)), make_tensor((3, 4)), words=("j", "1", "3"))


def test_wrong_rank():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    _raises_value(fn, make_tensor((2, 3, 1)), make_tensor((3, 4)), words=("B",))


def test_overwrite_shape_checked():
    fn = tm.tensorgrad("A[i,k] = B[i,j] * C[j,k]")
    _raises_value(fn, make_tensor((3, 3)), make_tensor((3, 4)), make_tensor((4, 2)), words=("A", "k"))


def test_accumulate_shape_checked():
    fn = tm.tensorgrad("A[i,k] += B[i,j] * C[j,k]")
    _raises_value(fn, make_tensor((2, 2)), make_tensor((3, 4)), make_tensor((4, 2)), words=("A", "i"))


_B, _C, _X = (make_tensor(s) for s in [(2, 3), (3, 4), (2,)])


@pytest.mark.parametrize(
    "args, kwargs, culprit",
    [
        ((_B,), {}, "C"),  # too few
        ((), {"B": _B}, "C"),  # missing keyword
        ((_B, _C, _X), {}, "3"),  # too many
        ((_B,), {"C": _C, "Q": _C}, "Q"),  # unknown keyword
        ((_B, _C), {"B": _B}, "B"),  # given twice
    ],
    ids=["too-few", "missing-keyword", "too-many", "unknown-keyword", "given-twice"],
)
def test_wrong_arguments(args, kwargs, culprit):
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    with pytest.raises((TypeError, tm.NotationError)) as info:
        fn(*args, **kwargs)
    assert culprit in str(info.value)


def test_errors_leave_function_usable():
    fn = tm.tensorgrad("A[i,k] := B[i,j] * C[j,k]")
    with pytest.raises(ValueError):
        fn(make_tensor((2, 3)), make_tensor((4, 5)))
    B, C = make_tensor((2, 3)), make_tensor((3, 4))
    torch.testing.assert_close(fn(B, C), B @ C)


# ----------------------------------------------------------------------------
# call-time: gathers, shifted and fixed subscripts, sizes=

_W = make_tensor((5, 3))


@pytest.mark.parametrize("tok, words", [
    (torch.tensor([0, 5]), ("'tok'", "5", "'W'", "0..4")),
    (torch.tensor([-1, 2]), ("'tok'", "-1", "'W'")),
    (torch.tensor([0.0, 1.0]), ("'tok'", "integers")),
    (torch.tensor([True, False]), ("'tok'", "integers")),
], ids=["too-large", "negative", "float", "bool"])
def test_gather_index_checked_at_call(tok, words):
    fn = tm.tensorgrad("E[b,d] := W[tok[b], d]")
    W = _W.clone().requires_grad_()
    _raises_value(fn, W, tok, words=words)
    assert W.grad is None


def test_gather_index_as_list_is_a_type_error():
    fn = tm.tensorgrad("E[b,d] := W[tok[b], d]")
    with pytest.raises(TypeError) as info:
        fn(_W, [0, 1])
    assert "tok" in str(info.value)


def test_window_without_size_names_the_index():
    fn = tm.tensorgrad("m[i] := max[a](x[2*i+a])")
    _raises_value(fn, make_tensor((6,)), words=("'a'", "sizes"))


def test_fixed_position_out_of_range():
    fn = tm.tensorgrad("y[b] := x[b,3]")
    _raises_value(fn, make_tensor((2, 3)), words=("3", "x", "size 3"))
    fn = tm.tensorgrad("y[b] := x[b,-4]")
    _raises_value(fn, make_tensor((2, 3)), words=("-4", "x"))


def test_window_larger_than_input():
    fn = tm.tensorgrad("y[i] := x[i+a] * w[a]")
    _raises_value(fn, make_tensor((2,)), make_tensor((3,)), words=("x[i+a]", "size 2"))


def test_shift_out_of_bounds_with_both_sizes_fixed():
    fn = tm.tensorgrad("y[i] := x[i+a] * w[a] + z[i]")
    _raises_value(fn, make_tensor((5,)), make_tensor((3,)), make_tensor((5,)), words=("x[i+a]", "5"))


@pytest.mark.parametrize("sizes, error", [({"a": 0}, ValueError), ({"a": 2.0}, ValueError),
                                          ([("a", 2)], TypeError)], ids=["zero", "float", "list"])
def test_sizes_argument_checked(sizes, error):
    with pytest.raises(error):
        tm.tensorgrad("m[i] := max[a](x[2*i+a])", sizes=sizes)


# -- errors at call time, one row each: the statement, the inputs, the words of the message and
# the text the caret is under (issue 17: what a student meets first)
C128 = torch.complex128
CALL_BAD = [
    ("shift-past-the-end", "y[i] := x[i+10]", {"x": (6,)}, ("leaves no valid range for 'i'", "shift 10", "size 6"),
     "x[i+10]"),
    ("window-longer-than-input", "y[i] := x[i+a] * w[a]", {"x": (6,), "w": (8,)},
     ("leaves no valid range for 'i'", "'a' of size 8", "size 6"), "x[i+a]"),
    ("max-of-complex", "m := max[i](z[i])", {"z": ((3,), C128)}, ("max[i] needs real values", "abs(z)"),
     "max[i]"),
    ("min-of-complex", "m[b] := min[i](z[b,i])", {"z": ((2, 3), C128)}, ("min[i] needs real values",), "min[i]"),
    ("binary-max-of-complex", "m[i] := max(z[i], w[i])", {"z": ((3,), C128), "w": ((3,), C128)},
     ("max(a, b) needs real values",), "max(z[i]"),
    ("max-over-empty", "m[b] := max[j](x[b,j])", {"x": (2, 0)}, ("max[j] reduces 'j', of size 0", "no value"),
     "max[j]"),
    ("mean-over-empty", "m[b] := mean[j](x[b,j])", {"x": (2, 0)}, ("mean[j] reduces 'j', of size 0",), "mean[j]"),
    ("siblings-keep-their-names", "s := max[j](x[j]) + sum[j](y[j] * z[j])", {"x": (3,), "y": (4,), "z": (5,)},
     ("index 'j' has size 4", "size 5"), "z[j]"),
]


@pytest.mark.parametrize("row", CALL_BAD, ids=[r[0] for r in CALL_BAD])
def test_call_time_errors(row):
    _, text, shapes, words, at = row
    args = [make_tensor(s) if isinstance(s[0], int) or not s else torch.randn(s[0], dtype=s[1])
            for s in shapes.values()]
    e = _raises_value(tm.tensorgrad(text), *args, words=words)
    assert _caret_column(str(e), text) == text.index(at), str(e)


@pytest.mark.parametrize("op, value", [("sum", 0.0), ("prod", 1.0), ("logsumexp", float("-inf"))])
def test_reductions_with_an_identity_take_it_over_an_empty_range(op, value):
    x = torch.zeros(2, 0, dtype=torch.float64, requires_grad=True)
    y = tm.tensorgrad(f"m[b] := {op}[j](x[b,j])")(x)
    torch.testing.assert_close(y, torch.full((2,), value, dtype=torch.float64))
    y.sum().backward()
    assert x.grad.shape == (2, 0)
