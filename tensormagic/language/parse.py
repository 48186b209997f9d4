"""Statement text → syntax trees (ir nodes without sums), through Python's ast, whitelisted."""
import ast
import difflib
import math
import re
import sys
import unicodedata

from .algebra import add_all, multiply, multiply_all, reciprocal
from .errors import NotationSyntaxError, NotationValueError
from .functions import CALLABLE
from .ir import REDUCTIONS, Affine, Binary, Call, Const, Pow, Reduce, Scalar, Statement, Tensor, unique
from .numbers import ConstantError, bounded, power

_EMPTY_BRACKETS = re.compile(r"(?<=\w)(\s*\[\s*\])")
_NAMES = {
    ast.Attribute: "attribute access", ast.Lambda: "a lambda", ast.IfExp: "a conditional",
    ast.Compare: "a comparison", ast.BoolOp: "a boolean operator", ast.List: "a list",
    ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set", ast.Starred: "a starred expression",
    ast.NamedExpr: "an assignment expression", ast.Slice: "a slice", ast.JoinedStr: "an f-string",
    ast.ListComp: "a comprehension", ast.GeneratorExp: "a comprehension",
    ast.DictComp: "a comprehension", ast.SetComp: "a comprehension", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Subscript: "this subscript",
}
PRIME, PRIME_SIGN = "ʹ", "′"  # U+02B9 is a letter (a valid identifier), U+2032 is not
_STRING_PREFIX = re.compile(r"(?<![\w.])(?:[rbuf]|rb|br|rf|fr)$", re.IGNORECASE)  # b'x', rb'x'
_WORD_END = re.compile(r"\w$")
_QUOTE_HINT = {
    "prime": "a prime is written ′ (U+2032), not {q}: x[i′]",
    "transpose": "index notation has no transpose {q}: swap the subscripts (B[j,i] for B[i,j]{q}); "
                 "a primed index is written i′ (U+2032)",
}
CONSTANTS = {"pi": math.pi, "π": math.pi}
MISSING_OPERATOR = "missing operator: write * (or + - / **) between these terms"
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
MAX_DEPTH = 64  # levels of nesting (calls, powers, parentheses) in one right-hand side
MAX_TERMS = 256  # terms of one sum, factors of one product


def parse(text):
    """All statements of a cell, in order."""
    statements = [parse_statement(body, lineno) for lineno, body in _logical_lines(text)]
    if not statements:
        raise NotationSyntaxError("no statement: write one like  A[i,k] := B[i,j] * C[j,k]")
    return statements


def _check_characters(line, lineno):
    """A control character (a NUL, say) is named as such, not read as the end of the text."""
    for col, ch in enumerate(line):
        if unicodedata.category(ch) == "Cc" and ch != "\t":
            shown = "".join(chr(0x2400 + ord(c)) if ord(c) < 32 else c for c in line)  # ␀ for NUL
            raise NotationSyntaxError(f"a control character ({ch!r}, U+{ord(ch):04X}) is not allowed",
                                      shown, lineno, col, col + 1)


def _logical_lines(text):
    """(first line number, text) of each statement.  Comments and blank lines are dropped; a
    statement goes on after a trailing backslash and while a bracket is open."""
    parts, first = [], None
    for lineno, line in enumerate(text.splitlines(), start=1):
        _check_characters(line, lineno)
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        continued = body.endswith("\\")
        parts.append(body[:-1].rstrip() if continued else body)
        first = first or lineno
        joined = " ".join(p for p in parts if p)
        if continued or _depth(joined) > 0:
            continue
        yield first, joined
        parts, first = [], None
    if parts:  # an unclosed bracket: the statement reports it
        yield first, " ".join(p for p in parts if p)


def _depth(text):
    return sum(ch in "([{" for ch in text) - sum(ch in ")]}" for ch in text)


