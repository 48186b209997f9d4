"""The elementwise functions of the language: torch spelling and derivative.

A derivative is an expression in the placeholders X (the argument) and Y (the
function's value), so one rule serves both the rendered formulas and the
generated code. Gradients follow torch's convention for complex numbers:
Δx = Δy · conj(f′(x)) for holomorphic f.
"""
import math
from dataclasses import dataclass

from .ir import Add, Call, Const, Mul, Pow, Scalar

X = Scalar("@x")
Y = Scalar("@y")


@dataclass(frozen=True)
class Function:
    torch: str          # the torch callable, as source text
    derivative: object  # IR in X and Y; Const(0) where it is zero almost everywhere
    conj: bool = True   # multiply by conj(f′); False where the rule is already torch's
    latex: str = None
    complex: bool = True  # torch computes it for complex values too


def _minus(e):
    return Mul((Const(-1), e))


FUNCTIONS = {
    "exp": Function("torch.exp", Y, latex=r"\exp"),
    "log": Function("torch.log", Call("recip", X), latex=r"\log"),
    "sqrt": Function("torch.sqrt", Mul((Const(0.5), Call("recip", Y)))),
    "sin": Function("torch.sin", Call("cos", X), latex=r"\sin"),
    "cos": Function("torch.cos", _minus(Call("sin", X)), latex=r"\cos"),
    "tan": Function("torch.tan", Add((Const(1), Pow(Y, Const(2))), (1, 1)), latex=r"\tan"),
    "tanh": Function("torch.tanh", Add((Const(1), Pow(Y, Const(2))), (1, -1)), latex=r"\tanh"),
    "sinh": Function("torch.sinh", Call("cosh", X), latex=r"\sinh"),
    "cosh": Function("torch.cosh", Call("sinh", X), latex=r"\cosh"),
    "sigmoid": Function("torch.sigmoid", Mul((Y, Add((Const(1), Y), (1, -1)))), latex=r"\sigma"),
    "relu": Function("torch.relu", Call("step", X), latex=r"\operatorname{relu}", complex=False),
    "abs": Function("torch.abs", Call("sgn", X), conj=False),
    "conj": Function("torch.conj", None),  # Δx = conj(Δy): handled on its own
    "log1p": Function("torch.log1p", Call("recip", Add((Const(1), X), (1, 1))),
                      latex=r"\operatorname{log1p}"),
    "expm1": Function("torch.expm1", Add((Y, Const(1)), (1, 1)), latex=r"\operatorname{expm1}"),
    "softplus": Function("torch.nn.functional.softplus", Call("sigmoid", X), complex=False,
                         latex=r"\operatorname{softplus}"),
    "erf": Function("torch.erf", Mul((Const(2), Call("recip", Call("sqrt", Const(math.pi))),
                                      Call("exp", _minus(Pow(X, Const(2)))))),
                    latex=r"\operatorname{erf}", complex=False),
    "recip": Function("torch.reciprocal", _minus(Pow(Y, Const(2)))),
    "step": Function("_step", Const(0), latex=r"\theta", complex=False),
    "sgn": Function("torch.sgn", Const(0), latex=r"\operatorname{sgn}"),
}

# What a user may call (recip is written as 1/x).
CALLABLE = tuple(sorted(n for n in FUNCTIONS if n != "recip"))
