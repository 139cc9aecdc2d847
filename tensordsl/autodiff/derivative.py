"""The chain rule on one scalar expression: forward-mode derivatives of compute bodies.

``differentiate(e, tangent_of)`` is the directional derivative of ``e`` when each tensor
read ``T[idx]`` moves by ``tangent_of(read)`` (an expression, or None for "does not
move"). Both modes use it: forward mode with the tangents' reads, reverse mode with a 1
for the reads of one index tuple (the partial derivative with respect to them).

A derivative that is identically zero is None, so that whole subtrees drop out instead
of multiplying zeros at run time. Integer and boolean values carry no derivative.
"""
from __future__ import annotations

import math
from typing import Callable

from ..errors import TensorDSLError
from ..ir import dtype as dt
from ..ir import nodes as n
from ..ir.op import cast, const, exp, if_then_else, log, select
from ..ir.op import pow as power
from ..ir.visitor import substitute

Tangent = Callable[[n.TensorRead], "n.Expr | None"]


def is_differentiable(dtype: str) -> bool:
    return dt.is_float(dtype)


# ---------------------------------------------------------------- folding constructors
# None is zero; constants 0 and 1 fold away, so partial derivatives stay as small as the
# hand-written ones (d(a*b)/da is b, not 1.0*b + a*0.0).


def _is_const(e, value) -> bool:
    return isinstance(e, (n.FloatImm, n.IntImm)) and e.value == value


def add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def sub(a, b):
    if b is None:
        return a
    if a is None:
        return neg(b)
    return a - b


def mul(a, b):
    """``a * b`` where either may be None (zero)."""
    if a is None or b is None:
        return None
    if _is_const(a, 1):
        return b
    if _is_const(b, 1):
        return a
    return a * b


def neg(a):
    if isinstance(a, n.FloatImm):
        return n.FloatImm(a.dtype, -a.value)
    return None if a is None else -a


def choose(cond, a, b, lazy: bool):
    """``a`` where ``cond`` else ``b``; lazily (``if_then_else``) when an arm may read
    out of bounds where it is not chosen."""
    if a is None and b is None:
        return None
    dtype = (a if a is not None else b).dtype
    a = const(0, dtype) if a is None else a
    b = const(0, dtype) if b is None else b
    return if_then_else(cond, a, b) if lazy else select(cond, a, b)


# ---------------------------------------------------------------- the rules


def differentiate(e: n.Expr, tangent_of: Tangent):
    """The derivative of ``e`` (None when zero); see the module docstring."""
    return _Derivative(tangent_of).d(e)


class _Derivative:
    def __init__(self, tangent_of: Tangent):
        self.tangent_of = tangent_of
        self.memo: dict[int, object] = {}

    def d(self, e):
        key = id(e)
        if key not in self.memo:
            if not is_differentiable(e.dtype):
                self.memo[key] = None
            else:
                method = getattr(self, "d_" + type(e).__name__, None)
                if method is None:
                    raise TensorDSLError(f"cannot differentiate {type(e).__name__} "
                                         f"expressions: {e}")
                self.memo[key] = method(e)
        return self.memo[key]

    # leaves
    def d_FloatImm(self, e):
        return None

    d_IntImm = d_Var = d_FloatImm

    def d_TensorRead(self, e):
        return self.tangent_of(e)

    # arithmetic
    def d_Add(self, e):
        return add(self.d(e.a), self.d(e.b))

    def d_Sub(self, e):
        return sub(self.d(e.a), self.d(e.b))

    def d_Mul(self, e):
        return add(mul(self.d(e.a), e.b), mul(e.a, self.d(e.b)))

    def d_Div(self, e):
        da, db = self.d(e.a), self.d(e.b)
        quotient = None if da is None else da / e.b
        if db is None:
            return quotient
        return sub(quotient, e.a * db / (e.b * e.b))

    def d_FloorDiv(self, e):
        return None   # piecewise constant

    def d_FloorMod(self, e):
        # a - floor(a / b) * b
        da, db = self.d(e.a), self.d(e.b)
        return sub(da, mul(n.FloorDiv(e.a, e.b), db))

    def d_Max(self, e):
        # the derivative of the operand chosen; a tie picks the second (relu'(0) = 0),
        # as does NaN (the IR's Max returns the second operand then)
        return choose(e.a > e.b, self.d(e.a), self.d(e.b), lazy=False)

    def d_Min(self, e):
        return choose(e.a < e.b, self.d(e.a), self.d(e.b), lazy=False)

    def d_Select(self, e):
        return choose(e.condition, self.d(e.true_value), self.d(e.false_value), lazy=False)

    def d_Cast(self, e):
        inner = self.d(e.value)
        return None if inner is None else cast(e.dtype, inner)

    def d_Let(self, e):
        return self.d(substitute(e.body, {e.var: e.value}))

    def d_Call(self, e):
        rule = _CALL_RULES.get(e.name)
        if rule is None:
            raise TensorDSLError(f"cannot differentiate the intrinsic {e.name!r}: no "
                                 "derivative rule for it")
        return rule(self, e)


def _unary(derivative):
    """A rule for ``f(x)`` from ``f'(x, f(x))``."""
    def rule(self, e):
        (x,) = e.args
        return mul(self.d(x), derivative(x, e))
    return rule


def _pow(self, e):
    x, y = e.args
    dx, dy = self.d(x), self.d(y)
    out = None if dx is None else mul(dx, y * power(x, y - 1.0))
    if dy is not None:
        # x**y * log(x): the exponent's term, only where the exponent varies
        out = add(out, mul(dy, e * log(x)))
    return out


def _if_then_else(self, e):
    c, a, b = e.args
    return choose(c, self.d(a), self.d(b), lazy=True)


def _fabs(self, e):
    (x,) = e.args
    dx = self.d(x)
    if dx is None:
        return None
    zero = const(0, x.dtype)
    # |x|' is sign(x), 0 at 0 (PyTorch's choice)
    return select(x > zero, dx, select(x < zero, -dx, zero))


_CALL_RULES = {
    "exp": _unary(lambda x, fx: fx),
    "log": _unary(lambda x, fx: 1.0 / x),
    "sqrt": _unary(lambda x, fx: 0.5 / fx),
    "tanh": _unary(lambda x, fx: 1.0 - fx * fx),
    "erf": _unary(lambda x, fx: (2.0 / math.sqrt(math.pi)) * exp(-(x * x))),
    "pow": _pow,
    "fabs": _fabs,
    "if_then_else": _if_then_else,
    "floor": lambda self, e: None,
    "ceil": lambda self, e: None,
    "round": lambda self, e: None,
}