def parse_statement(text, lineno=None):
    """One statement `target[indices] op rhs`."""
    text = text.replace(PRIME_SIGN, PRIME)  # x[i′] is x[iʹ]: same letter, one column
    _refuse_quotes(text, lineno)
    _refuse_semicolons(text, lineno)
    op, at = _find_operator(text, lineno)
    ctx = _Ctx(text, lineno)
    target, indices, spans, access = _parse_target(text[:at], ctx)
    if access is not None and op == "=":
        raise NotationSyntaxError("a scatter on the left adds: use := (into zeros) or += (into the "
                                  "old value)", text, lineno, at, at + 1)
    rhs_start = at + len(op)
    rhs_ctx = _Ctx(text, lineno, rhs_start)
    tree = _parse_expr(text[rhs_start:], rhs_ctx)
    _check_depth(tree, rhs_ctx)
    rhs = _Converter(rhs_ctx).convert(tree)
    return Statement(target, indices, op, rhs, text, lineno, spans[0], spans[1:], access)


class _Ctx:
    """Where a fragment sits in its statement, to put carets in the right column."""

    def __init__(self, text, lineno, start=0):
        self.text, self.lineno, self.start = text, lineno, start
        self.fragment = text[start:]

    def span(self, node):
        raw = self.fragment.encode("utf-8")
        col = len(raw[:node.col_offset].decode("utf-8", "replace"))
        end = len(raw[:node.end_col_offset].decode("utf-8", "replace"))
        return self.start + col, self.start + end

    def syntax(self, message, span):
        return NotationSyntaxError(message, self.text, self.lineno, *span)

    def value(self, message, span):
        return NotationValueError(message, self.text, self.lineno, *span)


def _refuse_quotes(text, lineno):
    """A quote that opens no string is a prime (x[i']) or a Julia transpose (B[j,i]', y := x'),
    or stray: say what to write instead.  A string ('x', b'x') is skipped here and refused later."""
    at = 0
    while at < len(text):
        ch = text[at]
        end = _string_end(text, at) if ch == '"' or ch == "'" and not _after_operand(text, at) else None
        if end is not None:
            at = end
        elif ch in "'’‘":
            kind = "prime" if _WORD_END.search(text[:at]) and _innermost_bracket(text[:at]) == "[" \
                else "transpose"
            raise NotationSyntaxError(_QUOTE_HINT[kind].format(q=ch), text, lineno, at, at + 1)
        else:
            at += 1


def _refuse_semicolons(text, lineno):
    """`a; b` is two statements on one line: say so (Python would only say invalid syntax)."""
    depth = 0
    for at, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == ";" and depth == 0:
            raise NotationSyntaxError("one statement per line: put the statement after ';' on a "
                                      "line of its own", text, lineno, at, at + 1)


def _after_operand(text, at):
    """Whether the quote at `at` follows a name, a subscript or a bracket (x', B[i]', (x)'),
    where Python would read it as opening a string; b'x' opens one."""
    before = text[:at]
    return bool(before) and before[-1] in ")]'’‘" or \
        bool(_WORD_END.search(before)) and not _STRING_PREFIX.search(before)


def _string_end(text, at):
    """The position after the string opening at `at`, or None where it never closes."""
    k = at + 1
    while k < len(text):
        if text[k] == "\\":
            k += 2
        elif text[k] == text[at]:
            return k + 1
        else:
            k += 1
    return None


def _innermost_bracket(text):
    open_ = []
    for ch in text:
        if ch in "([{":
            open_.append(ch)
        elif ch in ")]}" and open_:
            open_.pop()
    return open_[-1] if open_ else None


def _find_operator(text, lineno):
    depth = 0
    for at, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch != "=" or depth:
            continue
        before = text[at - 1] if at else ""
        if text[at + 1:at + 2] == "=" or before in "<>!=":
            break
        if before == ":":
            return ":=", at - 1
        if before == "+":
            return "+=", at - 1
        if before and before in "-*/%@&|^":
            raise NotationSyntaxError(f"'{before}=' is not an assignment here: use :=, = or +=",
                                      text, lineno, at - 1, at + 1)
        return "=", at
    raise NotationSyntaxError("expected an assignment: A[i,k] := ..., A[i,k] = ... or A[i,k] += ...",
                              text, lineno, 0, len(text))


def _parse_expr(fragment, ctx):
    source = _EMPTY_BRACKETS.sub(lambda m: " " * len(m.group(1)), fragment)
    lead = len(source) - len(source.lstrip())
    source = source.strip()
    if not source:
        raise ctx.syntax("nothing on this side of the assignment", (ctx.start, ctx.start + len(fragment)))
    limit = sys.getrecursionlimit()
    try:  # a long flat chain (a sum of thousands of terms) is deep for Python's ast module
        sys.setrecursionlimit(max(limit, 20000))
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        col, end, message = _locate(source, e)
        raise ctx.syntax(message, (ctx.start + lead + col, ctx.start + lead + end)) from None
    except (MemoryError, RecursionError):  # Python's own parser gives up on deep nesting
        raise ctx.syntax(f"the expression is too long or nested too deeply (at most {MAX_TERMS} "
                         f"terms, {MAX_DEPTH} levels): split it into several statements",
                         (ctx.start + lead, ctx.start + lead + len(source))) from None
    finally:
        sys.setrecursionlimit(limit)
    return _shift(tree.body, lead)


def _family(node):
    """Chains of + and -, of * and /, and of unary signs are flat: one level however long."""
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        return "+" if op in ("+", "-") else "*" if op in ("*", "/") else None
    return "u" if isinstance(node, ast.UnaryOp) else None


def _check_depth(tree, ctx):
    """Refuse, before anything recurses over it, an expression nested more than MAX_DEPTH deep."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ctx.syntax(f"the expression is nested too deeply (more than {MAX_DEPTH} levels): "
                             f"split it into several statements", ctx.span(node))
        family = _family(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                leaf = isinstance(child, (ast.Name, ast.Constant, ast.Subscript))
                flat = leaf or (family is not None and _family(child) == family)
                stack.append((child, depth if flat else depth + 1))


def _char_col(source, byte_col):
    """ast columns count UTF-8 bytes; carets count characters."""
    byte_col = max(0, byte_col)
    return len(source.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def _shift(node, lead):
    """Columns count from the fragment's start, leading blanks included."""
    for n in ast.walk(node):
        if hasattr(n, "col_offset"):
            n.col_offset += lead
            n.end_col_offset += lead
    return node


def _locate(source, error):
    """(column, end column, message) of a Python syntax error, in characters."""
    if error.lineno != 1 or not error.offset:
        return len(source), len(source) + 1, "incomplete expression: the statement ends too early"
    if "forgot a comma" not in error.msg:
        wrapped = _syntax_error("(" + source + ")")
        if wrapped and "forgot a comma" in wrapped.msg and wrapped.lineno == 1:
            found = _locate("(" + source + ")", wrapped)
            return found[0] - 1, found[1] - 1, found[2]
    col = _char_col(source, error.offset - 1)
    end = _char_col(source, error.end_offset - 1) if error.end_lineno == 1 and error.end_offset else col + 1
    if error.msg.startswith("invalid decimal literal"):
        number = re.match(r"[\d.]+", source[col:]) or re.search(r"[\d.]+$", source[:col + 1])
        at = col + (len(number.group()) if number and source[col:col + 1].isdigit() else 0)
        return at, at + 1, MISSING_OPERATOR
    if "forgot a comma" in error.msg:
        # Two operands side by side: point at the second one.
        for cut in range(end - 1, col, -1):
            if source[cut - 1] != " " and _parses(source[col:cut]) and source[cut:end].strip():
                col = cut + len(source[cut:end]) - len(source[cut:end].lstrip())
                return col, col + 1, MISSING_OPERATOR
    if error.msg.startswith("invalid syntax"):
        return col, max(end, col + 1), "invalid syntax"
    return col, max(end, col + 1), f"invalid syntax: {error.msg}"


def _parses(text):
    return _syntax_error(text) is None


def _syntax_error(text):
    try:
        ast.parse(text, mode="eval")
    except SyntaxError as e:
        return e
    return None


def _parse_target(fragment, ctx):
    """(name, indices, spans, access): access is None, or for a scatter (H[tok[b], d]) one
    entry per dim, an index name or the integer Tensor it scatters by."""
    lead = len(fragment) - len(fragment.lstrip())
    stripped = fragment.strip()
    node = _parse_expr(fragment, ctx)
    if isinstance(node, ast.Name):
        return node.id, (), (ctx.span(node),), None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if not any(isinstance(item, ast.Subscript) for item in items):
            names, spans = _index_list(node.slice, ctx)
            return node.value.id, names, (ctx.span(node.value),) + spans, None
        return _scatter_target(node, items, ctx)
    span = (ctx.start + lead, ctx.start + lead + len(stripped))
    raise ctx.syntax("the left side must be a tensor like A[i,k], or a scalar name", span)


def _scatter_target(node, items, ctx):
    """H[tok[b], d]: each subscript a plain index or an integer tensor at plain indices."""
    access, names, spans = [], [], []
    for item in items:
        if isinstance(item, ast.Name):
            access.append(item.id)
            found = [(item.id, ctx.span(item))]
        elif isinstance(item, ast.Subscript) and isinstance(item.value, ast.Name):
            inner, inner_spans = _index_list(item.slice, ctx, "a scatter's index tensor takes plain "
                                                              "indices, like tok[b]")
            access.append(Tensor(item.value.id, inner, ctx.span(item)))
            found = list(zip(inner, inner_spans))
        else:
            raise ctx.syntax("a subscript on the left is an index (i) or an integer tensor that "
                             "scatters (tok[b])", ctx.span(item))
        for name, span in found:
            if name not in names:
                names.append(name)
                spans.append(span)
    return node.value.id, tuple(names), (ctx.span(node.value),) + tuple(spans), tuple(access)


def _index_list(node, ctx, message="an index must be a plain name like i or α"):
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    for item in items:
        if not isinstance(item, ast.Name):
            raise ctx.syntax(message, ctx.span(item))
    return tuple(i.id for i in items), tuple(ctx.span(i) for i in items)


def _is_int(node):
    return isinstance(node, ast.Constant) and type(node.value) is int


def _subscript_indices(access):
    if isinstance(access, str):
        return (access,)
    if isinstance(access, Tensor):
        return access.indices
    return tuple(i for _, i in access.terms)


class _Converter:
    """Whitelisted ast → ir: anything not named here is refused with its position."""

    def __init__(self, ctx):
        self.ctx = ctx

    def convert(self, node):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            what = _NAMES.get(type(node), type(node).__name__)
            raise self.ctx.syntax(f"{what} is not allowed in index notation", self.ctx.span(node))
        try:
            return method(node)
        except ConstantError as e:  # the innermost constant that cannot be held
            raise self.ctx.value(str(e), self.ctx.span(node)) from None

    def _Subscript(self, node):
        if not isinstance(node.value, ast.Name):
            raise self.ctx.syntax("only a named tensor can be indexed", self.ctx.span(node.value))
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        access = tuple(self._subscript(item) for item in items)
        if all(isinstance(a, str) for a in access):
            return Tensor(node.value.id, access, self.ctx.span(node))
        indices = unique(i for a in access for i in _subscript_indices(a))
        return Tensor(node.value.id, indices, self.ctx.span(node), access)

    def _subscript(self, node):
        """One subscript: an index name, an Affine (shifted or fixed), or a gathering Tensor."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Subscript):
            if not isinstance(node.value, ast.Name):
                raise self.ctx.syntax("only a named integer tensor can index a subscript",
                                      self.ctx.span(node.value))
            names, spans = _index_list(node.slice, self.ctx, "an index tensor takes plain indices, "
                                                             "like tok[b]")
            for k, name in enumerate(names):
                if name in names[:k]:
                    raise self.ctx.syntax("an index tensor's indices must differ", spans[k])
            return Tensor(node.value.id, names, self.ctx.span(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_int(node.operand):
            return Affine((), -node.operand.value, self.ctx.span(node))
        terms, offset = self._affine(node)
        return Affine(tuple(terms), offset, self.ctx.span(node))

    def _affine(self, node):
        """(terms, offset) of c*i + ... ± constant, every c a positive integer (a constant
        subtracted last, i+a-1, reads before the start: only a padded tensor allows it)."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            lt, lo = self._affine(node.left)
            rt, ro = self._affine(node.right)
            return lt + rt, lo + ro
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and _is_int(node.right) \
                and not isinstance(node.left, ast.Constant):
            terms, offset = self._affine(node.left)
            if terms:
                return terms, offset - node.right.value
        if isinstance(node, ast.Name):
            return [(1, node.id)], 0
        if _is_int(node):
            return [], node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            for c, i in ((node.left, node.right), (node.right, node.left)):
                if _is_int(c) and isinstance(i, ast.Name):
                    if c.value < 1:
                        raise self.ctx.syntax("a coefficient in a subscript must be a positive integer",
                                              self.ctx.span(c))
                    return [(c.value, i.id)], 0
            if isinstance(node.left, ast.Name) and isinstance(node.right, ast.Name):
                raise self.ctx.syntax("a product of indices is not allowed in a subscript",
                                      self.ctx.span(node))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
            raise self.ctx.syntax("a subscript may only add indices: write x[i+1] (every index runs "
                                  "from 0), or x[i+a-1] for a padded x", self.ctx.span(node))
        if isinstance(node, ast.Call):
            raise self.ctx.syntax("a call is not allowed in a subscript", self.ctx.span(node))
        if isinstance(node, ast.Attribute):
            raise self.ctx.syntax("attribute access is not allowed in a subscript", self.ctx.span(node))
        raise self.ctx.syntax("a subscript is an index (i), a shift (i+1, 2*i+a), a fixed position "
                              "(0, -1) or an integer tensor (tok[b])", self.ctx.span(node))

    def _Name(self, node):
        if node.id in CONSTANTS:
            return Const(CONSTANTS[node.id])
        return Scalar(node.id, self.ctx.span(node))

    def _Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float, complex)):
            raise self.ctx.syntax(f"{type(node.value).__name__} literals are not allowed; only numbers",
                                  self.ctx.span(node))
        return Const(bounded(node.value))

    def _UnaryOp(self, node):
        minuses = 0
        while isinstance(node, ast.UnaryOp):  # a chain of signs, without recursion
            if not isinstance(node.op, (ast.UAdd, ast.USub)):
                raise self.ctx.syntax("only unary minus and plus are allowed", self.ctx.span(node))
            minuses += isinstance(node.op, ast.USub)
            node = node.operand
        operand = self.convert(node)
        if not minuses:
            return operand
        # -(-(a + b)) is a product around a sum, like 1 * (a + b): one term, as it always was
        return multiply(Const(-1 if minuses % 2 else 1), operand)

    def _BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.ctx.syntax("only + - * / ** are allowed", self._op_span(node))
        if op in ("+", "-", "*", "/"):
            return self._chain(node, ("+", "-") if op in ("+", "-") else ("*", "/"))
        left, right = self.convert(node.left), self.convert(node.right)
        if isinstance(left, Const) and isinstance(right, Const):
            return Const(power(left.value, right.value))
        return Pow(left, right)

    def _chain(self, node, family):
        """a + b - c ... (or a * b / c ...) as one flat node, converted without recursing
        along the chain (a sum of thousands of terms is fine)."""
        rights = []
        while isinstance(node, ast.BinOp) and _BINOPS.get(type(node.op)) in family:
            rights.append((_BINOPS[type(node.op)], node.right))
            node = node.left
        pieces = [(self.convert(node), 1)]
        for op, right in reversed(rights):
            pieces.append((self.convert(right), -1 if op in ("-", "/") else 1))
        if family[0] == "+":
            out, what, parts = add_all(pieces), "terms in one sum", "terms"
        else:
            out = multiply_all([f if sign > 0 else reciprocal(f) for f, sign in pieces])
            what, parts = "factors in one product", "factors"
        if len(getattr(out, parts, ())) > MAX_TERMS:
            raise self.ctx.syntax(f"too many {what} (at most {MAX_TERMS}): split it into several "
                                  f"statements", self.ctx.span(node))
        return out

    def _method_hint(self, func):
        if func.attr in CALLABLE:
            inner = self.ctx.text[slice(*self.ctx.span(func.value))]
            return f"methods are not allowed: write {func.attr}({inner})"
        return f"methods are not allowed; the functions are {', '.join(CALLABLE)}, called as exp(x)"

    def _unknown_function(self, name, node):
        if node.args and all(isinstance(a, ast.Name) for a in node.args) and not node.keywords:
            indices = ",".join(a.id for a in node.args)
            return f"'{name}' is not a function: index a tensor with brackets, {name}[{indices}]"
        return f"unknown function '{name}'{_did_you_mean(name, CALLABLE)}; known functions: " \
               f"{', '.join(CALLABLE)}"

    def _op_span(self, node):
        start = self.ctx.span(node.left)[1]
        end = self.ctx.span(node.right)[0]
        return start, max(end, start + 1)

    def _Call(self, node):
        if isinstance(node.func, ast.Attribute):
            raise self.ctx.syntax(self._method_hint(node.func), self.ctx.span(node.func))
        start = self.ctx.span(node.func)[1]
        at = start + len(self.ctx.text[start:]) - len(self.ctx.text[start:].lstrip())
        if isinstance(node.func, ast.Subscript) and isinstance(node.func.value, ast.Name) \
                and (node.func.value.id in REDUCTIONS or at == start):
            return self._reduction(node)  # sum[j](...), or an unknown reduction foo[j](...)
        if isinstance(node.func, (ast.Lambda, ast.Call)):  # (lambda t: t)(x[i]), f(x)(y)
            what = "a lambda" if isinstance(node.func, ast.Lambda) else "what a call returns"
            raise self.ctx.syntax(f"{what} cannot be called: the functions are "
                                  f"{', '.join(CALLABLE)}, called as exp(x)", self.ctx.span(node.func))
        if not isinstance(node.func, ast.Name):  # x[i] (y[i]), 2 (x[i])
            raise self.ctx.syntax(MISSING_OPERATOR, (at, at + 1))
        name = node.func.id
        if name in ("max", "min") and len(node.args) == 2 and not node.keywords:
            return Binary(name, self.convert(node.args[0]), self.convert(node.args[1]),
                          self.ctx.span(node))
        if name in REDUCTIONS:
            what = "two arguments, max(a, b), or " if name in ("max", "min") else ""
            already = "; without it, every index not on the left is summed already " \
                      "(s := x[i] is Σ_i x[i])" if name == "sum" else ""
            raise self.ctx.syntax(f"{name} takes {what}the indices it reduces: {name}[j](...)"
                                  f"{already}", self.ctx.span(node))
        if name not in CALLABLE:
            raise self.ctx.value(self._unknown_function(name, node), self.ctx.span(node.func))
        if len(node.args) != 1 or node.keywords:
            raise self.ctx.syntax(f"{name}() takes exactly one argument", self.ctx.span(node))
        return Call(name, self.convert(node.args[0]), self.ctx.span(node.func))

    def _reduction(self, node):
        """op[j,k](body): an explicit reduction over the listed indices."""
        op = node.func.value.id
        if op not in REDUCTIONS:
            raise self.ctx.value(f"unknown reduction '{op}'{_did_you_mean(op, REDUCTIONS)}; known "
                                 f"reductions: {', '.join(REDUCTIONS)}",
                                 self.ctx.span(node.func.value))
        names, spans = _index_list(node.func.slice, self.ctx, "a reduction lists plain indices, "
                                                              "like max[j,k](...)")
        for k, name in enumerate(names):
            if name in names[:k]:
                raise self.ctx.syntax(f"index '{name}' is listed twice", spans[k])
        if len(node.args) != 1 or node.keywords:
            raise self.ctx.syntax(f"{op}[...]() takes exactly one argument", self.ctx.span(node))
        return Reduce(op, names, self.convert(node.args[0]), self.ctx.span(node))


def _did_you_mean(name, known):
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
